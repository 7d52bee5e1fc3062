"""Generation tasks, and a run's config, gaps and figures."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import orjson
import redis

from generator.errors import ItemNotFoundError
from generator.schema import Candidate, Gap, GenerationTask, RunConfig
from generator.store.items import ItemsMixin


class TasksMixin(ItemsMixin):
    """Tasks under ``P:task:<id>``, the run's task sets and stats, config, review rule and gaps."""

    def add_tasks(self, tasks: Iterable[GenerationTask]) -> int:
        """Store tasks (idempotent by content hash) in one transaction; returns the new count."""
        with self.redis.pipeline(transaction=True) as pipe:
            for task in tasks:
                self._queue_add_task(pipe, task)
            return sum(int(r) for r in pipe.execute())

    def _queue_add_task(self, pipe: redis.client.Pipeline, task: GenerationTask) -> None:
        self._scripts["add_task"](
            keys=[
                self.keys.task(task.id),
                self.keys.run(task.run_id, "tasks"),
                self.keys.run(task.run_id, "tasks-open"),
                self.keys.runs,
            ],
            args=[task.id, task.model_dump_json(), task.run_id],
            client=pipe,
        )

    def get_tasks(self, task_ids: Iterable[str]) -> list[GenerationTask]:
        ids = list(task_ids)
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hget(self.keys.task(task_id), "data")
            replies = pipe.execute()
        missing = [i for i, r in zip(ids, replies, strict=True) if r is None]
        if missing:
            raise ItemNotFoundError(f"no generation task {missing[0]!r}")
        return [GenerationTask.model_validate_json(r) for r in replies]

    def task_jobs(self, task_ids: list[str]) -> list[str | None]:
        """The job last enqueued for each task (None if never enqueued)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hget(self.keys.task(task_id), "job")
            return cast(list[str | None], pipe.execute())

    def set_task_job(self, task_ids: list[str], job_id: str) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hset(self.keys.task(task_id), "job", job_id)
            pipe.execute()

    def task_done(self, task_id: str) -> bool:
        return self.redis.hget(self.keys.task(task_id), "state") == "done"

    def task_ids(self, run_id: str) -> list[str]:
        """Every task of a run, done or open."""
        return sorted(cast(set[str], self.redis.smembers(self.keys.run(run_id, "tasks"))))

    def open_tasks(self, run_id: str) -> list[str]:
        return sorted(cast(set[str], self.redis.smembers(self.keys.run(run_id, "tasks-open"))))

    def task_counts(self, run_id: str) -> tuple[int, int]:
        """``(done, total)`` tasks of a run."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.scard(self.keys.run(run_id, "tasks"))
            pipe.scard(self.keys.run(run_id, "tasks-open"))
            total, still_open = pipe.execute()
        return int(total) - int(still_open), int(total)

    def complete_task(
        self,
        task: GenerationTask,
        candidates: list[Candidate],
        new_tasks: list[GenerationTask],
        stats: dict[str, float],
    ) -> bool:
        """Store a task's outputs and mark it done, exactly once.

        WATCHes the task, so if another worker completed it first (a retried job racing its
        abandoned original), this call writes nothing and returns False.
        """
        rows = [(c, self._serialise(c)) for c in candidates]
        key = self.keys.task(task.id)
        result = orjson.dumps(
            {"candidates": [c.id for c in candidates], "tasks": [t.id for t in new_tasks]}
        ).decode()
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                if pipe.hget(key, "state") != "open":
                    return False
                pipe.multi()
                for candidate, data in rows:
                    self._queue_put(pipe, candidate, data)
                for child in new_tasks:
                    self._queue_add_task(pipe, child)
                pipe.hset(key, mapping={"state": "done", "result": result})
                pipe.srem(self.keys.run(task.run_id, "tasks-open"), task.id)
                for name, value in stats.items():
                    pipe.hincrbyfloat(self.keys.run(task.run_id, "stats"), name, value)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def task_result(self, task_id: str) -> dict[str, list[str]] | None:
        raw = self.redis.hget(self.keys.task(task_id), "result")
        return orjson.loads(raw) if raw else None

    def run_stats(self, run_id: str) -> dict[str, float]:
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id, "stats")))
        return {name: float(value) for name, value in raw.items()}

    def save_run(self, config: RunConfig) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.run(config.run_id, "config"), config.model_dump_json())
            # The review rule the decide and claim scripts read, next to the config it comes from.
            review_key = self.keys.run(config.run_id, "review")
            pipe.hset(
                review_key,
                mapping={
                    "k": config.review.reviewers_per_item,
                    "rule": config.review.overlap_rule,
                },
            )
            if config.review.lease_seconds is None:
                pipe.hdel(review_key, "lease_ms")
            else:
                pipe.hset(review_key, "lease_ms", config.review.lease_seconds * 1000)
            pipe.sadd(self.keys.runs, config.run_id)
            pipe.execute()

    def save_gaps(self, run_id: str, gaps: list[Gap], report_json: str) -> None:
        """The run's gaps (one hash field each) and its full gap report, in one transaction."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.run(run_id, "gaps"))
            if gaps:
                pipe.hset(
                    self.keys.run(run_id, "gaps"),
                    mapping={g.id: g.model_dump_json() for g in gaps},
                )
            pipe.set(self.keys.run(run_id, "gap-report"), report_json)
            pipe.sadd(self.keys.runs, run_id)
            pipe.execute()

    def gaps(self, run_id: str) -> list[Gap]:
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id, "gaps")))
        return [Gap.model_validate_json(v) for _, v in sorted(raw.items())]

    def gap_report_json(self, run_id: str) -> str | None:
        return cast(str | None, self.redis.get(self.keys.run(run_id, "gap-report")))

    def get_run(self, run_id: str) -> RunConfig | None:
        raw = self.redis.get(self.keys.run(run_id, "config"))
        return RunConfig.model_validate_json(raw) if raw else None

    def runs(self) -> list[str]:
        return sorted(cast(set[str], self.redis.smembers(self.keys.runs)))
