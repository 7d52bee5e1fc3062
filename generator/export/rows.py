"""TRL's conversational layouts, as canonical bytes.

SFT: ``{"messages": [{"role", "content"}, ...]}``. Preference: ``{"prompt": [...], "chosen":
[...], "rejected": [...]}``. Keys in a fixed order and orjson's deterministic output, so the
same accepted set always gives the same bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from generator.schema import (
    PREFERENCE_PAIR_TAG,
    Candidate,
    CandidateKind,
    Decision,
    Message,
    PreferenceExample,
    SFTExample,
)

Row = dict[str, list[dict[str, str]]]


class RowRefused(ValueError):
    """An approved item that cannot become a row of the asked kind (the message says why)."""


def _turns(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def sft_row(example: SFTExample) -> Row:
    return {"messages": _turns(example.messages)}


def preference_row(example: PreferenceExample) -> Row:
    return {
        "prompt": _turns(example.prompt),
        "chosen": _turns(example.chosen),
        "rejected": _turns(example.rejected),
    }


def pair_from_edit(original: SFTExample, edited: SFTExample) -> PreferenceExample:
    """A reviewer's rewrite of an answer as a preference pair: the edit chosen, the original
    rejected. Only where the prompt is unchanged: the original answer answers that prompt."""
    if original.messages[:-1] != edited.messages[:-1]:
        raise RowRefused("the edit changed the prompt, so the original is no rejected answer to it")
    if original.messages[-1].content.strip() == edited.messages[-1].content.strip():
        raise RowRefused("the edit left the answer unchanged: no preference between the two")
    return PreferenceExample(
        prompt=list(original.messages[:-1]),
        chosen=[edited.messages[-1]],
        rejected=[original.messages[-1]],
    )


def final_example(item: Candidate) -> SFTExample | PreferenceExample:
    """What the reviewers approved: the edit where there is one, else the generated payload."""
    example = item.edited or item.payload
    if example is None:
        raise RowRefused("no payload (malformed output)")
    return example


def row_for(item: Candidate, decisions: tuple[Decision, ...], kind: CandidateKind) -> Row:
    example = final_example(item)
    if kind is CandidateKind.SFT:
        if not isinstance(example, SFTExample):
            raise RowRefused("a preference pair in an SFT export")
        return sft_row(example)
    if isinstance(example, PreferenceExample):
        return preference_row(example)
    paired = any(PREFERENCE_PAIR_TAG in d.reason_tags for d in decisions if d.verdict == "edit")
    if not paired or item.edited is None or not isinstance(item.payload, SFTExample):
        raise RowRefused("an SFT item without a reviewer's preference edit")
    assert isinstance(item.edited, SFTExample)
    return preference_row(pair_from_edit(item.payload, item.edited))


def row_bytes(row: Row | dict[str, Any]) -> bytes:
    return orjson.dumps(row) + b"\n"


def row_messages(row: Row) -> list[list[dict[str, str]]]:
    """The conversations a row trains on: one for SFT, prompt+chosen and prompt+rejected."""
    if "messages" in row:
        return [row["messages"]]
    return [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]
