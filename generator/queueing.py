"""Putting generation and scoring work on RQ queues.

Jobs name their function by dotted path (``workers.jobs...``), so the library never imports the
workers. Job ids are deterministic (a hash of what they carry), each task remembers the job that
holds it, and a task whose job is still alive is not enqueued again: running ``gapfill generate``
twice enqueues nothing twice. Jobs carry ids only; the work and its outputs live in the store.

Every queue, job and worker uses RQ's JSON serializer, never its default, pickle: a job planted
on the server by anyone who can write to it must not run code in the worker that reads it (or in
``gapfill status``, which reads failed jobs). So job arguments are plain JSON values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from generator.config import QueueSettings
from generator.schema import GenerationTask, content_hash
from generator.store import Store

logger = logging.getLogger(__name__)

GENERATE_JOB = "workers.jobs.generate_batch"
SCORE_JOB = "workers.jobs.score_batch"
PRESCREEN_JOB = "workers.jobs.prescreen_run"
INDEX_JOB = "workers.jobs.index_chunk"
# The only functions a gapfill worker runs: a job naming any other (os.system, say) is refused.
JOB_FUNCTIONS = frozenset({GENERATE_JOB, SCORE_JOB, PRESCREEN_JOB, INDEX_JOB})
_ALIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
# The one serializer of every queue, job and worker (pass it wherever RQ takes one).
SERIALIZER = JSONSerializer


def queue_names(prefix: str) -> tuple[str, str]:
    """The generate and score queues of a key prefix (campaigns on one Redis stay apart)."""
    return f"{prefix}-generate", f"{prefix}-score"


def job_timeout(tasks: Sequence[GenerationTask], settings: QueueSettings) -> int:
    """Seconds for a batch: a minute of slack plus its worst-case token budget at a slow rate."""
    tokens = 0
    for task in tasks:
        samples = max(len(task.variants), 1) if task.variants else task.sampling.n
        tokens += samples * task.sampling.max_tokens
    return int(60 + tokens / settings.min_tokens_per_second)


@dataclass
class Enqueued:
    jobs: list[str]
    tasks: int


class WorkQueue:
    """The RQ side of a store: enqueue, inspect and requeue its jobs."""

    def __init__(self, store: Store, connection: redis.Redis, settings: QueueSettings) -> None:
        if connection.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RQ needs a Redis client with decode_responses=False")
        self.store = store
        self.connection = connection
        self.settings = settings
        generate, score = queue_names(store.keys.prefix)
        self.generate = Queue(generate, connection=connection, serializer=SERIALIZER)
        self.score = Queue(score, connection=connection, serializer=SERIALIZER)

    def _retry(self) -> Retry | None:
        if self.settings.retries == 0:
            return None
        return Retry(max=self.settings.retries, interval=self.settings.retry_intervals)

    def _job_alive(self, job_id: str) -> bool:
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=SERIALIZER)
            status = job.get_status(refresh=False)
        except NoSuchJobError:
            return False
        return status in _ALIVE

    def enqueue_tasks(self, run_id: str, task_ids: Iterable[str] | None = None) -> Enqueued:
        """Enqueue the given (or all open) tasks of a run that no live job already holds."""
        candidates = list(task_ids) if task_ids is not None else self.store.open_tasks(run_id)
        todo = [
            task_id
            for task_id, holder in zip(candidates, self.store.task_jobs(candidates), strict=True)
            if not self.store.task_done(task_id) and not (holder and self._job_alive(holder))
        ]
        tasks = self.store.get_tasks(todo)
        # Instruction tasks first (they spawn work), then by priority: the largest gaps first.
        tasks.sort(key=lambda t: (t.stage.value != "instructions", -t.priority, t.id))
        jobs = []
        size = self.settings.batch_size
        for start in range(0, len(tasks), size):
            batch = tasks[start : start + size]
            ids = [t.id for t in batch]
            job_id = f"{self.store.keys.prefix}-gen-{content_hash('job', ids)[:20]}"
            self.generate.enqueue(
                GENERATE_JOB,
                self.store.keys.prefix,
                run_id,
                ids,
                self.settings.model_dump(mode="json"),  # the job validates it again
                job_id=job_id,
                job_timeout=job_timeout(batch, self.settings),
                retry=self._retry(),
                result_ttl=7 * 86400,
                failure_ttl=30 * 86400,
                description=f"generate {len(ids)} tasks of run {run_id}",
            )
            self.store.set_task_job(ids, job_id)
            jobs.append(job_id)
        logger.info("run %s: %s tasks in %s jobs", run_id, len(tasks), len(jobs))
        return Enqueued(jobs=jobs, tasks=len(tasks))

    def enqueue_scoring(self, run_id: str, item_ids: Sequence[str]) -> list[str]:
        jobs = []
        size = self.settings.score_batch_size
        for start in range(0, len(item_ids), size):
            ids = list(item_ids[start : start + size])
            job_id = f"{self.store.keys.prefix}-score-{content_hash('job', ids)[:20]}"
            if self._job_alive(job_id):
                continue
            self.score.enqueue(
                SCORE_JOB,
                self.store.keys.prefix,
                run_id,
                ids,
                job_id=job_id,
                job_timeout=600,
                retry=self._retry(),
                result_ttl=7 * 86400,
                failure_ttl=30 * 86400,
                description=f"score {len(ids)} items of run {run_id}",
            )
            jobs.append(job_id)
        return jobs

    def enqueue_prescreen(self, run_id: str, human_decisions: int) -> str | None:
        """Retrain the run's pre-screen on the scoring queue (one job per count of human
        decisions it starts from: asking twice enqueues it once). None: one is on its way."""
        job_id = f"{self.store.keys.prefix}-prescreen-{run_id}-{human_decisions}"
        if self._job_alive(job_id):
            return None
        self.score.enqueue(
            PRESCREEN_JOB,
            self.store.keys.prefix,
            run_id,
            job_id=job_id,
            job_timeout=1800,
            retry=self._retry(),
            result_ttl=7 * 86400,
            failure_ttl=30 * 86400,
            description=f"retrain the pre-screen of run {run_id}",
        )
        return job_id

    def enqueue_index_chunks(
        self,
        chunks: Sequence[str],
        options: dict[str, object],
        embedding: dict[str, object] | None,
    ) -> list[str]:
        """One job per chunk of a dataset being indexed (``generator.index_chunks``), on the
        scoring queue: its workers hold the embedding model. ``options`` and ``embedding``
        travel as JSON (the job validates them again)."""
        jobs = []
        for items_sha in chunks:
            digest = content_hash("job", [items_sha, options, embedding])[:20]
            job_id = f"{self.store.keys.prefix}-index-{digest}"
            if self._job_alive(job_id):
                continue
            self.score.enqueue(
                INDEX_JOB,
                self.store.keys.prefix,
                items_sha,
                options,
                embedding,
                job_id=job_id,
                job_timeout=3600,
                retry=self._retry(),
                result_ttl=7 * 86400,
                failure_ttl=30 * 86400,
                description=f"index chunk {items_sha[:12]}",
            )
            jobs.append(job_id)
        return jobs

    # -- inspection ----------------------------------------------------------------------------

    def queues(self) -> list[Queue]:
        return [self.generate, self.score]

    def depths(self) -> dict[str, dict[str, int]]:
        """Per queue: queued, started, scheduled (retries waiting) and failed job counts."""
        table = {}
        for queue in self.queues():
            table[queue.name] = {
                "queued": queue.count,
                "started": StartedJobRegistry(queue=queue).count,
                "scheduled": ScheduledJobRegistry(queue=queue).count,  # type: ignore[no-untyped-call]
                "failed": FailedJobRegistry(queue=queue).count,
            }
        return table

    def waiting_generation(self) -> Enqueued:
        """The generation jobs queued or waiting for a retry (any run), with their tasks: what a
        worker started now would run, whether or not this process enqueued it."""
        registry = ScheduledJobRegistry(queue=self.generate)  # type: ignore[no-untyped-call]
        ids = [*self.generate.get_job_ids(), *registry.get_job_ids()]
        jobs = Job.fetch_many(ids, connection=self.connection, serializer=SERIALIZER)
        found = [job for job in jobs if job is not None]
        tasks = sum(len(job.args[2]) for job in found if len(job.args) > 2)
        return Enqueued(jobs=[job.id for job in found], tasks=tasks)

    def failed_jobs(self) -> list[tuple[str, str, str]]:
        """``(queue, job id, last line of the error)`` for every failed job."""
        failed = []
        for queue in self.queues():
            registry = FailedJobRegistry(queue=queue)
            ids = registry.get_job_ids()
            for job in Job.fetch_many(ids, connection=self.connection, serializer=SERIALIZER):
                if job is None:
                    continue
                result = job.latest_result()
                error = (result.exc_string if result is not None else None) or ""
                last = next((ln for ln in reversed(error.strip().splitlines()) if ln.strip()), "")
                failed.append((queue.name, job.id, last))
        return failed

    def requeue_failed(self) -> int:
        count = 0
        for queue in self.queues():
            registry = FailedJobRegistry(queue=queue)
            ids = registry.get_job_ids()
            for job_id in ids:
                registry.requeue(job_id)
            count += len(ids)
        return count

    def busy(self) -> bool:
        """Whether any job is queued, running or waiting to be retried."""
        return any(
            sum(v for k, v in figures.items() if k != "failed")
            for figures in self.depths().values()
        )
