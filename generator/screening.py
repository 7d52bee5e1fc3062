"""Screening every item for PII and secrets, and whether an item's screen is current.

The ``pii`` score carries, in its evidence, the hash of the content it screened
(``SCREENED_HASH``). An edit changes the content, so a score made before the edit is no longer
current; the export refuses an item whose score is missing or not current. Imported items are
screened as they are stored, generated ones by the filter pipeline, and the store screens an
item again in the same atomic step as any decision that changes (or finds stale) its content.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson

from generator.schema import Candidate, PreferenceExample, Score, SFTExample, content_hash

if TYPE_CHECKING:
    from generator.filters.pii import PIIFilter

PII_FILTER = "pii"
SCREENED_HASH = "screened_hash"


def screened_content(item: dict[str, Any]) -> Any:
    """What a reviewer would export: the edit if there is one, else the payload, else raw."""
    for field in ("edited", "payload", "raw"):
        if item.get(field) is not None:
            return item[field]
    return None


def screened_hash(item: dict[str, Any]) -> str:
    """The hash a current ``pii`` score records for this item (stored JSON form)."""
    return content_hash("screened", screened_content(item))


def pii_score_is_current(item: dict[str, Any]) -> bool:
    """True when the item has a ``pii`` score made on its present content."""
    score = item.get("scores", {}).get(PII_FILTER)
    if not score:
        return False
    return bool(score.get("evidence", {}).get(SCREENED_HASH) == screened_hash(item))


def screened_example(candidate: Candidate) -> SFTExample | PreferenceExample | None:
    """The example a candidate holds now: the reviewer's edit if there is one, else its payload."""
    return candidate.edited if candidate.edited is not None else candidate.payload


def screened_text(candidate: Candidate) -> str:
    """Every turn of the content a candidate holds now, one per line (or its raw text), tool
    calls' arguments included, then the tools it lists (a key pasted into a tool's description
    leaves in the export as surely as one in a turn)."""
    example = screened_example(candidate)
    if example is None:
        return candidate.raw or ""
    turns = [m.text for m in example.turns()]
    # Call ids are ids, but an id-shaped token is an id-shaped secret too: screened as well.
    turns += [
        ident
        for m in example.turns()
        for ident in [m.tool_call_id, *(c.id for c in m.tool_calls or [])]
        if ident
    ]
    if isinstance(example, SFTExample) and example.tools:
        turns += [orjson.dumps(tool.model_dump(mode="json")).decode() for tool in example.tools]
    return "\n".join(turns)


def candidate_screened_hash(candidate: Candidate) -> str:
    """``screened_hash`` of the candidate's stored JSON form, without dumping the whole model."""
    example = screened_example(candidate)
    content = example.model_dump(mode="json") if example is not None else candidate.raw
    return content_hash("screened", content)


def is_current(candidate: Candidate) -> bool:
    """``pii_score_is_current`` for a candidate model."""
    score = candidate.scores.get(PII_FILTER)
    return score is not None and score.evidence.get(SCREENED_HASH) == candidate_screened_hash(
        candidate
    )


@cache
def _pii_filter() -> PIIFilter:
    # Imported here: the filter module imports this one for the hash it stamps.
    from generator.filters.pii import PIIFilter

    return PIIFilter()


def screen(candidate: Candidate) -> Score:
    """The ``pii`` score of the candidate's present content (its edit, if any), stamped with
    that content's hash."""
    [score] = _pii_filter().score([candidate])
    return score


def findings(candidate: Candidate) -> list[tuple[str, str, str]]:
    """What the PII/secret screen finds in the candidate's present content, as (kind, value,
    masked value): for a reviewer's screen, which shows the masked value where it is."""
    from generator.filters.pii import mask

    found = _pii_filter().findings(screened_text(candidate))
    return [(f.kind, f.value, mask(f.value)) for f in found]


def screen_all(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates, each with a current ``pii`` score in place of any earlier one."""
    scores = _pii_filter().score(list(candidates))
    return [
        c.model_copy(update={"scores": {**c.scores, PII_FILTER: s}})
        for c, s in zip(candidates, scores, strict=True)
    ]


def original_flag(item: dict[str, Any]) -> str | None:
    """For an edited item (stored JSON form): why its original content must not leave, or None.

    The item's ``pii`` score screens the edit, but the original can still leave as the rejected
    side of a pair made from the edit, or in the provenance's edit diff; so the original is
    screened here, when an export is about to write it (only edited items pay for this).
    """
    if item.get("edited") is None or item.get("payload") is None:
        return None
    original = Candidate(
        kind=item["kind"], payload=item["payload"], run_id=item["run_id"], gap_id=item["gap_id"]
    )
    score = screen(original)
    return None if score.passed else score.reason
