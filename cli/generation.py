"""Generation and its workers: ``gapfill worker``, ``gapfill generate``, ``gapfill requeue-failed``,
and the burst worker that runs a run's jobs in this process (also used by campaigns)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cli.backend_flags import BackendFlags, with_backend_flags
from cli.common import console, open_store, settings_of, user_errors
from cli.tables import print_outcome, truncated_so_far
from generator.config import Settings
from generator.factories import make_work_queue
from generator.progress import RunProgress
from generator.queueing import Enqueued, WorkQueue
from generator.store import Store
from generator.task_reader import read_tasks
from workers.main import WorkerSpec, load_backend, make_worker, parse_capabilities, run_worker


@user_errors
@with_backend_flags
def worker(
    ctx: typer.Context,
    queues: Annotated[
        str | None,
        typer.Option(
            help="What to serve: generate, score, or both (generate,score; the default). A "
            "score-only worker loads no LLM unless --backend or --model is given (the judge "
            "needs one)."
        ),
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit when the queues are empty.")] = False,
    name: Annotated[str | None, typer.Option(help="Worker name (default: host and pid).")] = None,
    flags: BackendFlags = BackendFlags(),
) -> None:
    """Serve generation and scoring jobs; the backend is loaded once, before any job is taken."""
    capabilities = parse_capabilities(queues)
    # A scoring-only host (CPU) loads an LLM only when asked to: runs with the judge need one.
    sources = (ctx.get_parameter_source(name) for name in ("backend", "model"))
    asked = any(source is not None and source.name != "DEFAULT" for source in sources)
    spec = WorkerSpec(
        backend=flags.choice(),
        queues=capabilities,
        name=name,
        llm=capabilities is None or "generate" in capabilities or asked,
    )
    run_worker(settings_of(ctx), spec, burst=burst)


@user_errors
@with_backend_flags
def generate(
    ctx: typer.Context,
    *,
    run: Annotated[str, typer.Option(help="The run whose open tasks to generate.")],
    requests: Annotated[
        Path | None, typer.Option(help="Add these tasks to the run first (JSONL, one per line).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Show progress until the run is done.")] = False,
    in_process: Annotated[
        bool, typer.Option(help="Run a burst worker in this process instead of external ones.")
    ] = False,
    batch_size: Annotated[
        int | None, typer.Option(help="Tasks per job (default: generate_batch_size).")
    ] = None,
    flags: BackendFlags = BackendFlags(),
) -> None:
    """Enqueue a run's open generation tasks as batch jobs (and optionally run or watch them)."""
    settings = settings_of(ctx)
    if batch_size is not None:
        settings = settings.model_copy(update={"generate_batch_size": batch_size})
    store = open_store(settings)
    if requests is not None:
        added = store.add_tasks(read_tasks(requests, run))
        console.print(f"{requests}: {added} new tasks in run {run!r}", highlight=False)
    spec = None
    if in_process:
        spec = WorkerSpec(backend=flags.choice())
        seconds = load_backend(settings, spec)  # before enqueueing: a bad backend loses no work
        console.print(f"backend {flags.backend} loaded in {seconds:.1f}s", highlight=False)
    work = make_work_queue(settings, store)
    truncated = truncated_so_far(store, run)
    enqueued = work.enqueue_tasks(run)
    console.print(
        f"run {run!r}: {enqueued.tasks} new tasks enqueued in {len(enqueued.jobs)} jobs "
        f"on {work.generate.name}"
    )
    if spec is not None:
        console.print(running_line(enqueued, work.waiting_generation()))
        run_in_process(settings, spec, store, work, run)
    elif wait:
        RunProgress(store, run, console).watch(settled(work))
    print_outcome(store, work, run, truncated_before=truncated)


def settled(work: WorkQueue) -> Callable[[], bool]:
    """A check that the queues are idle: nothing queued, running or waiting for a retry, seen on
    two polls in a row. One idle poll is not enough: a job a worker has just taken off its
    queue is in no registry until the worker marks it started, and ``--wait`` once stopped
    there with nothing done."""
    idle = 0

    def finished() -> bool:
        nonlocal idle
        idle = 0 if work.busy() else idle + 1
        return idle >= 2

    return finished


def running_line(enqueued: Enqueued, waiting: Enqueued) -> str:
    """What an in-process worker is about to run, telling apart the jobs just enqueued from
    those already on the queue (of earlier commands, or of other runs on this prefix)."""
    earlier = len(set(waiting.jobs) - set(enqueued.jobs))
    return (
        f"running {len(waiting.jobs)} generation jobs ({waiting.tasks} tasks): "
        f"{len(waiting.jobs) - earlier} enqueued now, {earlier} already queued"
    )


def run_in_process(
    settings: Settings, spec: WorkerSpec, store: Store, work: WorkQueue, run_id: str
) -> None:
    """Burst workers in this process until the run has nothing queued, running or retrying."""
    progress = RunProgress(store, run_id, console)
    stop = progress.in_background()
    # rq's worker takes SIGINT and SIGTERM for its warm shutdown and leaves its handlers in
    # place when a burst ends: Ctrl-C afterwards (gapfill run --rounds waiting for review)
    # would raise rq's StopRequested with a traceback instead of stopping cleanly.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Burst until nothing is queued, running or waiting for a retry (retries are scheduled).
        while True:
            worker = make_worker(settings, spec)
            worker.work(burst=True, with_scheduler=True, logging_level="ERROR")
            # Ctrl-C: rq finished the job at hand and stopped; no new burst takes the rest
            # (they stay queued, and the same command takes them up again).
            if worker._stop_requested:
                raise KeyboardInterrupt
            if not work.busy():
                break
            time.sleep(1.0)
    finally:
        stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


@user_errors
def requeue_failed(ctx: typer.Context) -> None:
    """Put every failed generation and scoring job back on its queue."""
    settings = settings_of(ctx)
    work = make_work_queue(settings, open_store(settings))
    console.print(f"requeued {work.requeue_failed()} failed jobs", highlight=False)
