"""Starting a worker: connect, load the backend once, then serve the queues."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue

from generator.config import Settings
from generator.connection import store_client
from generator.errors import BackendDeadError, ConfigError, StoreUnavailableError
from generator.factories import BackendChoice, make_backend
from generator.queueing import SERIALIZER, queue_names
from generator.redis_server import PRIVATE_UMASK
from workers.registry import context, install
from workers.worker import GapfillWorker, wait_for_server

logger = logging.getLogger(__name__)


# What a worker can serve, by capability: GPU hosts generate, CPU hosts score.
CAPABILITIES = ("generate", "score")


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker serves: the backend it loads, its queues by capability (default: both)
    and whether it loads its LLM backend at all (a scoring-only worker needs one only to judge).
    """

    backend: BackendChoice
    queues: list[str] | None = None
    name: str | None = None
    llm: bool = True


def parse_capabilities(text: str | None) -> list[str] | None:
    """``--queues generate,score``: the capabilities named, each once, in order (None: both).
    Anything else is a user error naming it."""
    if text is None:
        return None
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in CAPABILITIES]
    if unknown or not names:
        what = f"'{unknown[0]}' is not a queue" if unknown else "no queue named"
        raise ConfigError(f"--queues: {what}; name generate, score or both (generate,score)")
    return names


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


def make_worker(settings: Settings, spec: WorkerSpec, *, start: bool = True) -> GapfillWorker:
    """A worker on the store; ``start=False`` finds a bundled server but never starts one."""
    log_jobs()
    connection = store_client(settings, decode_responses=False, start=start)
    wait_for_server(connection)
    generate, score = queue_names(settings.key_prefix)
    by_capability = {"generate": generate, "score": score}
    names = [by_capability[name] for name in spec.queues or CAPABILITIES]
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
    log_jobs()
    if spec.llm:
        load_backend(settings, spec)
    else:
        install(None, settings)
        logger.info("serving %s without an LLM backend", ", ".join(spec.queues or CAPABILITIES))
    first = True
    while True:
        worker = (
            reconnected(settings, spec, first=first) if not burst else make_worker(settings, spec)
        )
        first = False
        try:
            worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
        except STORE_AWAY as exc:  # RQ's own clean-up, on a connection that just went
            if burst:
                raise
            logger.warning("%s: %s", STORE_AWAY_MESSAGE, exc)
        if burst or worker.stop_requested or context().fatal:
            break
        # RQ's loop quits on a lost connection (it retries only the wait for a job): serve
        # again once the store is back; a job cut off meanwhile is retried as abandoned.
        logger.warning("worker %s lost the store; %s", worker.name, STORE_AWAY_MESSAGE)
    if context().fatal:  # exit non-zero so a supervisor restarts the worker
        raise BackendDeadError(f"worker stopped: {context().fatal}")


# What a store that is restarting, or away, raises: the worker waits for it.
STORE_AWAY = (redis.ConnectionError, redis.TimeoutError, StoreUnavailableError)
STORE_AWAY_MESSAGE = "store unavailable, retrying"
RECONNECT_S = 1.0


def reconnected(settings: Settings, spec: WorkerSpec, *, first: bool) -> GapfillWorker:
    """A worker on a store that answers, waiting as long as it takes (said once a minute).
    Only the first start may start the bundled server: after that, one that went away was
    stopped or is restarting, and the worker waits for it."""
    said = 0.0
    while True:
        try:
            return make_worker(settings, spec, start=first)
        except STORE_AWAY as exc:
            if time.monotonic() - said > 60:
                logger.warning("%s: %s", STORE_AWAY_MESSAGE, exc)
                said = time.monotonic()
            time.sleep(RECONNECT_S)
