"""An existing dataset's indexes, computed in chunks by any number of workers, then merged.

``gapfill index DATA`` reads the dataset's rows, stores each chunk of rows as a blob
(content-addressed, like a run's inputs) and records the dataset under the digest of its items
(``index:<digest>``: its rows and its chunks, in order). One RQ job per chunk computes what is
costly: each row's MinHash signature and its vector (the static tier's, or the full model's under
``embedding_tier: full``). A result is a blob under a key naming the chunk's items and how they
were computed (the model's fingerprint, the tier, the shingle size and permutations), so the same
chunk is computed once, whoever asks and on whichever host.

Any process that needs the dataset's indexes (a scoring worker on any host, the CLI) merges the
results in order: exact digests, the LSH from the signatures, the vectors concatenated. Merging
takes seconds where computing took minutes, and what is merged is the index a one-process build
makes, row for row (``tests/test_index_chunks.py`` checks it). The merged index is then saved in
the local disk cache like any other (``ReferenceIndexes.cached``).

Results come from the store, which is untrusted: their arrays are read without pickle and checked
against the chunk's row count and the index's dimensions before anything is merged.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from generator.cascade import full_item_vectors, static_item_vectors
from generator.embeddings import Embedder
from generator.errors import StoreError
from generator.filters.reference import (
    FORMAT_VERSION,
    IndexOptions,
    ReferenceIndexes,
    ReferenceItem,
    ShingleIndex,
)
from generator.static_embeddings import STATIC_DIMENSIONS
from generator.store import Store

DEFAULT_CHUNK_ROWS = 5_000
MAX_CHUNK_ROWS = 100_000
# A chunk's items blob: its rows' text (a T0 row is about 1 KB; 100k rows of 20 KB is the cap).
MAX_CHUNK_BYTES = 2 * 1024**3
_MAX_TURN_BYTES = 1_000_000


@dataclass(frozen=True)
class ChunkPlan:
    """A dataset split for workers: its digest, its rows and its chunks' items blobs."""

    digest: str
    rows: int
    chunks: tuple[tuple[str, int], ...]  # (items blob sha256, rows), in order


def items_digest(items: Sequence[ReferenceItem]) -> str:
    """What names a dataset's rows, whatever file they came from: their ids and turns."""
    hasher = hashlib.sha256(f"gapfill-index-v{FORMAT_VERSION}\x00".encode())
    for item in items:
        hasher.update(b"\x01" + item.id.encode() + b"\x02" + "\x03".join(item.turns).encode())
    return hasher.hexdigest()


def chunk_bytes(items: Sequence[ReferenceItem]) -> bytes:
    return orjson.dumps([[item.id, list(item.turns)] for item in items])


def read_chunk(data: bytes) -> list[ReferenceItem]:
    """A chunk's items from its blob; StoreError where it is not a list of [id, [turns]]."""
    try:
        rows = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StoreError(f"an index chunk is not JSON: {exc}") from exc
    if not isinstance(rows, list) or len(rows) > MAX_CHUNK_ROWS:
        raise StoreError("an index chunk is not a list of at most 100,000 rows")
    items = []
    for row in rows:
        if (
            not isinstance(row, list)
            or len(row) != 2
            or not isinstance(row[0], str)
            or not isinstance(row[1], list)
            or not all(isinstance(t, str) and len(t) <= _MAX_TURN_BYTES for t in row[1])
        ):
            raise StoreError("an index chunk row is not [id, [turn, ...]]")
        items.append(ReferenceItem(row[0], tuple(row[1])))
    return items


def result_key(items_sha: str, embedder: Embedder | None, options: IndexOptions) -> str:
    """The key of a chunk's result: its items and everything its arrays depend on (not the
    near-duplicate threshold: the LSH is built from the signatures when merging)."""
    vectors = "-"
    if embedder is not None and options.semantic:
        spec = embedder.spec()
        vectors = f"{options.tier}:{spec.fingerprint}:{spec.max_tokens}:{STATIC_DIMENSIONS}"
    text = (
        f"v{FORMAT_VERSION}\x00{items_sha}\x00{options.shingle_size}\x00{options.num_perm}"
        f"\x00{vectors}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _vectors(items: Sequence[ReferenceItem], embedder: Embedder, tier: str) -> np.ndarray:
    turns = [item.turns for item in items]
    if tier == "cascade":
        return static_item_vectors(embedder, turns)
    return full_item_vectors(embedder, turns)


def compute(
    items: Sequence[ReferenceItem], embedder: Embedder | None, options: IndexOptions
) -> bytes:
    """A chunk's result: its rows' MinHash signatures (and which rows have one) and vectors, as
    an ``.npz`` (arrays only: read back without pickle)."""
    shingles = ShingleIndex(options.near_threshold, options.shingle_size, options.num_perm)
    signatures = np.zeros((len(items), options.num_perm), dtype=np.uint32)
    signed = np.zeros(len(items), dtype=bool)
    for row, item in enumerate(items):
        signature = shingles.signature(item.text)
        if signature is not None:
            signatures[row], signed[row] = signature, True
    arrays = {"signatures": signatures, "signed": signed}
    if embedder is not None and options.semantic:
        arrays["vectors"] = _vectors(items, embedder, options.tier).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


@dataclass(frozen=True)
class ChunkResult:
    signatures: np.ndarray
    signed: np.ndarray
    vectors: np.ndarray | None


def read_result(
    data: bytes, rows: int, options: IndexOptions, dimension: int | None
) -> ChunkResult:
    """A result checked against the chunk it is for; StoreError where anything is off."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
    except (ValueError, OSError, KeyError) as exc:
        raise StoreError(f"an index chunk result is unreadable: {exc}") from exc
    signatures, signed = arrays.get("signatures"), arrays.get("signed")
    vectors = arrays.get("vectors")
    if (
        signatures is None
        or signed is None
        or signatures.shape != (rows, options.num_perm)
        or signatures.dtype != np.uint32
        or signed.shape != (rows,)
        or signed.dtype != bool
    ):
        raise StoreError("an index chunk result does not match its chunk's rows")
    if dimension is not None and (
        vectors is None or vectors.shape != (rows, dimension) or vectors.dtype != np.float32
    ):
        raise StoreError("an index chunk result's vectors do not match the index")
    return ChunkResult(signatures, signed, vectors if dimension is not None else None)


# -- the store side --------------------------------------------------------------------------


def publish(
    store: Store, items: Sequence[ReferenceItem], chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> ChunkPlan:
    """Store the dataset's chunks and its plan (once: the same rows are stored once)."""
    if not 1 <= chunk_rows <= MAX_CHUNK_ROWS:
        raise ValueError(f"chunk rows must be 1 to {MAX_CHUNK_ROWS}")
    chunks = tuple(
        (store.put_blob(chunk_bytes(items[start : start + chunk_rows])), len(part))
        for start in range(0, len(items), chunk_rows)
        for part in [items[start : start + chunk_rows]]
    )
    plan = ChunkPlan(items_digest(items), len(items), chunks)
    record = {"rows": plan.rows, "chunks": [list(c) for c in chunks], "created": time.time()}
    store.redis.set(store.keys.index(plan.digest), orjson.dumps(record).decode())
    return plan


def stored_plan(store: Store, digest: str) -> ChunkPlan | None:
    raw = store.redis.get(store.keys.index(digest))
    if raw is None:
        return None
    try:
        record = orjson.loads(raw)
        rows = int(record["rows"])
        chunks = tuple((str(sha), int(count)) for sha, count in record["chunks"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"index plan {digest[:12]} is damaged: {exc}") from exc
    if sum(count for _, count in chunks) != rows or any(c < 1 for _, c in chunks):
        raise StoreError(f"index plan {digest[:12]} is damaged: its chunks do not add up")
    return ChunkPlan(digest, rows, chunks)


def missing(
    store: Store, plan: ChunkPlan, embedder: Embedder | None, options: IndexOptions
) -> list[str]:
    """The items blobs of the plan's chunks whose result is not in the store yet."""
    shas = [sha for sha, _ in plan.chunks]
    keys = [store.keys.index_chunk(result_key(sha, embedder, options)) for sha in shas]
    found = store.redis.mget(keys) if keys else []
    return [sha for sha, result in zip(shas, found, strict=True) if result is None]


def compute_and_store(
    store: Store, items_sha: str, embedder: Embedder | None, options: IndexOptions
) -> str:
    """What a worker does for one chunk: compute its result, store it; the result's key."""
    items = read_chunk(store.get_blob(items_sha, max_bytes=MAX_CHUNK_BYTES))
    key = result_key(items_sha, embedder, options)
    result = store.put_blob(compute(items, embedder, options))
    store.redis.set(store.keys.index_chunk(key), result)
    return key


def merge(
    store: Store,
    items: Sequence[ReferenceItem],
    options: IndexOptions,
    embedder: Embedder | None,
) -> ReferenceIndexes | None:
    """The dataset's indexes from its chunks' results in the store; None where the dataset was
    not split there or a chunk is not computed yet (the caller builds it itself)."""
    started = time.perf_counter()
    plan = stored_plan(store, items_digest(items))
    if plan is None or plan.rows != len(items) or missing(store, plan, embedder, options):
        return None
    semantic = embedder is not None and options.semantic
    dimension = None
    if semantic:
        assert embedder is not None
        dimension = embedder.static.dimension if options.tier == "cascade" else embedder.dimension
    indexes = ReferenceIndexes(options, embedder)
    start = 0
    for items_sha, rows in plan.chunks:
        pointer = store.redis.get(store.keys.index_chunk(result_key(items_sha, embedder, options)))
        if pointer is None:
            return None
        # Rows come from the caller's own file, never from the store: a result is used only
        # for the very rows it was computed from (their blob's hash).
        chunk = items[start : start + rows]
        if hashlib.sha256(chunk_bytes(chunk)).hexdigest() != items_sha:
            raise StoreError("an index chunk does not hold the dataset's rows it claims")
        data = store.get_blob(str(pointer), max_bytes=MAX_CHUNK_BYTES)
        result = read_result(data, len(chunk), options, dimension)
        _add(indexes, chunk, result)
        start += rows
    if start != len(items):
        raise StoreError("an index plan's chunks do not cover the dataset's rows")
    indexes.build_seconds = time.perf_counter() - started
    indexes.merged = True
    return indexes


def _add(indexes: ReferenceIndexes, items: Sequence[ReferenceItem], result: ChunkResult) -> None:
    for row, item in enumerate(items):
        indexes.exact.add(item.id, item.text)
        if result.signed[row]:
            indexes.shingles.add_signed(item.id, item.text, result.signatures[row])
    if indexes.vectors is not None and result.vectors is not None and items:
        if indexes.vectors.cascade is not None:
            indexes.vectors.cascade.add([item.turns for item in items], result.vectors)
            indexes.vectors.ids += [item.id for item in items]
            indexes.vectors.previews += [item.text[:300] for item in items]
        else:
            indexes.vectors.add([i.id for i in items], [i.text for i in items], result.vectors)
    indexes.size += len(items)
