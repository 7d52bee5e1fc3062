"""Cost per accepted item, per gap: everything generated for the gap is paid for by what
reviewers accepted from it; reviewer time comes from the decision log."""

from __future__ import annotations

import pytest

from generator.costs import gap_costs, reviewer_seconds
from generator.schema import Candidate, CandidateKind, CandidateStatus, Provenance, Usage
from generator.throughput import TimedDecision
from tests.factories import sft


def made(index: int, gap: str, status: CandidateStatus, backend: str = "openai") -> Candidate:
    return Candidate(
        kind=CandidateKind.SFT,
        payload=sft(f"Question {index}?", f"Answer {index}."),
        run_id="r",
        gap_id=gap,
        status=status,
        provenance=Provenance(
            backend=backend,
            usage=Usage(prompt_tokens=100, completion_tokens=400, backend_seconds=2.0),
        ),
    )


def test_rejected_items_are_paid_for_by_the_accepted_ones() -> None:
    items = [
        made(1, "a", CandidateStatus.ACCEPTED),
        made(2, "a", CandidateStatus.REJECTED),
        made(3, "a", CandidateStatus.AUTO_REJECTED),
        made(4, "b", CandidateStatus.PENDING),
    ]
    [a, b] = gap_costs(items, [], prices={"openai": 2.0})
    assert (a.gap_id, a.generated, a.accepted, a.tokens) == ("a", 3, 1, 1500)
    assert a.per_accepted(a.tokens) == 1500 and a.per_accepted(a.backend_seconds) == 6.0
    assert a.per_accepted(a.money) == pytest.approx(1500 * 2.0 / 1e6)
    assert b.accepted == 0 and b.per_accepted(b.tokens) is None, "nothing bought yet"


def test_a_backend_without_a_price_leaves_the_money_unknown_not_zero() -> None:
    items = [
        made(1, "a", CandidateStatus.ACCEPTED),
        made(2, "a", CandidateStatus.ACCEPTED, "local"),
    ]
    [priced] = gap_costs(items, [], prices={"openai": 1.0})
    assert priced.money is None and priced.tokens == 1000


def test_imported_items_without_a_usage_record_count_as_items_not_as_costs() -> None:
    imported = made(1, "a", CandidateStatus.ACCEPTED).model_copy(
        update={"provenance": Provenance(source="imported")}
    )
    [gap] = gap_costs([imported, made(2, "a", CandidateStatus.REJECTED)], [])
    assert (gap.generated, gap.counted, gap.tokens, gap.money) == (2, 1, 500, None)


def test_reviewer_time_is_the_gap_since_the_reviewers_last_decision() -> None:
    decisions = [
        TimedDecision("ann", "accept", "a", 0.0),  # first of a sitting: the median counts
        TimedDecision("ann", "reject", "a", 10.0),
        TimedDecision("ann", "accept", "b", 40.0),
        TimedDecision("ann", "skip", "b", 45.0),  # a skip is no review of an item
        TimedDecision("ann", "accept", "b", 2000.0),  # after a break: the median counts
    ]
    # Measured: 10 s and 30 s (median 20 s) for the two decisions after another.
    assert reviewer_seconds(decisions) == {"a": 20.0 + 10.0, "b": 30.0 + 20.0}
