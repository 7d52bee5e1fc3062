"""Starting a worker: connect, load the backend once, then serve the queues."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue

from generator.config import Settings
from generator.connection import store_away, store_client
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
    if burst:
        make_worker(settings, spec).work(burst=True, with_scheduler=True, logging_level="WARNING")
    else:
        serve(settings, spec)
    if context().fatal:  # exit non-zero so a supervisor restarts the worker
        raise BackendDeadError(f"worker stopped: {context().fatal}")


STORE_AWAY_MESSAGE = "store unavailable, retrying"
FIRST_CONNECT_S = 30.0  # compose may start workers before Redis answers
QUICK_RUN_S = 60.0  # a worker that quits sooner than this, again and again, is failing
QUICK_QUITS = 5


@dataclass
class StopFlag:
    """SIGTERM/SIGINT between RQ's runs of its loop (RQ's own handlers go with its loop)."""

    raised: bool = False

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._set)

    def _set(self, _signum: int, _frame: object) -> None:
        self.raised = True

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.raised and time.monotonic() < deadline:
            time.sleep(0.2)


def serve(settings: Settings, spec: WorkerSpec) -> None:
    """RQ's loop, again after each time it quits on a lost store: it retries only its wait for
    a job, and quits when a heartbeat or its maintenance finds the store gone. A job cut off
    meanwhile is retried as abandoned. A loop that keeps quitting soon after it starts is not
    a restart: after QUICK_QUITS in a row the worker exits non-zero, saying so."""
    stop, previous, quick = StopFlag(), None, 0
    while not stop.raised:
        worker = reconnected(settings, spec, stop, first=previous is None)
        if worker is None:
            return
        if previous is not None:  # its entry outlived the store's absence: free its name
            with contextlib.suppress(redis.RedisError):
                previous.register_death()  # type: ignore[no-untyped-call]
        started = time.monotonic()
        try:
            worker.work(burst=False, with_scheduler=True, logging_level="WARNING")
        except Exception as exc:  # RQ's clean-up, on a connection that just went
            if not store_away(exc):
                raise
            logger.warning("%s: %s", STORE_AWAY_MESSAGE, exc)
        stop.install()
        if worker.stop_requested or context().fatal:
            return
        quick = quick + 1 if time.monotonic() - started < QUICK_RUN_S else 0
        if quick >= QUICK_QUITS:
            raise StoreUnavailableError(
                f"worker {worker.name}: RQ's loop quit {quick} times in a row, each within "
                f"{QUICK_RUN_S:.0f} s of starting; see the errors above"
            )
        logger.warning("worker %s lost the store; %s", worker.name, STORE_AWAY_MESSAGE)
        stop.sleep(min(2.0**quick, 30.0))
        previous = worker


def reconnected(
    settings: Settings, spec: WorkerSpec, stop: StopFlag, *, first: bool
) -> GapfillWorker | None:
    """A worker on a store that answers (None if told to stop meanwhile). The first start
    waits FIRST_CONNECT_S and may start the bundled server; later ones wait as long as it
    takes (said once a minute) and never start one: it was stopped, or is restarting. A
    refused password or a bad URL is raised at once: waiting would not fix it."""
    said, began = 0.0, time.monotonic()
    while not stop.raised:
        try:
            return make_worker(settings, spec, start=first)
        except Exception as exc:
            if not store_away(exc) or (first and time.monotonic() - began > FIRST_CONNECT_S):
                raise
            if time.monotonic() - said > 60:
                logger.warning("%s: %s", STORE_AWAY_MESSAGE, exc)
                said = time.monotonic()
            stop.sleep(1.0)
    return None
