"""A run's inputs and settings travel with the run, so any worker that reaches the store can
score it, and scores it as the run was created.

The host that creates a run (``gapfill run``, ``gapfill gaps --save-run``) puts the run's
existing data, eval sets and prompt templates in the store by content (``store.blobs``) and
records them, with its embedding model's identity, in the ``RunConfig``. A worker fetches each
input once into ``DATA_DIR/inputs/<sha256>/<name>`` (checked against its hash; a later run that
uses the same file reads the cache), renders the run's judge templates rather than its own, and
embeds with the run's model or refuses the job: scores made with another model would be
silently wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from generator.embeddings import DEFAULT_MODEL, Embedder, model_fingerprint
from generator.errors import DataFileError, RunSettingsError, StoreError
from generator.export.files import sha256
from generator.prompts import PromptTemplates
from generator.redis_server import write_private
from generator.schema import EmbeddingSpec, RunConfig, RunInput
from generator.store import Store

TEMPLATE_SUFFIXES = (".jinja", ".yaml")
# Each input is held in Redis's memory (compressed) and in a worker's while it is fetched.
MAX_INPUT_BYTES = 512 * 2**20


def upload(store: Store, role: str, path: Path) -> RunInput:
    """Put ``path``'s content in the store (once per content) and describe it."""
    try:
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise DataFileError(
                f"{path}: {size / 2**20:.0f} MiB; a run's inputs travel in the store, "
                f"{MAX_INPUT_BYTES // 2**20} MiB at most each (Redis keeps them in memory)"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    digest = store.put_blob(data)
    return RunInput.model_validate(
        {"role": role, "name": path.name, "source": str(path), "sha256": digest, "bytes": len(data)}
    )


def pack_run(
    store: Store,
    config: RunConfig,
    embedder: Embedder,
    templates: PromptTemplates | None = None,
) -> RunConfig:
    """``config`` with its inputs in the store and the embedding model it must be scored with."""
    directory = (templates or PromptTemplates()).directory
    template_files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix in TEMPLATE_SUFFIXES
    )
    inputs = [
        *(upload(store, "existing", Path(p)) for p in config.existing),
        *(upload(store, "eval_set", Path(p)) for p in config.eval_sets),
        *(upload(store, "template", p) for p in template_files),
    ]
    return config.model_copy(update={"inputs": inputs, "embedding": embedder.spec()})


class InputCache:
    """A worker's copies of run inputs, by content hash, under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def file(self, store: Store, run_input: RunInput) -> Path:
        """The input as a local file, fetched from the store the first time it is needed."""
        path = self.root / run_input.sha256 / run_input.name
        if path.is_file() and sha256(path) == run_input.sha256:
            return path
        try:
            limit = min(run_input.bytes, MAX_INPUT_BYTES)
            data = store.get_blob(run_input.sha256, max_bytes=limit)
        except StoreError as exc:
            raise RunSettingsError(
                f"input {run_input.name} ({run_input.source}) of this run: {exc}"
            ) from exc
        _write_atomically(path, data)
        return path

    def files(self, store: Store, config: RunConfig, role: str) -> list[Path]:
        return [self.file(store, i) for i in config.inputs if i.role == role]

    def templates(self, store: Store, config: RunConfig) -> PromptTemplates | None:
        """The run's own prompt templates (None for a run stored before they travelled)."""
        wanted = [
            i
            for i in config.inputs
            if i.role == "template" and Path(i.name).suffix in TEMPLATE_SUFFIXES
        ]
        if not wanted:
            return None
        listing = "".join(f"{i.name}\0{i.sha256}\0" for i in sorted(wanted, key=lambda i: i.name))
        digest = hashlib.sha256(listing.encode()).hexdigest()
        directory = self.root / f"templates-{digest[:24]}"
        for run_input in wanted:
            target = directory / run_input.name
            if not target.is_file():
                _write_atomically(target, self.file(store, run_input).read_bytes())
        return PromptTemplates(directory)


def embedder_for(spec: EmbeddingSpec, own_models: Sequence[str], cache_dir: Path) -> Embedder:
    """An embedder for the run's model: one of this worker's own models (its configured one,
    or the bundled default) whose files have the run's fingerprint. The name the run gives is
    never opened as a path: the store is untrusted, and hashing a directory it names would
    tell a stranger what this host holds. Anything else is refused, with what would fix it."""
    tried: list[str] = []
    for name in dict.fromkeys([*own_models, DEFAULT_MODEL]):
        try:
            fingerprint = model_fingerprint(name)
        except Exception as exc:  # not on this host, or not readable: try the next
            tried.append(f"{name}: {exc}")
            continue
        if fingerprint == spec.fingerprint:
            return Embedder(name, cache_dir=cache_dir, max_tokens=spec.max_tokens, tier=spec.tier)
        tried.append(f"{name}: another model (fingerprint {fingerprint[:12]})")
    raise RunSettingsError(
        f"the run was created with embedding model {spec.model!r} (fingerprint "
        f"{spec.fingerprint[:12]}) and this worker cannot provide it ({'; '.join(tried)}); "
        "start the worker with embedding_model set to a copy of that model"
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """Whole or not at all, for a concurrent reader (another worker process on this host)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, data)
