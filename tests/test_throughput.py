"""Reviewer throughput (generator/throughput.py): per reviewer and per gap, from the log."""

from __future__ import annotations

from generator.throughput import TimedDecision, throughput


def decided(reviewer: str, gap: str, at: float, verdict: str = "accept") -> TimedDecision:
    return TimedDecision(reviewer, verdict, gap, at)


LOG = [
    decided("ann", "math", 0),
    decided("ann", "math", 10),
    decided("ann", "code", 40),
    decided("ann", "code", 70),
    decided("bob", "code", 5),
    decided("bob", "math", 9),
    decided("bob", "math", 9 + 3600),  # after a break: not time spent on that item
    decided("bob", "math", 3700, "skip"),  # not a review
    decided("bob", "code", 3620, "undo"),
]


def test_each_item_takes_the_time_since_the_reviewers_previous_decision_counted_for_its_gap() -> (
    None
):
    per_gap = {row.key: row for row in throughput(LOG, by="gap")}
    assert per_gap["math"].decisions == 4 and per_gap["code"].decisions == 3
    assert per_gap["math"].median_seconds == 7  # ann 10, bob 4
    assert per_gap["code"].median_seconds == 30  # ann 30 and 30
    assert per_gap["code"].per_hour == 120


def test_per_reviewer_leaves_out_breaks_skips_and_undos() -> None:
    per_reviewer = {row.key: row for row in throughput(LOG, by="reviewer")}
    assert per_reviewer["ann"].decisions == 4 and per_reviewer["ann"].median_seconds == 30
    assert per_reviewer["bob"].decisions == 3 and per_reviewer["bob"].median_seconds == 4
    assert throughput([decided("cy", "x", 0)], by="reviewer")[0].per_hour is None
