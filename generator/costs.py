"""What each accepted item cost, per gap: the backend's tokens and seconds spent on everything
generated for the gap (what the filters and reviewers threw away included), and the reviewers'
seconds on its decisions, divided by the items reviewers accepted. With a price per million
tokens for a backend, money too.

Backend figures come from each candidate's ``provenance.usage`` (its share of its request, its
batch and the instruction request that wrote it). Reviewer seconds are the time since the same
reviewer's previous decision (``throughput.spells``); a reviewer's first decision, or one after
a break, has no measured time and counts the median of the measured ones.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from generator.schema import Candidate, CandidateStatus, Usage
from generator.store import Store
from generator.throughput import TimedDecision, human_decisions, spells


class GapCost(BaseModel):
    """One gap's spending and what it bought."""

    gap_id: str
    generated: int
    accepted: int
    counted: int  # candidates with a usage record (imported ones and older runs have none)
    tokens: float
    backend_seconds: float
    reviewer_seconds: float
    money: float | None  # None: no price for a backend this gap used

    def per_accepted(self, value: float | None) -> float | None:
        return None if value is None or self.accepted == 0 else value / self.accepted


def gap_costs(
    candidates: Iterable[Candidate],
    decisions: Iterable[TimedDecision],
    prices: Mapping[str, float] | None = None,
) -> list[GapCost]:
    """Per gap, sorted by id. ``prices``: dollars (or any currency) per million tokens, by
    backend name."""
    prices = prices or {}
    usage: dict[str, Usage] = defaultdict(Usage)
    money: dict[str, float | None] = defaultdict(float)
    generated: dict[str, int] = defaultdict(int)
    counted: dict[str, int] = defaultdict(int)
    accepted: dict[str, int] = defaultdict(int)
    for candidate in candidates:
        gap = candidate.gap_id
        generated[gap] += 1
        accepted[gap] += candidate.status is CandidateStatus.ACCEPTED
        spent = candidate.provenance.usage
        if spent is None:
            continue
        counted[gap] += 1
        usage[gap] = usage[gap] + spent
        price = prices.get(candidate.provenance.backend or "")
        so_far = money[gap]
        money[gap] = (
            None if price is None or so_far is None else so_far + spent.tokens * price / 1e6
        )
    reviewing = reviewer_seconds(decisions)
    return [
        GapCost(
            gap_id=gap,
            generated=generated[gap],
            accepted=accepted[gap],
            counted=counted[gap],
            tokens=usage[gap].tokens,
            backend_seconds=usage[gap].backend_seconds,
            reviewer_seconds=reviewing.get(gap, 0.0),
            money=money[gap] if counted[gap] else None,
        )
        for gap in sorted(generated)
    ]


def reviewer_seconds(decisions: Iterable[TimedDecision]) -> dict[str, float]:
    """Seconds reviewers spent per gap; an unmeasured decision counts the median measured one."""
    timed = spells(decisions)
    measured = [took for _, took in timed if took is not None]
    typical = statistics.median(measured) if measured else 0.0
    spent: dict[str, float] = defaultdict(float)
    for decision, took in timed:
        spent[decision.gap_id] += typical if took is None else took
    return dict(spent)


def run_costs(
    store: Store, run_id: str, prices: Mapping[str, float] | None = None
) -> list[GapCost]:
    """``gap_costs`` over every item of a run and its human decisions (reads every item)."""
    ids = [i for status in CandidateStatus for i in store.ids(run_id, status)]
    candidates = (
        c for start in range(0, len(ids), 1000) for c in store.get_many(ids[start : start + 1000])
    )
    decisions = human_decisions(d.decision for d in store.decisions(run_id))
    return gap_costs(candidates, decisions, prices)
