"""Off-topic outputs: a candidate far from the centroid of the gap it was generated for.

The centroids are the gap report's (the mean embedding of a reference cluster, or of a taxonomy
cell's description and examples). Soft by default: a reviewer decides. Measured on the
user-oriented instructions (a leave-one-out centroid per app, text-davinci-003's answers): at
cosine 0.15, 9% of on-topic answers and 71% of answers placed in a foreign app's gap fall below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from generator.embeddings import Embedder
from generator.filters.base import turn_texts
from generator.filters.reference import item_vectors
from generator.schema import Candidate, Score


class OffTopicFilter:
    name = "off_topic"
    hard = False
    cost = 5

    def __init__(
        self,
        embedder: Embedder,
        centroids: Mapping[str, Sequence[float]],
        *,
        threshold: float = 0.15,
    ) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.centroids = {
            gap: np.asarray(vector, dtype=np.float32) for gap, vector in centroids.items()
        }

    def score(self, candidates: list[Candidate]) -> list[Score]:
        vectors = item_vectors(self.embedder, [turn_texts(c) for c in candidates])
        scores = []
        for candidate, vector in zip(candidates, vectors, strict=True):
            centroid = self.centroids.get(candidate.gap_id or "")
            if centroid is None:
                scores.append(
                    Score(filter=self.name, value=1.0, passed=True, reason="gap has no centroid")
                )
                continue
            similarity = round(float(vector @ centroid), 4)
            on_topic = similarity >= self.threshold
            scores.append(
                Score(
                    filter=self.name,
                    value=similarity,
                    passed=on_topic,
                    reason=f"{'close to' if on_topic else 'far from'} gap {candidate.gap_id} "
                    f"(cosine {similarity:.2f}, threshold {self.threshold})",
                    evidence={"gap": candidate.gap_id, "similarity": similarity},
                )
            )
        return scores
