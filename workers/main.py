"""Starting a worker: connect, load the backend once, then serve the queues."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from rq import Queue

from generator.config import Settings
from generator.connection import connect, redis_url
from generator.errors import BackendDeadError
from generator.factories import BackendChoice, make_backend
from generator.queueing import SERIALIZER, queue_names
from generator.redis_server import PRIVATE_UMASK
from workers.registry import context, install
from workers.worker import GapfillWorker, wait_for_server

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker serves: the backend it loads, its queues (default: the prefix's two)."""

    backend: BackendChoice
    queues: list[str] | None = None
    name: str | None = None


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, so a rich progress display that
    redirects stderr prints the lines above its bar instead of through it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def log_jobs() -> None:
    """Send this package's INFO lines (one per job, one at exit) to stderr, whatever the
    root logger's level: a worker that ran jobs says so without ``--verbose``."""
    package = logging.getLogger("workers")
    if any(isinstance(h, _StderrHandler) for h in package.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    package.propagate = False  # or --verbose would print every line twice


def load_backend(settings: Settings, spec: WorkerSpec) -> float:
    """Create and load the backend, install it for this process's jobs; returns load seconds.

    Fails (BackendError) before any job is taken, so a misconfigured worker loses no work.
    """
    started = time.perf_counter()
    backend = make_backend(settings, spec.backend)
    backend.load()
    install(backend, settings)
    seconds = time.perf_counter() - started
    logger.info("backend %s (%s) loaded in %.1fs", backend.name, backend.model, seconds)
    return seconds


def make_worker(settings: Settings, spec: WorkerSpec) -> GapfillWorker:
    log_jobs()
    connection = connect(redis_url(settings), decode_responses=False)
    wait_for_server(connection)
    names = spec.queues or list(queue_names(settings.key_prefix))
    return GapfillWorker(
        [Queue(name, connection=connection, serializer=SERIALIZER) for name in names],
        connection=connection,
        name=spec.name,
        maintenance_interval=settings.maintenance_interval_s,
        heartbeat_seconds=settings.worker_heartbeat_s,
    )


def run_worker(settings: Settings, spec: WorkerSpec, *, burst: bool = False) -> None:
    """Serve until stopped (SIGTERM finishes the current batch first), or until empty (burst)."""
    os.umask(PRIVATE_UMASK)  # caches and token counts it writes are its owner's alone
    load_backend(settings, spec)
    worker = make_worker(settings, spec)
    worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
    if context().fatal:  # exit non-zero so a supervisor restarts the worker
        raise BackendDeadError(f"worker stopped: {context().fatal}")
