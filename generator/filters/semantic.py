"""Semantic duplicates and diversity, by embedding cosine against existing and accepted data and
the batch itself. The nearest neighbours and their similarity are kept as evidence: the review
UI shows them next to the candidate.

``value`` is the nearest neighbour's similarity; ``novelty`` (1 - that) in the evidence is the
diversity signal: how much a candidate adds beyond what is already there.
"""

from __future__ import annotations

from collections.abc import Sequence

from generator.embeddings import Embedder
from generator.filters.base import full_text
from generator.filters.vectors import VectorIndex
from generator.schema import Candidate, Score


class SemanticDuplicateFilter:
    name = "semantic_duplicate"
    hard = True
    cost = 5

    def __init__(
        self,
        embedder: Embedder,
        reference: Sequence[tuple[str, str]] = (),
        *,
        threshold: float = 0.92,
        neighbours: int = 3,
        ann_above: int = 20_000,
    ) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.neighbours = neighbours
        self.ids = [source for source, _ in reference]
        self.texts = [text for _, text in reference]
        self.index = VectorIndex(embedder.dimension, ann_above=ann_above)
        if reference:
            self.index.add(embedder.embed(self.texts))

    def score(self, candidates: list[Candidate]) -> list[Score]:
        texts = [full_text(c) for c in candidates]
        vectors = self.embedder.embed(texts)
        scores = []
        for candidate, text, vector in zip(candidates, texts, vectors, strict=True):
            keys, sims = self.index.search(vector[None, :], self.neighbours)
            nearest = [
                {"id": self.ids[k], "similarity": round(float(s), 4), "text": self.texts[k][:300]}
                for k, s in zip(keys[0], sims[0], strict=True)
                if k >= 0
            ]
            top = nearest[0]["similarity"] if nearest else 0.0
            evidence = {"nearest": nearest, "novelty": round(1.0 - float(top), 4)}
            if nearest and float(top) >= self.threshold:
                reason = f"semantic duplicate of {nearest[0]['id']} (cosine {top:.2f})"
                scores.append(
                    Score(
                        filter=self.name,
                        value=float(top),
                        passed=False,
                        reason=reason,
                        evidence=evidence,
                    )
                )
                continue
            scores.append(
                Score(
                    filter=self.name,
                    value=float(top),
                    passed=True,
                    reason="no semantic duplicate",
                    evidence=evidence,
                )
            )
            self.index.add(vector[None, :])  # later candidates are compared with this one too
            self.ids.append(candidate.id)
            self.texts.append(text)
        return scores
