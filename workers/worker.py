"""The gapfill worker: an RQ ``SimpleWorker`` (no fork per job) that heartbeats while it works.

RQ's SimpleWorker runs jobs in the worker process itself, which is what lets a vLLM engine or a
model stay loaded between jobs. But it sends no heartbeat during a job, so a worker killed
mid-batch leaves its job "started" for ``job_timeout + 60`` seconds, and RQ's maintenance (which
moves abandoned jobs to their retry) runs only every 10 minutes. This worker heartbeats from a
thread every few seconds with a short TTL, and runs maintenance more often: a batch whose worker
died is retried, through RQ's own abandoned-job path, within about half a minute.

It reads jobs as JSON (``generator.queueing.SERIALIZER``) unless told otherwise: RQ's default,
pickle, would run whatever code a job planted on the server carries. And it runs only gapfill's
own job functions, without RQ's callbacks or webhooks (a JSON job still names a function by its
dotted path, and callbacks and webhook URLs ride in the job too): whoever gets write access to
the server still cannot make a worker run anything else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.worker import WorkerStatus

from generator.errors import GapfillError
from generator.queueing import GENERATE_JOB, JOB_FUNCTIONS, PRESCREEN_JOB, SCORE_JOB, SERIALIZER
from workers.registry import context

logger = logging.getLogger(__name__)

SCHEDULER_STOP_S = 5.0  # its loop sleeps 1 s between checks of the stop flag


class RefusedJobError(GapfillError):
    """A job on a gapfill queue names a function that is not a gapfill job. Seen by operators in
    the failed-job list: someone with write access to the server put it there."""


class GapfillJob(Job):
    """A job that can only call one of gapfill's job functions, and nothing else on the side."""

    @property
    def func(self) -> Any:
        if self.func_name not in JOB_FUNCTIONS or self.instance is not None:
            raise RefusedJobError(f"refused job {self.id}: {self.func_name!r} is not a gapfill job")
        return super().func

    # gapfill sets no callbacks or webhooks; any that a job carries was planted, so none runs.
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, *args: Any, **kwargs: Any) -> None:
        return None


_KINDS = {
    GENERATE_JOB: ("generate", "tasks"),
    SCORE_JOB: ("score", "items"),
    PRESCREEN_JOB: ("prescreen", "runs"),
}


def job_kind(job: Job) -> tuple[str, str, int]:
    """``(kind, unit, count)`` of a gapfill job: ``generate``/tasks, ``score``/items or
    ``prescreen``/runs (one run each: ``(prefix, run_id)``).

    Both job functions take ``(prefix, run_id, ids, ...)``; anything else is ``refused``."""
    kind, unit = _KINDS.get(job.func_name or "", ("refused", "args"))
    args = job.args
    count = len(args[2]) if len(args) > 2 and isinstance(args[2], list) else 0
    if kind == "prescreen":
        count = 1
    return kind, unit, count


@dataclass
class Tally:
    """What a worker did, for the line it logs when it exits."""

    ok: int = 0
    failed: int = 0
    retried: int = 0
    tasks: int = 0
    items: int = 0
    started: float = 0.0


class GapfillWorker(SimpleWorker):
    def __init__(self, *args: Any, heartbeat_seconds: int = 5, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", SERIALIZER)
        kwargs.setdefault("job_class", GapfillJob)
        super().__init__(*args, **kwargs)
        self.heartbeat_seconds = heartbeat_seconds
        self.tally = Tally(started=time.perf_counter())
        self._last_error = ""

    @property
    def stop_requested(self) -> bool:
        """Whether it was told to stop (SIGTERM/SIGINT), not cut off from the store. (RQ sets
        ``_stop_requested`` only for a signal during a job; idle, it just notes the time.)"""
        return bool(self._stop_requested) or self._shutdown_requested_date is not None

    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        """RQ's loop, then one line: why it stopped and what it did (RQ says neither)."""
        self.tally = Tally(started=time.perf_counter())
        try:
            return super().work(burst, *args, **kwargs)
        finally:
            self._log_exit(burst)

    def _log_exit(self, burst: bool) -> None:
        if context().fatal:
            why = f"backend died: {context().fatal}"
        elif self.stop_requested:
            why = "stop requested"
        else:
            why = "queues empty (burst)" if burst else "stopped"
        t = self.tally
        logger.info(
            "worker %s exits, %s: %s jobs ok, %s failed, %s to retry; %s tasks, %s items in %.1fs",
            self.name,
            why,
            t.ok,
            t.failed,
            t.retried,
            t.tasks,
            t.items,
            time.perf_counter() - t.started,
        )

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        # Kept for the job's log line: RQ writes the traceback to the job, not to the log.
        kind, value = exc_info[0], exc_info[1]
        first = str(value).strip().splitlines()[0] if str(value).strip() else ""
        self._last_error = f"{kind.__name__}: {first}" if kind is not None else first
        super().handle_exception(job, *exc_info)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        """RQ's, then one log line: job id, kind, count, outcome (and why), seconds."""
        self._last_error = ""
        started = time.perf_counter()
        succeeded = bool(super().perform_job(job, queue))
        self._log_job(job, succeeded, time.perf_counter() - started)
        return succeeded

    def _log_job(self, job: Job, succeeded: bool, seconds: float) -> None:
        kind, unit, count = job_kind(job)
        if succeeded:
            self.tally.ok += 1
            outcome = "ok"
            if kind == "generate":
                self.tally.tasks += count
            else:
                self.tally.items += count
        else:
            # RQ has by now put the job in its retry (scheduled or queued) or in failed.
            status = job.get_status(refresh=True)
            retry = status in (JobStatus.SCHEDULED, JobStatus.QUEUED)
            if retry:
                self.tally.retried += 1
            else:
                self.tally.failed += 1
            outcome = f"{'retry' if retry else 'failed'} ({self._last_error or status})"
        run = job.args[1] if len(job.args) > 1 else None
        logger.info(
            "job %s: %s %s %s of run %r: %s in %.1fs",
            job.id,
            kind,
            count,
            unit,
            run,
            outcome,
            seconds,
        )

    @property
    def dequeue_timeout(self) -> int:
        # RQ blocks ~405 s in BLPOP between maintenance runs; an idle worker must wake up to
        # requeue jobs of dead workers as often as maintenance_interval says.
        return max(1, min(self.worker_ttl - 15, self.maintenance_interval))

    def get_heartbeat_ttl(self, job: Job) -> int:
        # Three missed beats and the job counts as abandoned.
        return self.heartbeat_seconds * 3

    def execute_job(self, job: Job, queue: Queue) -> None:
        self.prepare_execution(job)
        done = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(job, done), name="gapfill-heartbeat", daemon=True
        )
        beat.start()
        try:
            self.perform_job(job, queue)
        finally:
            done.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)
        if context().fatal:
            logger.error("stopping: %s", context().fatal)
            self._stop_requested = True

    def stop_scheduler(self) -> None:
        """Stop RQ's scheduler process (it enqueues delayed retries), waiting a bounded time.

        RQ's own version sends SIGTERM and joins without a timeout, from inside the SIGTERM
        handler. The scheduler is a fork of this process, which by then holds a model and
        threads; a fork that inherits a held lock never exits. The worker then hung in that
        join forever after SIGTERM (seen in CI). Here a scheduler that does not stop within
        SCHEDULER_STOP_S is killed: it holds no work, only a lock that expires by itself.
        """
        process = self.scheduler._process if self.scheduler is not None else None
        if process is None or process.pid is None:
            return
        with contextlib.suppress(OSError):  # already gone
            os.kill(process.pid, signal.SIGTERM)
        process.join(SCHEDULER_STOP_S)
        if process.is_alive():
            logger.warning("the scheduler process did not stop on SIGTERM; killing it")
            process.kill()
            process.join(SCHEDULER_STOP_S)

    def _beat(self, job: Job, done: threading.Event) -> None:
        while not done.wait(self.heartbeat_seconds):
            try:
                self.maintain_heartbeats(job)
            except redis.RedisError as exc:  # a blip: the next beat tries again
                logger.warning("heartbeat for job %s failed: %s", job.id, exc)


def wait_for_server(connection: redis.Redis, seconds: float = 30.0) -> None:
    """Block until the server answers (workers may start before Redis in compose)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
