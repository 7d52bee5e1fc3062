"""The filter pipeline of one stored run: its existing data, eval sets, centroids and settings.

A scoring job calls ``RunPipelines.for_run`` for each batch. What is costly and the same for every
batch of a run (the existing dataset's indexes, the eval items) is loaded once per process and
cached; the existing data's indexes are also cached on disk (``ReferenceIndexes.cached``), so a
fresh worker loads them instead of re-building. What changes between batches (items accepted or
waiting in review) is read from the store for each batch and checked too, so two batches of the
same run cannot both send the same text to review.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from generator.backends.base import Backend
from generator.dataset_reader import read_examples
from generator.embeddings import Embedder
from generator.filters.contamination import load_eval_items
from generator.filters.pipeline import FilterPipeline
from generator.filters.reference import IndexOptions, ReferenceIndexes, ReferenceItem
from generator.filters.settings import FilterSettings
from generator.index_chunks import merge
from generator.prompts import PromptTemplates
from generator.run_inputs import InputCache, embedder_for
from generator.schema import CandidateStatus, EmbeddingSpec, RunConfig
from generator.store import Store

logger = logging.getLogger(__name__)


def reference_items(path: Path) -> list[ReferenceItem]:
    """Every readable row of a dataset file (a reference set need not be clean)."""
    report = read_examples(path, collect_errors=True)
    return [
        ReferenceItem(f"{path.name}:{row.line}", tuple(m.text for m in row.example.turns()))
        for row in report.examples
    ]


def index_options(settings: FilterSettings, embedder: Embedder | None = None) -> IndexOptions:
    return IndexOptions(
        near_threshold=settings.near_duplicate_threshold,
        semantic=settings.semantic_duplicate,
        tier=embedder.tier if embedder is not None else "full",
    )


def existing_indexes(
    paths: Sequence[Path],
    settings: FilterSettings,
    embedder: Embedder | None,
    cache_dir: Path,
    store: Store | None = None,
) -> ReferenceIndexes | None:
    """The existing data's indexes: from the disk cache when these files were indexed here
    before, else merged from the chunks workers computed (``gapfill index``) when ``store``
    holds them all, else built here."""
    items = [item for path in paths for item in reference_items(path)]
    if not items:
        return None
    options = index_options(settings, embedder)
    indexes = ReferenceIndexes.cached(
        items,
        options,
        embedder,
        cache_dir,
        computed=(lambda: merge(store, items, options, embedder)) if store is not None else None,
    )
    logger.info(
        "existing data: %s items indexed (%s in %.1fs)",
        indexes.size,
        "loaded" if indexes.loaded_from_cache else "built",
        indexes.build_seconds,
    )
    return indexes


@dataclass
class _Loaded:
    key: str
    embedder: Embedder
    shared: ReferenceIndexes | None
    eval_items: list[tuple[str, str]]
    templates: PromptTemplates | None


@dataclass
class RunPipelines:
    """Each run's pipeline on one worker: the run's own inputs, templates and embedding model
    (``run_inputs``), whatever this worker's settings say, loaded once per run."""

    embedder: Embedder  # the worker's own: for runs stored before their settings travelled
    cache_dir: Path
    judge: Backend | None = None
    inputs: InputCache | None = None  # None: DATA_DIR/inputs beside cache_dir
    embedding_cache: Path | None = None
    _loaded: dict[str, _Loaded] = field(default_factory=dict)
    _embedders: dict[EmbeddingSpec, Embedder] = field(default_factory=dict)

    def _input_cache(self) -> InputCache:
        if self.inputs is None:
            self.inputs = InputCache(self.cache_dir.parent / "inputs")
        return self.inputs

    def _embedder(self, config: RunConfig) -> Embedder:
        return self.embedder_for(config.embedding)

    def embedder_for(self, spec: EmbeddingSpec | None) -> Embedder:
        """The embedder that embeds as ``spec`` says (this worker's own where None)."""
        if spec is None:
            return self.embedder
        if spec not in self._embedders:
            own = [self.embedder.model_name]
            self._embedders[spec] = embedder_for(
                spec, own, self.embedding_cache or self.cache_dir.parent / "cache"
            )
        return self._embedders[spec]

    def _static(self, store: Store, config: RunConfig) -> _Loaded:
        key = config.model_dump_json(
            include={"existing", "eval_sets", "filters", "inputs", "embedding"}
        )
        cached = self._loaded.get(config.run_id)
        if cached is None or cached.key != key:
            embedder = self._embedder(config)
            if config.inputs:  # the run's files, from the store, wherever this worker runs
                cache = self._input_cache()
                existing = cache.files(store, config, "existing")
                eval_sets = cache.files(store, config, "eval_set")
                templates = cache.templates(store, config)
            else:  # a run stored before its inputs travelled: the paths it recorded
                existing = [Path(p) for p in config.existing]
                eval_sets = [Path(p) for p in config.eval_sets]
                templates = None
            cached = _Loaded(
                key=key,
                embedder=embedder,
                shared=existing_indexes(existing, config.filters, embedder, self.cache_dir, store),
                eval_items=[i for p in eval_sets for i in load_eval_items(p)],
                templates=templates,
            )
            self._loaded[config.run_id] = cached
        return cached

    def for_run(self, store: Store, run_id: str, batch: Iterable[str] = ()) -> FilterPipeline:
        config = store.get_run(run_id) or RunConfig(run_id=run_id)
        static = self._static(store, config)
        raw = store.gap_report_json(run_id)
        # Only a measured report has centroids (manual gaps have none: no topic check).
        centroids = json.loads(raw).get("centroids", {}) if raw else {}
        return FilterPipeline.build(
            config.filters,
            existing=self._kept_items(store, run_id, set(batch)),
            eval_items=static.eval_items,
            embedder=static.embedder,
            shared=static.shared,
            centroids=centroids,
            judge=self.judge if config.filters.judge else None,
            templates=static.templates,
            code_gaps=[gap.id for gap in store.gaps(run_id) if gap.code],
        )

    @staticmethod
    def _kept_items(store: Store, run_id: str, batch: set[str]) -> list[ReferenceItem]:
        """Items of the run already accepted or waiting for review (not this batch's)."""
        ids = [
            item_id
            for status in (CandidateStatus.ACCEPTED, CandidateStatus.PENDING)
            for item_id in store.ids(run_id, status)
            if item_id not in batch
        ]
        return [
            ReferenceItem(c.id, tuple(m.text for m in (c.edited or c.payload).turns()))  # type: ignore[union-attr]
            for c in store.get_many(ids)
            if (c.edited or c.payload) is not None
        ]
