"""Which accepted items may leave: the PII/secret clearance speaks for the text its reviewer saw."""

from __future__ import annotations

from typing import Any

from generator.export.selection import _pii_refusal
from generator.schema import PII_CLEARED_TAG, CandidateKind, DecisionRecord, Message, SFTExample
from generator.screening import PII_FILTER, SCREENED_HASH, screened_hash

SFT = CandidateKind.SFT


def _flagged_item() -> dict[str, Any]:
    payload = SFTExample(
        messages=[
            Message(role="user", content="Who do I write to?"),
            Message(role="assistant", content="jane.doe@example.com"),
        ]
    ).model_dump(mode="json")
    item: dict[str, Any] = {"id": "i1", "payload": payload, "edited": None, "scores": {}}
    item["scores"][PII_FILTER] = {
        "filter": PII_FILTER,
        "value": 1.0,
        "passed": False,
        "reason": "contains email",
        "evidence": {SCREENED_HASH: screened_hash(item)},
    }
    return item


def _decision(reviewer: str, verdict: str, *tags: str) -> DecisionRecord:
    return DecisionRecord(
        item_id="i1",
        reviewer=reviewer,
        verdict=verdict,
        reason_tags=list(tags),
        note="",
        decided_at="2026-12-02T00:00:00+00:00",
    )


def test_a_flag_cleared_on_the_text_the_item_holds_lets_it_leave() -> None:
    decisions = (_decision("ann", "accept", PII_CLEARED_TAG),)
    assert _pii_refusal(_flagged_item(), decisions, SFT) is None


def test_a_clearance_given_before_a_later_edit_does_not_clear_the_edited_text() -> None:
    decisions = (_decision("ann", "accept", PII_CLEARED_TAG), _decision("bob", "edit"))
    refusal = _pii_refusal(_flagged_item(), decisions, SFT)
    assert refusal is not None and "not cleared" in refusal


def test_an_edit_that_clears_its_own_flag_or_an_accept_after_it_counts() -> None:
    item = _flagged_item()
    assert _pii_refusal(item, (_decision("bob", "edit", PII_CLEARED_TAG),), SFT) is None
    after = (_decision("bob", "edit"), _decision("cat", "accept", PII_CLEARED_TAG))
    assert _pii_refusal(item, after, SFT) is None
