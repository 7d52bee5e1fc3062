"""Reviewer agreement: replaying the decision log into votes, and the agreement figures."""

from __future__ import annotations

import pytest

from generator.agreement import agreement, votes_by_item
from generator.schema import Decision
from tests.factories import sft


def decision(item: str, reviewer: str, verdict: str) -> Decision:
    return Decision.model_validate(
        {
            "item_id": item,
            "run_id": "run-1",
            "reviewer": reviewer,
            "verdict": verdict,
            "item_version": 0,
            "edited_payload": sft("An edited question?") if verdict == "edit" else None,
        }
    )


def test_the_log_replays_into_votes_with_undos_edits_and_skips_applied() -> None:
    log = [
        decision("i1", "alice", "reject"),
        decision("i1", "alice", "undo"),
        decision("i1", "alice", "edit"),
        decision("i1", "bob", "skip"),
        decision("i1", "bob", "reject"),
        decision("i2", "carol", "bulk_reject"),
    ]
    assert votes_by_item(log) == {"i1": {"alice": "accept", "bob": "reject"}}


def test_perfect_agreement_on_mixed_labels_is_alpha_one() -> None:
    votes = {
        "i1": {"alice": "accept", "bob": "accept"},
        "i2": {"alice": "reject", "bob": "reject"},
        "i3": {"alice": "accept", "bob": "accept", "carol": "accept"},
        "i4": {"alice": "accept"},  # one vote: no overlap, not counted
    }
    figures = agreement(votes)
    assert figures.items == 3 and figures.votes == 7
    assert figures.pair_agreement == 1.0
    assert figures.alpha == pytest.approx(1.0)
    alice_bob = next(p for p in figures.pairs if p.reviewers == ("alice", "bob"))
    assert alice_bob.shared_items == 3 and alice_bob.kappa == pytest.approx(1.0)


def test_opposite_reviewers_agree_below_chance() -> None:
    votes = {f"i{n}": {"alice": "accept", "bob": "reject"} for n in range(3)}
    votes |= {f"j{n}": {"alice": "reject", "bob": "accept"} for n in range(3)}
    figures = agreement(votes)
    assert figures.pair_agreement == 0.0
    assert figures.alpha is not None and figures.alpha < 0
    assert figures.pairs[0].kappa is not None and figures.pairs[0].kappa < 0


def test_one_label_throughout_leaves_chance_corrected_figures_undefined() -> None:
    figures = agreement({"i1": {"alice": "accept", "bob": "accept"}})
    assert figures.pair_agreement == 1.0
    assert figures.alpha is None and figures.pairs[0].kappa is None


def test_no_overlap_gives_no_figures() -> None:
    figures = agreement({"i1": {"alice": "accept"}})
    assert figures.items == 0 and figures.pair_agreement is None and figures.alpha is None
