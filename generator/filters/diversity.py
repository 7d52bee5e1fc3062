"""Diversity: prefer candidates that add coverage, not more of the same.

``mmr_order`` is maximal marginal relevance over a batch: repeatedly take the candidate with the
best trade-off between its own novelty (distance to the existing data) and its distance to the
candidates already taken. Memory O(n * d); time O(n^2 * d) for n candidates in the batch, which is
fine for the batch sizes of one gap (hundreds), not for a whole corpus.
"""

from __future__ import annotations

import numpy as np


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
