"""How far a judge agrees with the humans, next to how far the humans agree with each other.

A model may only stand in for reviewers where it agrees with them at least as well as they agree
with each other (DESIGN.md, decision 10), so the figures are made from the same votes:

- **the humans' yardstick**: each vote on an item with two or more votes, against the majority of
  the *other* votes on that item (leave one out; an item whose other votes tie has no majority
  and is left out);
- **the judge**, two ways: against the majority of all the item's votes (the figure published
  for LLM judges), and **in a reviewer's place**: on exactly the humans' rows, the judge's label
  against the same leave-one-out majority each reviewer is compared with. Only the second is
  like for like (a reference of all k votes ties less often than one of k - 1, which flatters
  whoever is compared with it), so only it decides whether the judge meets the humans.

Labels are the review's own: ``accept`` and ``reject`` for SFT items; for a preference pair
``accept`` (the proposed order), ``swap`` (the other order) and ``reject`` (neither: a tie).
Each comparison gives the share of agreement, Cohen's kappa (chance-corrected) with a bootstrap
confidence interval over items, and the confusion table; and the same "where neither said tie"
(no ``reject`` on either side), the figure published for LLM judges of pairs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:
    from generator.store import Store

LABELS = ("accept", "swap", "reject")
BOOTSTRAP_SAMPLES = 1000


class Comparison(BaseModel):
    """One rater (a human or the judge) against the humans' majority."""

    pairs: int  # label pairs compared
    items: int
    agreement: float | None
    kappa: float | None
    kappa_low: float | None  # 95% bootstrap interval over items
    kappa_high: float | None
    confusion: dict[str, dict[str, int]]  # rater label -> majority label -> count
    decisive_pairs: int  # neither side ``reject`` (no tie)
    decisive_agreement: float | None


class Calibration(BaseModel):
    """The judge and the humans, on one run or one gap."""

    scope: str
    items_with_votes: int
    humans: Comparison
    judge: Comparison | None  # None where no item has a judge verdict
    judge_in_place: Comparison | None  # on the humans' rows; None without two votes on an item

    @property
    def judge_meets_humans(self) -> bool:
        """Like for like: the judge in a reviewer's place agrees (kappa) at least as well."""
        return (
            self.judge_in_place is not None
            and self.judge_in_place.kappa is not None
            and self.humans.kappa is not None
            and self.judge_in_place.kappa >= self.humans.kappa
        )


def majority(labels: Sequence[str]) -> str | None:
    """The label most votes gave, or None when two labels tie for most (or no votes)."""
    counts = Counter(labels).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def calibrate(
    votes: Mapping[str, Mapping[str, str]],
    judge: Mapping[str, str],
    scope: str = "run",
    *,
    seed: int = 0,
) -> Calibration:
    """``votes``: item -> reviewer -> label; ``judge``: item -> the judge's label."""
    humans: list[tuple[str, str, str]] = []  # (item, rater label, majority of the others)
    in_place: list[tuple[str, str, str]] = []  # the judge on the same rows
    for item, by in votes.items():
        if len(by) < 2:
            continue
        for reviewer, label in by.items():
            others = majority([v for r, v in by.items() if r != reviewer])
            if others is not None:
                humans.append((item, label, others))
                if item in judge:
                    in_place.append((item, judge[item], others))
    judged: list[tuple[str, str, str]] = []
    for item, label in judge.items():
        found = majority(list(votes.get(item, {}).values()))
        if found is not None:
            judged.append((item, label, found))
    return Calibration(
        scope=scope,
        items_with_votes=sum(1 for by in votes.values() if by),
        humans=compare(humans, seed=seed),
        judge=compare(judged, seed=seed) if judged else None,
        judge_in_place=compare(in_place, seed=seed) if in_place else None,
    )


def compare(rows: Sequence[tuple[str, str, str]], *, seed: int = 0) -> Comparison:
    """(item, rater label, reference label) rows: agreement, kappa with its bootstrap interval
    (items resampled with replacement, so an item's several rows stay together), confusion."""
    confusion: dict[str, dict[str, int]] = {}
    for _, rater, reference in rows:
        confusion.setdefault(rater, {}).setdefault(reference, 0)
        confusion[rater][reference] += 1
    decisive = [(r, m) for _, r, m in rows if r != "reject" and m != "reject"]
    low, high = _bootstrap(rows, seed)
    return Comparison(
        pairs=len(rows),
        items=len({item for item, _, _ in rows}),
        agreement=_share(rows),
        kappa=kappa([r for _, r, _ in rows], [m for _, _, m in rows]),
        kappa_low=low,
        kappa_high=high,
        confusion=confusion,
        decisive_pairs=len(decisive),
        decisive_agreement=(sum(r == m for r, m in decisive) / len(decisive)) if decisive else None,
    )


def kappa(left: Sequence[str], right: Sequence[str]) -> float | None:
    """Cohen's kappa; None where it is undefined (no rows, or one label throughout)."""
    if not left or len(set(left) | set(right)) < 2:
        return None
    labels = sorted(set(left) | set(right))
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for a, b in zip(left, right, strict=True):
        table[index[a], index[b]] += 1
    total = table.sum()
    observed = np.trace(table) / total
    expected = float((table.sum(axis=1) * table.sum(axis=0)).sum()) / total**2
    if expected >= 1.0:
        return None
    value = (observed - expected) / (1.0 - expected)
    return None if math.isnan(value) else float(value)


def _share(rows: Sequence[tuple[str, str, str]]) -> float | None:
    return sum(r == m for _, r, m in rows) / len(rows) if rows else None


def _bootstrap(
    rows: Sequence[tuple[str, str, str]], seed: int
) -> tuple[float | None, float | None]:
    """The 95% interval of kappa over ``BOOTSTRAP_SAMPLES`` resamples of the items (with
    replacement, each item with all its rows). Vectorised: each item's rows as one confusion
    table, each resample a weighted sum of them (an export of 100,000 rows takes a second)."""
    items = sorted({item for item, _, _ in rows})
    if len(items) < 2:
        return None, None
    labels = sorted({label for _, r, m in rows for label in (r, m)})
    if len(labels) < 2:
        return None, None
    size = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    position = {item: i for i, item in enumerate(items)}
    tables = np.zeros((len(items), size * size))
    for item, rater, reference in rows:
        tables[position[item], index[rater] * size + index[reference]] += 1
    random = np.random.default_rng(seed)
    values: list[np.ndarray] = []
    for start in range(0, BOOTSTRAP_SAMPLES, 100):
        count = min(100, BOOTSTRAP_SAMPLES - start)
        drawn = random.integers(0, len(items), (count, len(items)))
        weights = np.stack([np.bincount(d, minlength=len(items)) for d in drawn])
        values.append(_kappas((weights @ tables).reshape(count, size, size)))
    found = np.concatenate(values)
    found = found[~np.isnan(found)]
    if not len(found):
        return None, None
    return float(np.percentile(found, 2.5)), float(np.percentile(found, 97.5))


def _kappas(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each (n, L, L) confusion table; NaN where undefined."""
    total = tables.sum(axis=(1, 2))
    observed = np.trace(tables, axis1=1, axis2=2) / total
    expected = (tables.sum(axis=2) * tables.sum(axis=1)).sum(axis=1) / total**2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected < 1.0, (observed - expected) / (1.0 - expected), np.nan)


def judge_label(
    score_value: float, passed: bool, evidence: Mapping[str, object], pair: bool
) -> str | None:
    """The judge's verdict as a review label, or None where it gave none.

    A recorded verdict (imported with a replay) is taken as it is. For a pair, the live judge
    asks twice with the answers in both orders: chosen preferred both times is ``accept``, never
    is ``swap``, once is ``reject`` (a position-biased or even verdict: a tie). For an SFT item,
    its pass is ``accept``."""
    recorded = evidence.get("recorded")
    if isinstance(recorded, str) and recorded in LABELS:
        return recorded
    if pair:
        if "orders" not in evidence:
            return None  # no usable verdict
        return {1.0: "accept", 0.0: "swap"}.get(score_value, "reject")
    if "output" in evidence or "helpfulness" not in evidence:
        return None  # unparseable output, or nothing judged
    return "accept" if passed else "reject"


def run_calibration(store: Store, run_id: str) -> list[Calibration]:
    """A run's calibration from its decision log (human votes only: the pre-screen's own
    decisions are not a yardstick) and the judge scores of the items that have votes: the
    run, then each gap. Items are read as stored JSON, and only those with votes."""
    from generator.agreement import votes_by_item
    from generator.schema import AUTO_REVIEWER, CandidateKind

    decisions = [entry.decision for entry in store.decisions(run_id)]
    votes = votes_by_item(d for d in decisions if d.reviewer != AUTO_REVIEWER)
    judged: dict[str, str] = {}
    gaps: dict[str, str] = {}
    for item in store.get_many_raw(sorted(votes)):
        gaps[item["id"]] = item["gap_id"]
        score = (item.get("scores") or {}).get("judge")
        if score:
            pair = item["kind"] == CandidateKind.PREFERENCE.value
            label = judge_label(score["value"], score["passed"], score.get("evidence", {}), pair)
            if label:
                judged[item["id"]] = label
    results = [calibrate(votes, judged, scope=f"run {run_id}")]
    for gap in sorted(set(gaps.values())):
        members = {item for item, of in gaps.items() if of == gap}
        results.append(
            calibrate(
                {i: v for i, v in votes.items() if i in members},
                {i: j for i, j in judged.items() if i in members},
                scope=f"gap {gap}",
            )
        )
    return results


def table_rows(result: Calibration) -> list[list[str]]:
    """Rows for a table: scope, who, comparisons, agreement, no tie, kappa [95% CI]: the
    humans, the judge against all votes, the judge in a reviewer's place."""
    return [
        [result.scope, who, *_figures(found)]
        for who, found in (
            ("humans", result.humans),
            ("judge", result.judge),
            ("judge in a reviewer's place", result.judge_in_place),
        )
    ]


def _figures(c: Comparison | None) -> list[str]:
    if c is None or not c.pairs:
        return ["0", "-", "-", "-"]
    kappa_text = "-" if c.kappa is None else f"{c.kappa:.2f}"
    if c.kappa_low is not None and c.kappa_high is not None:
        kappa_text += f" [{c.kappa_low:.2f}, {c.kappa_high:.2f}]"
    share = "-" if c.agreement is None else f"{c.agreement:.0%}"
    decisive = "-" if c.decisive_agreement is None else f"{c.decisive_agreement:.0%}"
    return [str(c.pairs), share, decisive, kappa_text]
