"""``gapfill index DATA``: an existing dataset's indexes, computed in chunks by workers."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, open_store, settings_of, user_errors
from generator.config import Settings
from generator.embeddings import Embedder
from generator.errors import DataFileError, StoreError
from generator.factories import BackendChoice, make_embedder, make_work_queue
from generator.filters.reference import IndexOptions, ReferenceIndexes, ReferenceItem
from generator.filters.settings import FilterSettings
from generator.filters.stored_run import index_options, reference_items
from generator.index_chunks import DEFAULT_CHUNK_ROWS, MAX_CHUNK_ROWS, merge, missing, publish
from generator.queueing import WorkQueue
from generator.store import Store
from workers.main import WorkerSpec, make_worker
from workers.registry import install


@user_errors
def index(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(help="The existing dataset's files (JSONL, JSON, Parquet).")
    ],
    chunk_rows: Annotated[
        int,
        typer.Option(min=1, max=MAX_CHUNK_ROWS, help="Rows per job (one chunk per job)."),
    ] = DEFAULT_CHUNK_ROWS,
    wait: Annotated[
        bool, typer.Option(help="Wait for the workers, then merge the index here.")
    ] = True,
    in_process: Annotated[
        bool, typer.Option(help="Compute the chunks in this process instead of on workers.")
    ] = False,
    timeout: Annotated[
        int, typer.Option(min=1, help="Seconds to wait for the workers before giving up.")
    ] = 24 * 3600,
) -> None:
    """Index an existing dataset over any number of workers: its rows are cut into chunks,
    one RQ job per chunk computes their MinHash signatures and vectors, and the results are
    merged into the index every scoring worker then loads (from the store, on any host)."""
    settings = settings_of(ctx)
    started = time.perf_counter()
    items = [item for path in files for item in reference_items(path)]
    if not items:
        raise DataFileError(f"{', '.join(map(str, files))}: no readable rows to index")
    store = open_store(settings)
    embedder = make_embedder(settings)
    options = index_options(FilterSettings(), embedder)
    plan = publish(store, items, chunk_rows)
    todo = missing(store, plan, embedder, options)
    work = make_work_queue(settings, store)
    spec = embedder.spec().model_dump(mode="json") if options.semantic else None
    jobs = work.enqueue_index_chunks(todo, dataclasses.asdict(options), spec)
    console.print(
        f"{len(items):,} rows in {len(plan.chunks)} chunks of up to {chunk_rows:,}: "
        f"{len(plan.chunks) - len(todo)} already computed, {len(jobs)} jobs enqueued on "
        f"{work.score.name} (embedding tier: {embedder.tier})",
        highlight=False,
    )
    if in_process:
        _compute_here(settings)
    elif not wait:
        return

    def computed() -> bool:
        return not missing(store, plan, embedder, options)

    _wait_for_workers(work, set(jobs), computed, timeout=timeout)
    indexes = _merged(settings, store, items, options, embedder)
    seconds = time.perf_counter() - started
    console.print(
        f"indexed {indexes.size:,} rows in {seconds:.1f}s ({indexes.size / seconds:,.0f} rows/s; "
        f"merged in {indexes.build_seconds:.1f}s)"
        if not indexes.loaded_from_cache
        else f"{indexes.size:,} rows: already indexed on this host",
        highlight=False,
    )


def _compute_here(settings: Settings) -> None:
    """Burst a scoring worker in this process until the chunks are computed."""
    install(None, settings)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = make_worker(settings, WorkerSpec(backend=BackendChoice(), queues=["score"]))
        worker.work(burst=True, logging_level="ERROR")
        if worker._stop_requested:
            raise KeyboardInterrupt
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _wait_for_workers(
    work: WorkQueue, jobs: set[str], computed: Callable[[], bool], *, timeout: int
) -> None:
    deadline = time.monotonic() + timeout
    while not computed():
        failed = [(job, error) for _, job, error in work.failed_jobs() if job in jobs]
        if failed:
            job, error = failed[0]
            raise StoreError(
                f"index job {job} failed: {error or 'no error recorded'}; fix it and run "
                "`gapfill requeue-failed`, then this command again"
            )
        if time.monotonic() > deadline:
            raise StoreError(
                "the index chunks were not all computed in time: are scoring workers running? "
                "(`gapfill worker --queues score`); run this command again to wait on"
            )
        time.sleep(1.0)


def _merged(
    settings: Settings,
    store: Store,
    items: list[ReferenceItem],
    options: IndexOptions,
    embedder: Embedder,
) -> ReferenceIndexes:
    """The merged index, saved where this host's scoring loads it from."""
    return ReferenceIndexes.cached(
        items,
        options,
        embedder,
        settings.data_dir / "indexes",
        computed=lambda: merge(store, items, options, embedder),
    )
