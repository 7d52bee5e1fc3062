"""The reference the duplicate filters search: the existing dataset, accepted items, the batch.

Three indexes over the same items: normalised-text digests (exact duplicates), MinHash LSH over
word shingles (near duplicates) and a vector index of embeddings (semantic duplicates). An
existing dataset is large (55k rows is common) and the same for every scoring job of a run, so
its indexes are built once and saved under the data directory, keyed by a hash of the items and
of every setting that shapes the indexes; a job loads them in a second instead of re-building.
A loaded reference is read-only: filters keep the run's accepted items and the batch in a small
overlay of their own.

An item's vector is the normalised mean of its turns' vectors, and turns are embedded one by
one: the contamination filter needs per-turn vectors anyway (a planted eval item must not be
diluted by the text around it), so each text is embedded exactly once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from xxhash import xxh32_intdigest

from generator.cascade import CascadeIndex, full_item_vectors
from generator.embeddings import Embedder
from generator.filters.text import jaccard, normalise, shingles
from generator.filters.vectors import VectorIndex

logger = logging.getLogger(__name__)

# 2: JSON and .npy files, read without pickle (a cache file is data, never code). A version-1
# cache (text.pickle) has another cache key, so it is never opened. 3: shingles hashed with
# xxh32 (not SHA-1), items' turns kept (the cascade tier confirms from them).
FORMAT_VERSION = 3


@dataclass(frozen=True)
class ReferenceItem:
    id: str
    turns: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.turns)


def as_items(reference: Iterable[tuple[str, str] | ReferenceItem]) -> list[ReferenceItem]:
    """(id, text) pairs count as one-turn items."""
    return [r if isinstance(r, ReferenceItem) else ReferenceItem(r[0], (r[1],)) for r in reference]


def digest(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def item_vectors(embedder: Embedder, turns: Sequence[Sequence[str]]) -> np.ndarray:
    """One unit vector per item: the normalised mean of its turns' full-model embeddings."""
    return full_item_vectors(embedder, turns)


class ExactIndex:
    def __init__(self) -> None:
        self.digests: dict[str, str] = {}

    def add(self, item_id: str, text: str) -> None:
        self.digests.setdefault(digest(text), item_id)

    def find(self, text: str) -> str | None:
        return self.digests.get(digest(text))


@dataclass(frozen=True)
class NearMatch:
    """The closest earlier text to a query among the LSH's candidates, by the Jaccard of their
    word shingles, and by character edits (RapidFuzz's Indel similarity of the normalised
    texts; 0 where not asked for)."""

    id: str | None = None
    jaccard: float = 0.0
    edit_id: str | None = None
    edit: float = 0.0


def candidate_threshold(threshold: float) -> float:
    """The LSH's own threshold for a verdict at ``threshold``: well below it, since the LSH
    only shortlists (recall first) and the exact measures decide. Templated rows that differ in
    a few words keep most characters but lose many shingles (a Jaccard near 0.6 at a 0.9 edit
    similarity; 0.5 where the shingles are few), so the shortlist reaches below that."""
    return max(min(threshold - 0.15, 0.4), 0.3)


_SCHEME = "affine32"  # datasketch 2's default


@functools.cache
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own permutations for ``num_perm`` (seed 1), drawn once per process."""
    a, b = MinHash(num_perm=num_perm, seed=1, scheme=_SCHEME).permutations
    return a, b


class ShingleIndex:
    """MinHash LSH to find candidates in sub-linear time; the true Jaccard of the shingle sets
    (and, when asked, the edit similarity of the texts) decides, so the LSH's false positives
    never reach a verdict. Texts are kept, not their shingle sets: shingles are recomputed for
    the few LSH hits, which keeps a 55k-row reference in tens of MB instead of hundreds."""

    def __init__(self, threshold: float = 0.8, shingle_size: int = 3, num_perm: int = 128) -> None:
        self.threshold = threshold
        self.shingle_size = shingle_size
        self.num_perm = num_perm
        self.lsh = MinHashLSH(threshold=candidate_threshold(threshold), num_perm=num_perm)
        self.texts: dict[str, str] = {}
        # Each text's MinHash signature, in insertion order, until released: the disk cache
        # stores these and rebuilds the LSH from them (cheap) instead of pickling it or
        # re-hashing every text. A loaded, read-only reference keeps none (~1 KB a text).
        self.signatures: list[np.ndarray] | None = []

    def _minhash(self, grams: set[str]) -> MinHash:
        # xxh32 instead of datasketch's default SHA-1, and the permutations drawn once: those two
        # were 70% of an index build (1.4 M SHA-1 calls and 10,000 RandomState draws per 10,000
        # rows of T0), and neither changes what a signature estimates.
        minhash = MinHash(
            num_perm=self.num_perm,
            hashfunc=xxh32_intdigest,
            permutations=_permutations(self.num_perm),
            scheme=_SCHEME,
        )
        minhash.update_batch([g.encode() for g in grams])
        return minhash

    def add(self, item_id: str, text: str) -> None:
        grams = shingles(text, self.shingle_size)
        if item_id in self.texts or not grams:
            return
        self.texts[item_id] = text
        minhash = self._minhash(grams)
        if self.signatures is not None:
            self.signatures.append(minhash.hashvalues)
        self.lsh.insert(item_id, minhash)

    def signature(self, text: str) -> np.ndarray | None:
        """The MinHash signature :meth:`add` would insert for ``text`` (None: no shingles)."""
        grams = shingles(text, self.shingle_size)
        return self._minhash(grams).hashvalues if grams else None

    def add_signed(self, item_id: str, text: str, signature: np.ndarray) -> None:
        """:meth:`add` with the signature already computed (by a worker, for one chunk)."""
        if item_id in self.texts:
            return
        self.texts[item_id] = text
        if self.signatures is not None:
            self.signatures.append(signature)
        self.lsh.insert(item_id, LeanMinHash(seed=1, hashvalues=signature, scheme=_SCHEME))

    def save(self, directory: Path) -> None:
        """``shingles.json`` (settings, ids, texts) and ``minhashes.npy`` (their signatures)."""
        if self.signatures is None:
            raise ValueError("this shingle index released its signatures: it cannot be saved")
        blank = self._minhash(set())  # its scheme and dtype are those of every signature here
        (directory / "shingles.json").write_text(
            json.dumps(
                {
                    "scheme": blank.scheme,
                    "threshold": self.threshold,
                    "shingle_size": self.shingle_size,
                    "num_perm": self.num_perm,
                    "ids": list(self.texts),
                    "texts": list(self.texts.values()),
                }
            )
        )
        dtype = blank.hashvalues.dtype
        signatures = np.array(self.signatures, dtype=dtype).reshape(-1, self.num_perm)
        np.save(directory / "minhashes.npy", signatures, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, threshold: float) -> ShingleIndex:
        """The index :meth:`save` wrote, its LSH rebuilt from the stored signatures."""
        saved = json.loads((directory / "shingles.json").read_text())
        index = cls(threshold, int(saved["shingle_size"]), int(saved["num_perm"]))
        if saved["threshold"] != threshold:
            raise ValueError("the cached shingle index was built with another threshold")
        signatures = np.load(directory / "minhashes.npy", allow_pickle=False)
        ids, texts, scheme = saved["ids"], saved["texts"], str(saved["scheme"])
        blank = index._minhash(set())
        if (
            scheme != blank.scheme
            or signatures.dtype != blank.hashvalues.dtype
            or signatures.shape != (len(ids), index.num_perm)
            or len(texts) != len(ids)
        ):
            raise ValueError("the cached shingle index does not match its signatures")
        index.signatures = None
        with index.lsh.insertion_session() as session:
            for item_id, text, signature in zip(ids, texts, signatures, strict=True):
                index.texts[str(item_id)] = str(text)
                session.insert(
                    str(item_id), LeanMinHash(seed=1, hashvalues=signature, scheme=scheme)
                )
        return index

    def nearest(self, text: str) -> tuple[str | None, float]:
        found = self.match(text)
        return found.id, found.jaccard

    def match(self, text: str, edit_at_least: float | None = None) -> NearMatch:
        """The closest candidate by Jaccard; with ``edit_at_least``, also the closest by edit
        similarity among those at least that similar (looked for only where the Jaccard falls
        short of the index's threshold: a Jaccard match settles it)."""
        grams = shingles(text, self.shingle_size)
        if not grams:
            return NearMatch()
        best, best_score = None, 0.0
        keys = sorted(self.lsh.query(self._minhash(grams)))  # sorted: ties go to the first id
        for key in keys:
            score = jaccard(grams, shingles(self.texts[key], self.shingle_size))
            if score > best_score:
                best, best_score = key, score
        if edit_at_least is None or best_score >= self.threshold or not keys:
            return NearMatch(best, best_score)
        from rapidfuzz import fuzz

        query = normalise(text)
        edit_id, edit = None, 0.0
        for key in keys:
            cutoff = max(edit_at_least, edit) * 100
            score = fuzz.ratio(query, normalise(self.texts[key]), score_cutoff=cutoff) / 100
            if score > edit:
                edit_id, edit = key, score
        return NearMatch(best, best_score, edit_id, edit)


class EmbeddingIndex:
    """Items' vectors with their ids and a preview of their text (the review UI's evidence).

    Full tier: each item's full-model vector, searched exactly or by HNSW. Cascade tier
    (``cascade`` given): each item's static vector and its turns, searched by static shortlist
    and full-model confirmation (``generator.cascade``); similarities are the full model's
    either way."""

    def __init__(
        self, dimension: int, ann_above: int = 20_000, *, cascade: CascadeIndex | None = None
    ) -> None:
        self.cascade = cascade
        self.index = VectorIndex(dimension, ann_above=ann_above)
        self.ids: list[str] = []
        self.previews: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray) -> None:
        """Full tier: items by their full-model vectors."""
        if self.cascade is not None:
            raise TypeError("a cascade index adds items by their turns (add_items)")
        if not len(ids):
            return
        self.index.add(vectors)
        self.ids += ids
        self.previews += [t[:300] for t in texts]

    def add_items(self, items: Sequence[ReferenceItem], embedder: Embedder) -> None:
        """Items by their turns, embedded in this index's tier."""
        if not items:
            return
        if self.cascade is None:
            vectors = item_vectors(embedder, [i.turns for i in items])
            self.add([i.id for i in items], [i.text for i in items], vectors)
            return
        self.cascade.add([i.turns for i in items])
        self.ids += [i.id for i in items]
        self.previews += [i.text[:300] for i in items]

    def search(
        self, vectors: np.ndarray, k: int, turns: Sequence[Sequence[str]] | None = None
    ) -> list[list[dict[str, object]]]:
        """Per query (its full-model vector; its turns too for a cascade index), its nearest
        items (id, similarity, text preview), best first."""
        if not len(self.ids):
            return [[] for _ in range(len(vectors))]
        if self.cascade is not None:
            if turns is None:
                raise TypeError("a cascade index is searched with the queries' turns")
            keys, sims = self.cascade.search(turns, vectors, k)
        else:
            keys, sims = self.index.search(vectors, k)
        return [
            [
                {
                    "id": self.ids[key],
                    "similarity": round(float(sim), 4),
                    "text": self.previews[key],
                }
                for key, sim in zip(row_keys, row_sims, strict=True)
                if key >= 0
            ]
            for row_keys, row_sims in zip(keys, sims, strict=True)
        ]


@dataclass(frozen=True)
class IndexOptions:
    """Everything that shapes the indexes: part of the cache key."""

    near_threshold: float = 0.8
    shingle_size: int = 3
    num_perm: int = 128
    semantic: bool = True
    ann_above: int = 20_000
    tier: Literal["cascade", "full"] = "full"  # cascade: static vectors, confirmed at search


def _embedding_index(embedder: Embedder, options: IndexOptions) -> EmbeddingIndex:
    if options.tier == "cascade":
        return EmbeddingIndex(embedder.static.dimension, cascade=CascadeIndex(embedder))
    return EmbeddingIndex(embedder.dimension, options.ann_above)


class ReferenceIndexes:
    def __init__(self, options: IndexOptions, embedder: Embedder | None) -> None:
        self.options = options
        self.exact = ExactIndex()
        self.shingles = ShingleIndex(options.near_threshold, options.shingle_size, options.num_perm)
        self.vectors = (
            _embedding_index(embedder, options)
            if embedder is not None and options.semantic
            else None
        )
        self.size = 0
        self.build_seconds = 0.0
        self.embedded = 0  # texts the build had to run through the model (not cached)
        self.loaded_from_cache = False
        self.merged = False  # merged from workers' chunks (generator.index_chunks)

    @classmethod
    def build(
        cls,
        items: Sequence[ReferenceItem],
        options: IndexOptions,
        embedder: Embedder | None,
        *,
        batch: int = 4096,
    ) -> ReferenceIndexes:
        started = time.perf_counter()
        before = embedder.computed if embedder is not None else 0
        indexes = cls(options, embedder)
        for start in range(0, len(items), batch):
            indexes.add(items[start : start + batch], embedder)
        indexes.build_seconds = time.perf_counter() - started
        indexes.embedded = (embedder.computed - before) if embedder is not None else 0
        return indexes

    def add(self, items: Sequence[ReferenceItem], embedder: Embedder | None) -> None:
        # The embedding (tokenizers and torch release the GIL) runs beside the shingling (pure
        # Python): on two cores, an index build takes the longer of the two, not their sum.
        with ThreadPoolExecutor(max_workers=1) as pool:
            embedding = (
                pool.submit(self.vectors.add_items, items, embedder)
                if self.vectors is not None and embedder is not None and items
                else None
            )
            for item in items:
                self.exact.add(item.id, item.text)
                self.shingles.add(item.id, item.text)
            if embedding is not None:
                embedding.result()
        self.size += len(items)

    # -- the disk cache -----------------------------------------------------------------------

    @staticmethod
    def cache_key(
        items: Sequence[ReferenceItem], options: IndexOptions, embedder: Embedder | None
    ) -> str:
        hasher = hashlib.sha256(f"v{FORMAT_VERSION}\x00{options}\x00".encode())
        hasher.update((embedder.identity if embedder and options.semantic else "-").encode())
        for item in items:
            hasher.update(b"\x01" + item.id.encode() + b"\x02" + "\x03".join(item.turns).encode())
        return hasher.hexdigest()[:24]

    @classmethod
    def cached(
        cls,
        items: Sequence[ReferenceItem],
        options: IndexOptions,
        embedder: Embedder | None,
        cache_dir: Path,
        *,
        computed: Callable[[], ReferenceIndexes | None] | None = None,
    ) -> ReferenceIndexes:
        """Load the indexes of exactly these items and options, or build and save them.
        ``computed``: where they may already have been computed elsewhere (merged from
        workers' chunks, ``generator.index_chunks``), tried before building here."""
        directory = cache_dir / cls.cache_key(items, options, embedder)
        if (directory / "meta.json").exists():
            try:
                return cls.load(directory, options, embedder)
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                logger.warning(
                    "reference index cache %s unreadable (%s): rebuilding", directory, exc
                )
        indexes = (computed() if computed is not None else None) or cls.build(
            items, options, embedder
        )
        indexes.save(directory)
        indexes.shingles.signatures = None  # saved: a shared reference is read-only from now on
        return indexes

    def save(self, directory: Path) -> None:
        """Written beside the final place and renamed, so a reader never sees half an index."""
        temporary = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        (temporary / "exact.json").write_text(json.dumps(self.exact.digests))
        self.shingles.save(temporary)
        if self.vectors is not None and self.vectors.cascade is not None:
            cascade = self.vectors.cascade
            np.save(temporary / "static.npy", cascade.static_vectors, allow_pickle=False)
            (temporary / "ids.json").write_text(
                json.dumps({"ids": self.vectors.ids, "turns": [list(t) for t in cascade.turns]})
            )
        elif self.vectors is not None:
            self.vectors.index.save(temporary / "vectors.usearch")
            (temporary / "ids.json").write_text(
                json.dumps({"ids": self.vectors.ids, "previews": self.vectors.previews})
            )
        meta = {
            "size": self.size,
            "build_seconds": self.build_seconds,
            "semantic": bool(self.vectors),
        }
        (temporary / "meta.json").write_text(json.dumps(meta))
        try:
            temporary.rename(directory)
        except OSError:  # another process saved the same indexes first: keep theirs
            shutil.rmtree(temporary, ignore_errors=True)

    @classmethod
    def load(
        cls, directory: Path, options: IndexOptions, embedder: Embedder | None
    ) -> ReferenceIndexes:
        started = time.perf_counter()
        meta = json.loads((directory / "meta.json").read_text())
        indexes = cls.__new__(cls)
        indexes.options = options
        indexes.exact = ExactIndex()
        digests = json.loads((directory / "exact.json").read_text())
        if not isinstance(digests, dict):
            raise ValueError("exact.json is not an object")
        indexes.exact.digests = {str(k): str(v) for k, v in digests.items()}
        indexes.shingles = ShingleIndex.load(directory, options.near_threshold)
        indexes.vectors = None
        if meta["semantic"] and embedder is not None:
            indexes.vectors = _load_vectors(directory, options, embedder)
        indexes.size = int(meta["size"])
        indexes.build_seconds = time.perf_counter() - started
        indexes.embedded = 0
        indexes.loaded_from_cache = True
        indexes.merged = False
        return indexes


def _load_vectors(directory: Path, options: IndexOptions, embedder: Embedder) -> EmbeddingIndex:
    names = json.loads((directory / "ids.json").read_text())
    ids = [str(i) for i in names["ids"]]
    if options.tier == "cascade":
        turns = [tuple(str(t) for t in item) for item in names["turns"]]
        static = np.load(directory / "static.npy", allow_pickle=False)
        if static.shape != (len(ids), embedder.static.dimension) or len(turns) != len(ids):
            raise ValueError("the cached static vectors do not match their items")
        vectors = EmbeddingIndex(embedder.static.dimension, cascade=CascadeIndex(embedder))
        vectors.cascade.add(turns, static)  # type: ignore[union-attr]
        vectors.ids = ids
        vectors.previews = ["\n".join(t)[:300] for t in turns]
        return vectors
    vectors = EmbeddingIndex(embedder.dimension)
    vectors.index = VectorIndex.load(directory / "vectors.usearch", embedder.dimension)
    vectors.ids, vectors.previews = ids, names["previews"]
    return vectors
