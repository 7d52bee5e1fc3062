"""Two-tier nearest neighbours: static vectors shortlist, the full model confirms.

A large set (an existing dataset, an eval set, coverage's rows) is embedded with the static
tier only (``generator.static_embeddings``: thousands of texts a second). A query is embedded
with both; its ``shortlist`` nearest items by static cosine are embedded with the full model
(cached by content hash, so an item is embedded once however often it is shortlisted) and
ranked by the full model's cosine. Every similarity this module returns is the full model's: the
static tier decides only which pairs are worth computing, never a verdict.

The static search is exact (a chunked matrix product): it needs no build, which is what makes a
million-row index cheap, and it answers 64 queries against a million 256-d vectors in about a
third of a second on two cores. An HNSW graph over the same vectors built at ~800 vectors/s
here, which would cost more than the whole embedding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from generator.embeddings import Embedder

# Items per query the full model confirms. Measured on T0 (bench/cascade.py): the full model's
# nearest neighbour is in the static top 16 for the duplicates and eval items that matter.
DEFAULT_SHORTLIST = 16
# Ridge penalty of the static -> full map (``Projection``); 0.01-0.1 gave the same coverage
# labels on T0 (bench/cascade.py), 0.03 the fewest confirmations.
PROJECTION_RIDGE = 0.03
# ``best_rows``: a query not yet covered whose projected best is within this of the threshold
# has its WIDEN nearest rows by projection confirmed. Measured on T0 (bench/cascade.py): 0.03 to
# 0.08 and 16 or 32 gave the same labels on 10,000 rows but for one prompt, 0.05 and 16 the
# fewest confirmations for that.
BORDERLINE_BAND = 0.05
WIDEN = 16
# ``best_rows`` aims to fit its first projection on this many pairs: each query's static top
# ceil(FIT_PAIRS / queries) rows are confirmed, at most WIDEN (so fewer pairs below 8 queries).
FIT_PAIRS = 128
_CHUNK = 65_536  # rows per matrix product: 64 MB of scores for 256 queries
_QUERY_CHUNK = 256  # queries per matrix product, for the same bound


def pooled(
    embed: Callable[[Sequence[str]], np.ndarray], turns: Sequence[Sequence[str]]
) -> np.ndarray:
    """One unit vector per item: the normalised mean of its turns' vectors under ``embed``
    (an item with no turns gets a zero row)."""
    flat = [t for item in turns for t in item] or [""]
    vectors = embed(flat)
    out = np.zeros((len(turns), vectors.shape[1]), dtype=np.float32)
    start = 0
    for row, item in enumerate(turns):
        if item:
            out[row] = vectors[start : start + len(item)].mean(axis=0)
        start += len(item)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    normalised: np.ndarray = out / np.where(norms == 0, 1.0, norms)
    return normalised


def static_item_vectors(embedder: Embedder, turns: Sequence[Sequence[str]]) -> np.ndarray:
    return pooled(embedder.static.embed, turns)


def full_item_vectors(embedder: Embedder, turns: Sequence[Sequence[str]]) -> np.ndarray:
    return pooled(embedder.embed, turns)


def top_k(
    queries: np.ndarray, corpus: np.ndarray, k: int, scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by dot product, each corpus row's score times ``scale`` when given:
    (keys, scores), each (len(queries), k), best first; -1 / -inf where the corpus has fewer
    than ``k`` rows. Queries and rows both go in blocks, so memory stays bounded however many
    of either there are."""
    keys = np.full((len(queries), k), -1, dtype=np.int64)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    if not len(corpus) or not len(queries) or k <= 0:
        return keys, scores
    for first in range(0, len(queries), _QUERY_CHUNK):
        rows = slice(first, first + _QUERY_CHUNK)
        keys[rows], scores[rows] = _top_k_block(queries[rows], corpus, k, scale)
    keys[~np.isfinite(scores)] = -1
    return keys, scores


def _top_k_block(
    queries: np.ndarray, corpus: np.ndarray, k: int, scale: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    keys = np.full((len(queries), k), -1, dtype=np.int64)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for start in range(0, len(corpus), _CHUNK):
        block = queries @ corpus[start : start + _CHUNK].T
        if scale is not None:
            block *= scale[start : start + _CHUNK]
        count = min(k, block.shape[1])
        local = np.argpartition(-block, count - 1, axis=1)[:, :count]
        merged_keys = np.concatenate([keys, local + start], axis=1)
        merged_scores = np.concatenate([scores, np.take_along_axis(block, local, axis=1)], axis=1)
        order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        keys = np.take_along_axis(merged_keys, order, axis=1)
        scores = np.take_along_axis(merged_scores, order, axis=1)
    return keys, scores


class Projection:
    """A linear map from the static tier's space into the full model's, fitted by ridge
    regression on items both tiers embedded (the queries and the rows already confirmed).

    Why: the distilled static model ranks by its own idea of similarity. For a loose topical
    match (coverage's 0.5) that idea is far from the full model's: on 10,000 T0 rows the rows
    covering a reference prompt sat at static rank 0 to 4,917, median 412. Mapped into the full
    model's space by a map fitted on a few hundred pairs from the same data, the median rank is 1
    and 24 of 25 sit in the top 20. The map is fitted per search, on this data: cheap (a
    256 x 384 least-squares solve), and fitted to the data's own domain.
    """

    def __init__(self, static: np.ndarray, full: np.ndarray, ridge: float = PROJECTION_RIDGE):
        if len(static) != len(full) or not len(static):
            raise ValueError("a projection needs pairs of vectors, one of each tier")
        gram = static.T @ static + ridge * np.eye(static.shape[1], dtype=np.float64)
        self.matrix = np.linalg.solve(gram, static.T @ full).astype(np.float32)
        self._inverse_norms: tuple[np.ndarray, np.ndarray] | None = None

    def queries(self, full_queries: np.ndarray) -> np.ndarray:
        """Full-space queries expressed in the static space: ``(s @ W) . q == s . (q @ W.T)``."""
        projected: np.ndarray = full_queries @ self.matrix.T
        return projected

    def inverse_norms(self, static_rows: np.ndarray) -> np.ndarray:
        """1 / the norm of each row's projection, so ``(s . queries(q)) * inverse_norm`` is the
        cosine between the projected row and ``q``. One float per row, computed once per matrix
        of rows (``|s W|^2 = s (W W^T) s^T``, in blocks: no projected copy of the rows)."""
        if self._inverse_norms is not None and self._inverse_norms[0] is static_rows:
            return self._inverse_norms[1]
        gram = self.matrix @ self.matrix.T
        squares = np.concatenate(
            [
                np.einsum("ij,ij->i", block @ gram, block)
                for start in range(0, len(static_rows), _CHUNK)
                if len(block := static_rows[start : start + _CHUNK])
            ]
            or [np.zeros(0, np.float32)]
        )
        norms = np.sqrt(np.maximum(squares, 0.0))
        inverse = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
        self._inverse_norms = (static_rows, inverse.astype(np.float32))
        return self._inverse_norms[1]


class CascadeIndex:
    """Items (their turns) searched by static shortlist and full-model confirmation."""

    def __init__(self, embedder: Embedder, *, shortlist: int = DEFAULT_SHORTLIST) -> None:
        self.embedder = embedder
        self.shortlist = shortlist
        self.turns: list[tuple[str, ...]] = []
        self._blocks: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None
        self.confirmed = 0  # items the full model embedded for confirmation (a cost figure)

    def __len__(self) -> int:
        return len(self.turns)

    @property
    def static_vectors(self) -> np.ndarray:
        if self._matrix is None:
            dimension = self.embedder.static.dimension
            self._matrix = (
                np.concatenate(self._blocks) if self._blocks else np.zeros((0, dimension), "f4")
            )
            self._blocks = [self._matrix] if len(self._matrix) else []
        return self._matrix

    def add(self, turns: Sequence[Sequence[str]], static_vectors: np.ndarray | None = None) -> None:
        """Append items; ``static_vectors`` when already computed (a worker's chunk)."""
        if not len(turns):
            return
        vectors = static_vectors if static_vectors is not None else self.static_of(turns)
        if len(vectors) != len(turns):
            raise ValueError("one static vector per item")
        self._blocks.append(np.ascontiguousarray(vectors, dtype=np.float32))
        self._matrix = None
        self.turns += [tuple(t) for t in turns]

    def static_of(self, turns: Sequence[Sequence[str]]) -> np.ndarray:
        return static_item_vectors(self.embedder, turns)

    def search(
        self, query_turns: Sequence[Sequence[str]], query_vectors: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per query (its turns and its full-model vector), its ``k`` nearest items by the full
        model's cosine among its static shortlist: (keys, similarities), best first, -1 / -inf
        where fewer exist."""
        if not len(self.turns) or not len(query_turns):
            return _empty(len(query_turns), k)
        return self.search_vectors(self.static_of(query_turns), query_vectors, k)

    def search_vectors(
        self,
        static_queries: np.ndarray,
        query_vectors: np.ndarray,
        k: int,
        shortlist: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for queries given by their two vectors (a centroid has no text)."""
        if not len(self.turns) or not len(static_queries):
            return _empty(len(static_queries), k)
        candidates, _ = top_k(
            static_queries, self.static_vectors, max(shortlist or self.shortlist, k)
        )
        return self._confirm_ranked(candidates, query_vectors, k)

    def search_projected(
        self, projection: Projection, query_vectors: np.ndarray, k: int, shortlist: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search_vectors` with the shortlist drawn by ``projection`` (the query needs
        only its full-model vector: a centroid of full vectors has no static one)."""
        if not len(self.turns) or not len(query_vectors):
            return _empty(len(query_vectors), k)
        candidates, _ = _projected_top_k(self, projection, query_vectors, max(shortlist, k))
        return self._confirm_ranked(candidates, query_vectors, k)

    def _confirm_ranked(
        self, candidates: np.ndarray, query_vectors: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        wanted = sorted({int(key) for key in candidates.ravel() if key >= 0})
        full = full_item_vectors(self.embedder, [self.turns[key] for key in wanted])
        self.confirmed += len(wanted)
        row_of = {key: row for row, key in enumerate(wanted)}
        keys, sims = _empty(len(query_vectors), k)
        for query, shortlisted in enumerate(candidates):
            found = [int(key) for key in shortlisted if key >= 0]
            scores = full[[row_of[key] for key in found]] @ query_vectors[query]
            order = np.argsort(-scores, kind="stable")[:k]
            keys[query, : len(order)] = np.asarray(found)[order]
            sims[query, : len(order)] = scores[order]
        return keys, sims


class ConfirmedRows:
    """The rows of an index the full model has embedded during one search, by key."""

    def __init__(self, index: CascadeIndex) -> None:
        self.index = index
        self.vectors: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.vectors)

    def add(self, keys: np.ndarray) -> None:
        missing = sorted({int(k) for k in keys.ravel() if k >= 0} - self.vectors.keys())
        if missing:
            full = full_item_vectors(self.index.embedder, [self.index.turns[k] for k in missing])
            self.vectors.update(zip(missing, full, strict=True))
            self.index.confirmed += len(missing)

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.fromiter(self.vectors, dtype=np.int64, count=len(self.vectors))
        if not len(keys):
            return keys, np.zeros((0, self.index.embedder.dimension), dtype=np.float32)
        return keys, np.stack([self.vectors[int(k)] for k in keys])

    def best(self, query_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the best full-model cosine over the confirmed rows, and that row's key."""
        keys, vectors = self.matrix()
        where, sims = top_k(query_vectors, vectors, 1)  # in blocks of queries and of rows
        found = where[:, 0]
        return sims[:, 0], np.where(found >= 0, keys[np.maximum(found, 0)] if len(keys) else -1, -1)


@dataclass(frozen=True)
class CoveringSearch:
    """What ``best_rows`` found: per query its best confirmed row (key, -1 for none) and that
    row's full-model cosine; the projection it fitted (None when there was nothing to search);
    and how many distinct rows it embedded in full."""

    similarities: np.ndarray
    keys: np.ndarray
    projection: Projection | None
    confirmed: int


def best_rows(
    index: CascadeIndex,
    static_queries: np.ndarray,
    query_vectors: np.ndarray,
    threshold: float,
) -> CoveringSearch:
    """Per query, the best row by the full model's cosine that a search for "is any row at least
    ``threshold``?" finds.

    1. Each query's static nearest rows are confirmed: 1 each, more when there are few queries
       (about ``FIT_PAIRS`` pairs for the first fit, at most ``WIDEN`` rows per query).
    2. A ``Projection`` is fitted on the queries and those rows; each query's 2 nearest rows by
       projection are confirmed, and the projection refitted on everything confirmed.
    3. A query not yet covered whose projected best is within ``BORDERLINE_BAND`` of the
       threshold (or above it) has its ``WIDEN`` nearest rows by projection confirmed (and by
       static cosine too, while the projection rests on fewer pairs than twice its dimensions).
    The best is taken over every confirmed row: a row confirmed for one query may cover another.
    Every similarity returned is the full model's; a query's best can only be understated.
    """
    if not len(index) or not len(query_vectors):
        keys, sims = _empty(len(query_vectors), 1)
        return CoveringSearch(sims[:, 0], keys[:, 0], None, 0)
    confirmed = ConfirmedRows(index)
    first = min(WIDEN, -(-FIT_PAIRS // len(query_vectors)))
    confirmed.add(top_k(static_queries, index.static_vectors, first)[0])
    projection = _refit(confirmed, static_queries, query_vectors)
    confirmed.add(_projected_top_k(index, projection, query_vectors, 2)[0])
    projection = _refit(confirmed, static_queries, query_vectors)
    found, _ = confirmed.best(query_vectors)
    keys, scores = _projected_top_k(index, projection, query_vectors, WIDEN)
    widen = (found < threshold) & (scores[:, 0] >= threshold - BORDERLINE_BAND)
    confirmed.add(keys[widen])
    if len(confirmed) + len(query_vectors) < 2 * static_queries.shape[1]:
        confirmed.add(top_k(static_queries[widen], index.static_vectors, WIDEN)[0])
    sims, best = confirmed.best(query_vectors)
    return CoveringSearch(sims, best, projection, len(confirmed))


def _refit(
    confirmed: ConfirmedRows, static_queries: np.ndarray, query_vectors: np.ndarray
) -> Projection:
    keys, vectors = confirmed.matrix()
    static = np.concatenate([static_queries, confirmed.index.static_vectors[keys]])
    return Projection(static.astype(np.float64), np.concatenate([query_vectors, vectors]))


def _projected_top_k(
    index: CascadeIndex, projection: Projection, query_vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows by the projected cosine (keys, projected cosines)."""
    rows = index.static_vectors
    return top_k(projection.queries(query_vectors), rows, k, projection.inverse_norms(rows))


def _empty(rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.full((rows, k), -1, dtype=np.int64),
        np.full((rows, k), -np.inf, dtype=np.float32),
    )
