"""A cosine vector index: exact (NumPy) for small sets, HNSW (usearch) past ``ann_above``.

Exact search is O(n) per query and needs no build; HNSW answers in ~O(log n) after a build and
trades a little recall for that. Below ~20,000 vectors exact search is fast enough and has
perfect recall, so the index switches only when the set grows past ``ann_above``. Keys are ints;
callers keep their own key -> id mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from generator.embeddings import max_similarity


class VectorIndex:
    def __init__(
        self,
        dimension: int,
        *,
        ann_above: int = 20_000,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
    ) -> None:
        self.dimension = dimension
        self.ann_above = ann_above
        self.options = {
            "connectivity": connectivity,
            "expansion_add": expansion_add,
            "expansion_search": expansion_search,
        }
        self._vectors = np.zeros((0, dimension), dtype=np.float32)
        self._ann: Any = None

    def __len__(self) -> int:
        return len(self._ann) if self._ann is not None else len(self._vectors)

    @property
    def approximate(self) -> bool:
        return self._ann is not None

    def add(self, vectors: np.ndarray) -> None:
        """Append vectors; their keys continue from ``len(self)``."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._ann is None and len(self._vectors) + len(vectors) > self.ann_above:
            self._build_ann()
        if self._ann is not None:
            start = len(self._ann)
            self._ann.add(np.arange(start, start + len(vectors)), vectors)
        else:
            self._vectors = np.concatenate([self._vectors, vectors])

    def _build_ann(self) -> None:
        from usearch.index import Index

        self._ann = Index(
            ndim=self.dimension,
            metric="cos",
            dtype="f32",
            connectivity=self.options["connectivity"],
            expansion_add=self.options["expansion_add"],
            expansion_search=self.options["expansion_search"],
        )
        if len(self._vectors):
            self._ann.add(np.arange(len(self._vectors)), self._vectors)
        self._vectors = np.zeros((0, self.dimension), dtype=np.float32)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(keys, cosine similarities), each (len(queries), k); -1 / -inf where fewer exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        keys = np.full((len(queries), k), -1, dtype=np.int64)
        sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
        if len(self) == 0 or len(queries) == 0:
            return keys, sims
        if self._ann is not None:
            found = self._ann.search(queries, k)
            # usearch answers a one-row query with 1-D arrays: make them one row again
            found_keys = np.asarray(found.keys).reshape(len(queries), -1)
            distances = np.asarray(found.distances).reshape(len(queries), -1)
            count = min(k, found_keys.shape[1])
            keys[:, :count] = found_keys[:, :count]
            sims[:, :count] = 1.0 - distances[:, :count]
            sims[keys < 0] = -np.inf
            return keys, sims
        if k == 1:
            best, where = max_similarity(queries, self._vectors)
            return where[:, None], best[:, None]
        scores = queries @ self._vectors.T
        count = min(k, scores.shape[1])
        top = np.argpartition(-scores, count - 1, axis=1)[:, :count]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        keys[:, :count] = np.take_along_axis(top, order, axis=1)
        sims[:, :count] = np.take_along_axis(scores, keys[:, :count], axis=1)
        return keys, sims

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._ann is None:
            self._build_ann()
        self._ann.save(str(path))

    @classmethod
    def load(cls, path: Path, dimension: int) -> VectorIndex:
        from usearch.index import Index

        index = cls(dimension, ann_above=0)
        index._ann = Index.restore(str(path))
        return index
