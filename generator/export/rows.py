"""TRL's conversational layouts, as canonical bytes.

SFT: ``{"messages": [{"role", "content"}, ...]}``, and for tool-calling conversations TRL's
tool layout: assistant turns with ``tool_calls``, ``tool`` turns with the results, and the row's
``tools`` (JSON Schemas; TRL passes them to the chat template). Preference: ``{"prompt":
[...], "chosen": [...], "rejected": [...]}``. Keys in a fixed order and orjson's deterministic
output, so the same accepted set always gives the same bytes. Rows are built from the stored
JSON of items (the schema's ``SFTExample`` / ``PreferenceExample`` have exactly these fields).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from generator.schema import PREFERENCE_PAIR_TAG, RANKED_TAG, CandidateKind, DecisionRecord

Turns = list[dict[str, Any]]
Row = dict[str, Any]  # "messages" | "prompt"/"chosen"/"rejected": Turns; "tools": a list

_TOOL_KEYS = ("tool_calls", "name", "tool_call_id")


class RowRefused(ValueError):
    """An approved item that cannot become a row of the asked kind (the message says why)."""


def _turns(messages: list[dict[str, Any]]) -> Turns:
    # Stored plain turns are already exactly {"role", "content"}, in that order, so they are
    # used as they are: copying 200,000 of them cost a tenth of a second. Anything else is
    # rebuilt to that shape, keeping the tool fields a turn has.
    if all([len(m) == 2 for m in messages]):
        return messages
    return [
        {"role": m["role"], "content": m["content"]} | {k: m[k] for k in _TOOL_KEYS if k in m}
        for m in messages
    ]


def sft_row(example: dict[str, Any]) -> Row:
    row: Row = {"messages": _turns(example["messages"])}
    if example.get("tools"):
        row["tools"] = example["tools"]
    return row


def uses_tools(row: Row) -> bool:
    """Whether the row lists tools or has a turn that calls one or answers one."""
    return "tools" in row or any(
        [len(m) != 2 for conversation in row_messages(row) for m in conversation]
    )


def preference_row(example: dict[str, Any]) -> Row:
    return {
        "prompt": _turns(example["prompt"]),
        "chosen": _turns(example["chosen"]),
        "rejected": _turns(example["rejected"]),
    }


def pair_from_edit(original: dict[str, Any], edited: dict[str, Any]) -> Row:
    """A reviewer's rewrite of an answer as a preference pair: the edit chosen, the original
    rejected. Only where the prompt is unchanged: the original answer answers that prompt."""
    before, after = _turns(original["messages"]), _turns(edited["messages"])
    if before[:-1] != after[:-1]:
        raise RowRefused("the edit changed the prompt, so the original is no rejected answer to it")
    if before[-1]["content"].strip() == after[-1]["content"].strip():
        raise RowRefused("the edit left the answer unchanged: no preference between the two")
    return {"prompt": before[:-1], "chosen": [after[-1]], "rejected": [before[-1]]}


def final_example(item: dict[str, Any]) -> dict[str, Any]:
    """What the reviewers approved: the edit where there is one, else the generated payload."""
    example: dict[str, Any] | None = item.get("edited") or item.get("payload")
    if example is None:
        raise RowRefused("no payload (malformed output)")
    return example


RankingPairs = Literal["all", "best_worst"]


def ranking_rows(example: dict[str, Any], how: RankingPairs) -> list[Row]:
    """A ranking's pairs, better answer chosen: every pair (n(n-1)/2 rows) or the best against
    the worst (one)."""
    answers = [_turns(answer) for answer in example["ranked"]]
    prompt = _turns(example["prompt"])
    pairs = (
        [(0, len(answers) - 1)]
        if how == "best_worst"
        else [(i, j) for i in range(len(answers)) for j in range(i + 1, len(answers))]
    )
    # Two identical answers prefer nothing: no row says one beats the other.
    return [
        {"prompt": prompt, "chosen": answers[i], "rejected": answers[j]}
        for i, j in pairs
        if answers[i] != answers[j]
    ]


def rows_for(
    item: dict[str, Any],
    decisions: tuple[DecisionRecord, ...],
    kind: CandidateKind,
    ranking_pairs: RankingPairs = "all",
) -> list[Row]:
    """An approved item's rows: one, or a ranking's pairs."""
    example = final_example(item)
    if kind is CandidateKind.PREFERENCE and example.get("ranked"):
        # Accepting a ranking as generated (a key, a bulk action, the pre-screen) checks no
        # order: only a reviewer's ranking (r) makes its pairs.
        if not any(RANKED_TAG in d.reason_tags for d in decisions if d.verdict == "edit"):
            raise RowRefused("a ranking no reviewer ranked: its answers' order is unchecked")
        rows = ranking_rows(example, ranking_pairs)
        if not rows:
            raise RowRefused("a ranking of identical answers: no pair prefers anything")
        return rows
    return [row_for(item, decisions, kind)]


def row_for(
    item: dict[str, Any], decisions: tuple[DecisionRecord, ...], kind: CandidateKind
) -> Row:
    example = final_example(item)
    if kind is CandidateKind.SFT:
        if "messages" not in example:
            raise RowRefused("a preference pair in an SFT export")
        return sft_row(example)
    if "prompt" in example:
        return preference_row(example)
    paired = any(PREFERENCE_PAIR_TAG in d.reason_tags for d in decisions if d.verdict == "edit")
    original = item.get("payload")
    if not paired or item.get("edited") is None or original is None:
        raise RowRefused("an SFT item without a reviewer's preference edit")
    return pair_from_edit(original, item["edited"])


def row_bytes(row: Row) -> bytes:
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


def row_messages(row: Row) -> list[Turns]:
    """The conversations a row trains on: one for SFT, prompt+chosen and prompt+rejected."""
    if "messages" in row:
        return [row["messages"]]
    return [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]
