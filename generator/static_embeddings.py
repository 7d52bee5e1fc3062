"""The static embedding tier: a model2vec model distilled from the configured sentence model.

Why it exists: all-MiniLM-L6-v2 embeds about 50-85 texts/s on two CPU cores, so a
million-row existing set took most of a day before the first candidate could be scored. A
static model is a table of token vectors and a mean: it embeds thousands of texts a second.
Its neighbours are close to MiniLM's but not the same, so it only *shortlists*; the full model
confirms the shortlisted pairs and every verdict is made on the full model's cosine
(``generator.cascade``).

The static model is distilled offline from the full model's own files (model2vec runs the
model once per vocabulary token: about 20 s on two cores, once), saved in the cache directory
under the full model's fingerprint and loaded from there afterwards. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# PCA dimensions of the distilled vectors: model2vec's default, and what its published MiniLM
# distillations use. Part of the cache key, with the model's fingerprint.
STATIC_DIMENSIONS = 256
# Word pieces of each text the static model reads: MiniLM's own window, so the shortlist is
# drawn from the text the full model will confirm on (and 512 embeds T0 rows 1.6x slower).
STATIC_MAX_TOKENS = 256

_distil_lock = threading.Lock()


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def distil(model_path: str, target: Path) -> None:
    """Distil a static model from the sentence-transformers model at ``model_path`` into
    ``target``, atomically: written beside it and renamed, so a concurrent reader (another
    worker on this host) sees all of it or nothing."""
    _offline()
    from model2vec.distill import distill

    logger.info("distilling a static embedding model from %s (once; about 20 s)", model_path)
    static = distill(model_path, pca_dims=STATIC_DIMENSIONS, device="cpu")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    static.save_pretrained(str(temporary))
    try:
        temporary.rename(target)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(temporary, ignore_errors=True)


@functools.cache
def _memory_model(model_path: str) -> Any:
    """A static model kept in memory only, for embedders without a cache directory."""
    _offline()
    from model2vec.distill import distill

    return distill(model_path, pca_dims=STATIC_DIMENSIONS, device="cpu")


class StaticEmbedder:
    """Static vectors of texts, from the model distilled from ``model_path`` (whose files hash
    to ``fingerprint``); L2-normalised float32, so a dot product is the cosine."""

    def __init__(self, model_path: str, fingerprint: str, cache_dir: Path | None) -> None:
        self.model_path = model_path
        self.fingerprint = fingerprint
        # GAPFILL_STATIC_MODELS: one directory of distilled models for every data directory on
        # a host (the test suite's many data directories share one distillation through it).
        shared = os.environ.get("GAPFILL_STATIC_MODELS")
        root = Path(shared) if shared else cache_dir / "static-models" if cache_dir else None
        self.directory = root / f"{fingerprint[:24]}-pca{STATIC_DIMENSIONS}" if root else None
        self._model: Any = None

    def load(self) -> Any:
        if self._model is None:
            if self.directory is None:
                self._model = _memory_model(self.model_path)
            else:
                self._model = self._load_or_distil(self.directory)
        return self._model

    def _load_or_distil(self, directory: Path) -> Any:
        _offline()
        from model2vec import StaticModel

        with _distil_lock:  # one distillation per process, however many threads ask
            if not (directory / "config.json").is_file():
                directory.parent.mkdir(parents=True, exist_ok=True)
                distil(self.model_path, directory)
        return StaticModel.from_pretrained(str(directory), force_download=False)

    @property
    def dimension(self) -> int:
        return int(self.load().dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An (n, d) matrix of unit vectors, one row per text, in order."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.load().encode(
            list(texts),
            max_length=STATIC_MAX_TOKENS,
            batch_size=2048,
            # No worker processes: the tokenizer already uses every core, and a forked pool
            # inside an RQ worker or the Streamlit server is a hazard for no gain here.
            use_multiprocessing=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: np.ndarray = vectors / np.where(norms == 0, 1.0, norms)
        return normalised
