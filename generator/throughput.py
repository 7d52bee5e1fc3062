"""Reviewer throughput from the decision log: decisions, median seconds per item and items per
hour, per reviewer and per gap.

The time an item took is the time since the same reviewer's previous decision, counted for the
item's gap; a pause over ``BREAK_SECONDS`` is a break, not time spent on the item. Only human
verdicts count (undo, skip and bulk actions are not reviews of an item).
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from generator.schema import AUTO_REVIEWER, Decision

HUMAN_VERDICTS = {"accept", "edit", "reject"}
BREAK_SECONDS = 600.0


@dataclass(frozen=True)
class Throughput:
    key: str  # a reviewer or a gap
    decisions: int
    median_seconds: float | None

    @property
    def per_hour(self) -> int | None:
        return round(3600 / self.median_seconds) if self.median_seconds else None


@dataclass(frozen=True)
class TimedDecision:
    reviewer: str
    verdict: str
    gap_id: str
    at: float  # seconds since the epoch


def spells(decisions: Iterable[TimedDecision]) -> list[tuple[TimedDecision, float | None]]:
    """Each human decision with the seconds it took (None: the reviewer's first, or after a
    break)."""
    by_reviewer: dict[str, list[TimedDecision]] = defaultdict(list)
    for decision in decisions:
        if decision.verdict in HUMAN_VERDICTS:
            by_reviewer[decision.reviewer].append(decision)
    spells: list[tuple[TimedDecision, float | None]] = []
    for own in by_reviewer.values():
        own.sort(key=lambda d: d.at)
        spells.append((own[0], None))
        for before, after in itertools.pairwise(own):
            took = after.at - before.at
            spells.append((after, took if took < BREAK_SECONDS else None))
    return spells


def human_decisions(decisions: Iterable[Decision]) -> list[TimedDecision]:
    """The log's decisions made by people, timed (the pre-screen is not a reviewer)."""
    return [
        TimedDecision(d.reviewer, d.verdict, d.gap_id, d.decided_at.timestamp())
        for d in decisions
        if d.reviewer != AUTO_REVIEWER
    ]


def throughput(decisions: Iterable[TimedDecision], by: str) -> list[Throughput]:
    """Per reviewer (``by="reviewer"``) or per gap (``by="gap"``), sorted by that key."""
    counted: dict[str, int] = defaultdict(int)
    times: dict[str, list[float]] = defaultdict(list)
    for decision, took in spells(decisions):
        key = decision.reviewer if by == "reviewer" else decision.gap_id
        counted[key] += 1
        if took is not None:
            times[key].append(took)
    return [
        Throughput(key, counted[key], statistics.median(times[key]) if times[key] else None)
        for key in sorted(counted)
    ]
