"""Agreement between reviewers, on items that several of them voted on (a run with overlap).

Votes come from replaying the decision log, so the figures cover every run, and they follow the
log's own corrections: an undo withdraws that reviewer's vote; an edit is an accepting vote; skips
and bulk actions are not votes. Two figures, because each misleads alone: the share of reviewer
pairs that agree (easy to read, inflated when nearly everything is accepted) and Krippendorff's
alpha (chance-corrected, handles any number of reviewers per item and missing votes), plus
Cohen's kappa for each pair of reviewers who shared items.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from pydantic import BaseModel

from generator.schema import DecisionFacts

_VOTE = {"accept": "accept", "edit": "accept", "reject": "reject"}


class PairAgreement(BaseModel):
    reviewers: tuple[str, str]
    shared_items: int
    agreement: float
    kappa: float | None  # None where it is undefined (both gave one label throughout)


class Agreement(BaseModel):
    items: int  # items with two or more votes
    votes: int
    pair_agreement: float | None
    alpha: float | None
    pairs: list[PairAgreement]


def vote_of(decision: DecisionFacts) -> str | None:
    """The decision as a vote: accept (an edit too), reject, or swap (a pair accepted in the
    other order); None for what is not a vote (skips, undos, bulk actions)."""
    if decision.verdict == "edit" and "swapped" in decision.reason_tags:
        return "swap"
    return _VOTE.get(decision.verdict)


def votes_by_item(decisions: Iterable[DecisionFacts]) -> dict[str, dict[str, str]]:
    """item -> reviewer -> accept|reject|swap, as the log stands after undos (log order)."""
    votes: dict[str, dict[str, str]] = defaultdict(dict)
    for decision in decisions:
        vote = vote_of(decision)
        if vote is not None:
            votes[decision.item_id][decision.reviewer] = vote
        elif decision.verdict == "undo":
            votes[decision.item_id].pop(decision.reviewer, None)
    return {item: by for item, by in votes.items() if by}


def _kappa(left: list[str], right: list[str]) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if len(set(left) | set(right)) < 2:
        return None
    value = float(cohen_kappa_score(left, right))
    return None if math.isnan(value) else value


def _alpha(shared: dict[str, dict[str, str]]) -> float | None:
    import krippendorff

    reviewers = sorted({r for by in shared.values() for r in by})
    items = sorted(shared)
    codes = {"reject": 0.0, "accept": 1.0, "swap": 2.0}  # nominal: the numbers are only names
    data = np.full((len(reviewers), len(items)), np.nan)
    for column, item in enumerate(items):
        for row, reviewer in enumerate(reviewers):
            vote = shared[item].get(reviewer)
            if vote is not None:
                data[row, column] = codes[vote]
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return None  # one label throughout: alpha is undefined, not perfect
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def agreement(votes: dict[str, dict[str, str]]) -> Agreement:
    """Agreement over the items with at least two votes."""
    shared = {item: by for item, by in votes.items() if len(by) >= 2}
    agreeing = total = 0
    per_pair: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for by in shared.values():
        for (a, va), (b, vb) in itertools.combinations(sorted(by.items()), 2):
            total += 1
            agreeing += va == vb
            per_pair[(a, b)][0].append(va)
            per_pair[(a, b)][1].append(vb)
    pairs = [
        PairAgreement(
            reviewers=pair,
            shared_items=len(left),
            agreement=sum(x == y for x, y in zip(left, right, strict=True)) / len(left),
            kappa=_kappa(left, right),
        )
        for pair, (left, right) in sorted(per_pair.items())
    ]
    return Agreement(
        items=len(shared),
        votes=sum(len(by) for by in shared.values()),
        pair_agreement=agreeing / total if total else None,
        alpha=_alpha(shared) if shared else None,
        pairs=pairs,
    )
