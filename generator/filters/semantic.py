"""Semantic duplicates and diversity, by embedding cosine against existing and accepted data and
the batch itself. The nearest neighbours are kept as evidence, by id and similarity only: evidence
travels into provenance.jsonl with the exported item, and no item carries another's text (a
reviewer who wants to compare looks the neighbour up by its id).

``value`` is the nearest neighbour's similarity; ``novelty`` (1 - that) in the evidence is the
diversity signal: how much a candidate adds beyond what is already there. A candidate's vector is
the normalised mean of its turns' vectors (see ``reference``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from generator.embeddings import Embedder
from generator.filters.base import full_text, turn_texts
from generator.filters.reference import EmbeddingIndex, ReferenceItem, as_items, item_vectors
from generator.schema import Candidate, Score


class SemanticDuplicateFilter:
    name = "semantic_duplicate"
    hard = True
    cost = 5

    def __init__(
        self,
        embedder: Embedder,
        reference: Sequence[tuple[str, str] | ReferenceItem] = (),
        *,
        threshold: float = 0.92,
        neighbours: int = 3,
        ann_above: int = 20_000,
        shared: EmbeddingIndex | None = None,
    ) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.neighbours = neighbours
        self.shared = shared
        self.local = EmbeddingIndex(embedder.dimension, ann_above=ann_above)
        items = as_items(reference)
        if items:
            vectors = item_vectors(embedder, [i.turns for i in items])
            self.local.add([i.id for i in items], [i.text for i in items], vectors)

    def _nearest(
        self, vector: np.ndarray, shared: list[dict[str, object]]
    ) -> list[dict[str, object]]:
        """The nearest neighbours as ``{"id", "similarity"}``, best first (the index's text
        preview is left behind on purpose)."""
        found = self.local.search(vector, self.neighbours)[0] + shared
        found.sort(key=lambda n: -float(n["similarity"]))  # type: ignore[arg-type]
        return [{"id": n["id"], "similarity": n["similarity"]} for n in found[: self.neighbours]]

    def score(self, candidates: list[Candidate]) -> list[Score]:
        turns = [turn_texts(c) for c in candidates]
        vectors = item_vectors(self.embedder, turns)
        # The shared (existing data's) index is read-only: one search for the whole batch.
        shared = (
            self.shared.search(vectors, self.neighbours, turns)
            if self.shared is not None
            else [[] for _ in candidates]
        )
        scores = []
        for candidate, vector, in_shared in zip(candidates, vectors, shared, strict=True):
            nearest = self._nearest(vector[None, :], in_shared)
            top = float(nearest[0]["similarity"]) if nearest else 0.0  # type: ignore[arg-type]
            evidence = {"nearest": nearest, "novelty": round(1.0 - top, 4)}
            duplicate = bool(nearest) and top >= self.threshold
            scores.append(
                Score(
                    filter=self.name,
                    value=top,
                    passed=not duplicate,
                    reason=f"semantic duplicate of {nearest[0]['id']} (cosine {top:.2f})"
                    if duplicate
                    else "no semantic duplicate",
                    evidence=evidence,
                )
            )
            if not duplicate:  # later candidates are compared with this one too
                self.local.add([candidate.id], [full_text(candidate)], vector[None, :])
        return scores
