"""Diversity: prefer candidates that add coverage, not more of the same.

``mmr_order`` is maximal marginal relevance over a batch: repeatedly take the candidate with the
best trade-off between its own novelty (distance to the existing data) and its distance to the
candidates already taken. Memory O(n * d); time O(n^2 * d) for n candidates in the batch, which is
fine for the batch sizes of one gap (hundreds), not for a whole corpus.
"""

from __future__ import annotations

import numpy as np

from generator.embeddings import Embedder
from generator.filters.base import turn_texts
from generator.filters.reference import item_vectors
from generator.schema import Candidate, Score


def mmr_order(vectors: np.ndarray, novelty: np.ndarray, trade_off: float = 0.5) -> list[int]:
    """Indices of ``vectors`` (unit rows) in MMR order; ``trade_off`` 1 = novelty only."""
    count = len(vectors)
    if count == 0:
        return []
    chosen: list[int] = []
    closest = np.full(count, -1.0, dtype=np.float32)  # similarity to the nearest chosen one
    available = np.ones(count, dtype=bool)
    for _ in range(count):
        gain = trade_off * novelty - (1 - trade_off) * np.maximum(closest, 0)
        gain[~available] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        available[pick] = False
        closest = np.maximum(closest, vectors @ vectors[pick])
    return chosen


class DiversityFilter:
    """Ranks each gap's candidates in the batch by MMR (never fails anything).

    ``value`` is the candidate's novelty: its cosine distance to the nearest existing, accepted or
    earlier item, taken from the semantic-duplicate filter's evidence (1.0 when that did not run).
    ``mmr_rank`` (0 = first) orders the review queue inside a gap, so the items that add the
    most coverage are seen first and near-repeats of each other sink.
    """

    name = "diversity"
    hard = False
    cost = 6

    def __init__(self, embedder: Embedder, *, trade_off: float = 0.5) -> None:
        self.embedder = embedder
        self.trade_off = trade_off

    def score(self, candidates: list[Candidate]) -> list[Score]:
        vectors = item_vectors(self.embedder, [turn_texts(c) for c in candidates])
        novelty = np.array([_novelty(c) for c in candidates], dtype=np.float32)
        ranks: dict[int, tuple[int, int]] = {}
        by_gap: dict[str, list[int]] = {}
        for index, candidate in enumerate(candidates):
            by_gap.setdefault(candidate.gap_id, []).append(index)
        for members in by_gap.values():
            order = mmr_order(vectors[members], novelty[members], self.trade_off)
            for rank, position in enumerate(order):
                ranks[members[position]] = (rank, len(members))
        return [
            Score(
                filter=self.name,
                value=round(float(novelty[i]), 4),
                passed=True,
                reason=f"novelty {novelty[i]:.2f}, MMR rank {ranks[i][0] + 1} of {ranks[i][1]} "
                f"in gap {candidates[i].gap_id}",
                evidence={"mmr_rank": ranks[i][0], "of": ranks[i][1]},
            )
            for i in range(len(candidates))
        ]


def _novelty(candidate: Candidate) -> float:
    semantic = candidate.scores.get("semantic_duplicate")
    return float(semantic.evidence.get("novelty", 1.0)) if semantic else 1.0
