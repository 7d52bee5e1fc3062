"""The store's capacity, measured: its cost per job and per decision with 8, 32 and 128
concurrent clients (run by ``bench/store.py``; ``python bench/store_capacity.py`` alone too).

Each client is a separate process (forked, so they start in a second), with its own connection:

- **decisions**: each reviewer client loops claim + decide (the review UI's two round trips);
- **jobs**: each worker client is an RQ ``SimpleWorker`` running the store side of gapfill's
  jobs, through RQ itself: a generation job of 64 tasks (read the tasks, complete each with its
  candidate, enqueue the scoring job) and that scoring job (read the run, its gaps and the items
  already kept, read the 64 candidates, route each with its filter scores). The LLM and the
  filters are left out, so what is timed is what the store does for a job.

Per level it reports the throughput reached, the clients' p95 latency, and the server's own CPU
per operation (``INFO cpu`` before and after, over the operations done). The server is single
threaded, so ``1000 / server_ms_per_op`` is what it can sustain with a core to itself; on this
machine the clients share its two cores, so the throughput measured is a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

import redis
from rq import Queue, Retry, SimpleWorker, get_current_job

from generator.queueing import SERIALIZER
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    Gap,
    GenerationTask,
    Message,
    RunConfig,
    Score,
    SFTExample,
)
from generator.screening import screen_all
from generator.store import Store

LEVELS = (8, 32, 128)
BATCH = 64  # prompts per generation job: vLLM's batch in the README's example
KEPT_BEFORE = 2000  # items already waiting for review in the run when the jobs start
FILTERS = (
    *("malformed", "exact_duplicate", "near_duplicate", "quality", "language", "unsafe", "pii"),
    *("semantic_duplicate", "diversity", "off_topic", "contamination"),
)


@dataclass(frozen=True)
class Level:
    what: str
    clients: int
    operations: int
    seconds: float
    p95_ms: float
    server_ms_per_op: float
    run_items: int = 0  # items in the run at the end (a scoring job reads the kept ones)

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds


def server_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def answer(index: int, run_id: str, gap_id: str) -> Candidate:
    return Candidate(
        kind=CandidateKind.SFT,
        payload=SFTExample(
            messages=[
                Message(role="user", content=f"{run_id} request {index}: explain step {index}."),
                Message(role="assistant", content=f"A realistic answer, part {index}. " * 20),
            ]
        ),
        run_id=run_id,
        gap_id=gap_id,
        status=CandidateStatus.GENERATED,
    )


# -- what a job does to the store (RQ runs these by name, from this module) ------------------


_STORES: dict[tuple[str, str], Store] = {}


def _store(url: str, prefix: str) -> Store:
    """One store per worker process, as a worker keeps it (``WorkerContext.store``)."""
    if (url, prefix) not in _STORES:
        client = redis.Redis.from_url(url, decode_responses=True)
        _STORES[url, prefix] = Store(client, prefix=prefix)
    return _STORES[url, prefix]


def generation_store_work(url: str, prefix: str, run_id: str, task_ids: list[str]) -> int:
    """The store side of ``workers.jobs.generate_batch``: tasks read, each completed with its
    output, and the scoring job enqueued (as ``WorkQueue.enqueue_scoring`` does, onto this
    benchmark's queue)."""
    store = _store(url, prefix)
    made = []
    for task in store.get_tasks(task_ids):
        if store.task_done(task.id):
            continue
        output = answer(int(task.messages[0].content.split()[-1]), run_id, task.gap_id)
        if store.complete_task(task, [output], [], {"tokens": 300.0, "backend_s": 0.05}):
            made.append(output.id)
    connection = get_current_job().connection  # type: ignore[union-attr]
    Queue(f"{prefix}-bench", connection=connection, serializer=SERIALIZER).enqueue(
        scoring_store_work,
        url,
        prefix,
        run_id,
        made,
        job_timeout=600,
        retry=Retry(max=3, interval=[10, 60, 300]),
        result_ttl=7 * 86400,
        failure_ttl=30 * 86400,
        description=f"score {len(made)} items of run {run_id}",
    )
    return len(made)


def scoring_store_work(url: str, prefix: str, run_id: str, item_ids: list[str]) -> int:
    """The store side of ``workers.jobs.score_batch``: the run, its gaps and kept items, the
    batch, and each item routed with its scores."""
    store = _store(url, prefix)
    store.get_run(run_id)
    store.gap_report_json(run_id)
    kept = [
        i for status in (CandidateStatus.ACCEPTED, CandidateStatus.PENDING)
        for i in store.ids(run_id, status)
    ]  # fmt: skip
    store.get_many(kept)  # all of them, as RunPipelines._kept_items reads them: O(run) per job
    items = [c for c in store.get_many(item_ids) if c.status is CandidateStatus.GENERATED]
    store.gaps(run_id)  # the deficits the priority is computed from
    scores = {name: Score(filter=name, value=0.9, passed=True, reason="ok") for name in FILTERS}
    for candidate in items:
        scored = candidate.model_copy(update={"scores": scores})
        store.route(
            candidate.id,
            CandidateStatus.PENDING,
            priority=1.0,
            candidate=scored,
            expected_version=candidate.version,
        )
    return len(items)


# -- the clients ------------------------------------------------------------------------------


def _reviewer(url: str, prefix: str, run_id: str, each: int, start: Barrier, out: Any) -> None:
    store = Store(redis.Redis.from_url(url, decode_responses=True), prefix=prefix)
    store.redis.ping()
    reviewer = f"reviewer-{multiprocessing.current_process().pid}"
    latencies = []
    start.wait()
    for index in range(each):
        began = time.perf_counter()
        lease = store.claim(reviewer, run_id)
        if lease is None:
            break
        verdict = "reject" if index % 4 == 3 else "accept"
        store.decide(lease.item_id, reviewer, verdict, lease.version)
        # What the queue page reads on each rerun besides its lease: runs, figures, gaps.
        store.runs()
        store.queue_figures(run_id)
        store.gaps(run_id)
        latencies.append((time.perf_counter() - began) * 1000)
    out.put(latencies)


def _worker(url: str, queue_name: str, jobs: int, start: Barrier, out: Any) -> None:
    connection = redis.Redis.from_url(url)
    queue = Queue(queue_name, connection=connection, serializer=SERIALIZER)
    worker = SimpleWorker([queue], connection=connection, serializer=SERIALIZER)
    start.wait()
    began = time.perf_counter()
    worker.work(burst=True, max_jobs=jobs, logging_level="ERROR")
    out.put([(time.perf_counter() - began) * 1000 / max(jobs, 1)])


def _run_clients(target: Any, args_of: Any, clients: int) -> tuple[list[float], float]:
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(clients + 1), context.Queue()
    processes = [
        context.Process(target=target, args=(*args_of(i), start, out)) for i in range(clients)
    ]
    for process in processes:
        process.start()
    start.wait()
    began = time.perf_counter()
    latencies = [value for _ in processes for value in out.get(timeout=600)]
    seconds = time.perf_counter() - began
    for process in processes:
        process.join(timeout=60)
    return latencies, seconds


def decisions(url: str, clients: int, total: int) -> Level:
    client = redis.Redis.from_url(url, decode_responses=True)
    prefix = f"gapfill-capacity-{uuid.uuid4().hex[:8]}"
    store = Store(client, prefix=prefix)
    try:
        items = [answer(i, "review", f"gap-{i % 10}") for i in range(total)]
        pending = [c.model_copy(update={"status": CandidateStatus.PENDING}) for c in items]
        for begin in range(0, total, 500):
            store.put_many(screen_all(pending[begin : begin + 500]))
        each = total // clients
        before = server_cpu_s(client)
        latencies, seconds = _run_clients(
            _reviewer, lambda _i: (url, prefix, "review", each), clients
        )
        cpu = server_cpu_s(client) - before
        per_op = cpu * 1000 / max(len(latencies), 1)
        what = "decision (claim, decide, page reads)"
        return Level(what, clients, len(latencies), seconds, _p95(latencies), per_op)
    finally:
        store.delete_prefix()


def jobs(url: str, clients: int, per_client: int) -> Level:
    client = redis.Redis.from_url(url, decode_responses=True)
    prefix = f"gapfill-capacity-{uuid.uuid4().hex[:8]}"
    store = Store(client, prefix=prefix)
    connection = redis.Redis.from_url(url)
    queue = Queue(f"{prefix}-bench", connection=connection, serializer=SERIALIZER)
    try:
        run_id, count = "gen", clients * per_client
        store.save_run(RunConfig(run_id=run_id))
        store.save_gaps(run_id, [Gap(id="g", run_id=run_id, label="g", target=10)], "{}")
        kept = [answer(i, run_id, "g").model_copy(update={"status": CandidateStatus.PENDING})
                for i in range(-KEPT_BEFORE, 0)]  # fmt: skip
        for begin in range(0, len(kept), 500):
            store.put_many(screen_all(kept[begin : begin + 500]))
        for job in range(count):
            tasks = [
                GenerationTask(
                    run_id=run_id,
                    gap_id="g",
                    messages=[Message(role="user", content=f"ask {job * BATCH + i}")],
                )
                for i in range(BATCH)
            ]
            store.add_tasks(tasks)
            queue.enqueue(generation_store_work, url, prefix, run_id, [t.id for t in tasks])
        before = server_cpu_s(client)
        # Each generation job enqueues one scoring job: two jobs per 64 prompts.
        latencies, seconds = _run_clients(
            _worker, lambda _i: (url, queue.name, 2 * per_client), clients
        )
        cpu = server_cpu_s(client) - before
        scored = store.count(run_id, CandidateStatus.PENDING) - KEPT_BEFORE
        if scored != count * BATCH:  # a figure for work not done would be no figure
            raise RuntimeError(f"{scored} of {count * BATCH} candidates scored")
        what = f"job ({BATCH} prompts: generate + score)"
        per_job = cpu * 1000 / count
        items = KEPT_BEFORE + scored
        return Level(what, clients, count, seconds, _p95(latencies), per_job, items)
    finally:
        queue.empty()
        for key in connection.scan_iter(match=f"rq:*{prefix}*", count=1000):
            connection.delete(key)
        store.delete_prefix()


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


def measure(url: str, decisions_per_level: int = 2000, jobs_per_client: int = 2) -> list[Level]:
    levels = []
    for clients in LEVELS:
        levels.append(decisions(url, clients, max(decisions_per_level, clients * 4)))
        levels.append(jobs(url, clients, jobs_per_client))
    return levels


def table(levels: list[Level]) -> str:
    lines = [
        f"{'operation':<36}{'clients':>8}{'ops':>7}{'ops/s':>9}{'p95 ms':>9}"
        f"{'server ms/op':>14}{'run items':>11}"
    ]
    for level in levels:
        lines.append(
            f"{level.what:<36}{level.clients:>8}{level.operations:>7}{level.per_second:>9.1f}"
            f"{level.p95_ms:>9.1f}{level.server_ms_per_op:>14.3f}{level.run_items or '':>11}"
        )
    return "\n".join(lines)


def median_server_ms(levels: list[Level], what: str) -> float:
    return statistics.median(
        level.server_ms_per_op for level in levels if level.what.startswith(what)
    )


@dataclass(frozen=True)
class Capacity:
    """How many GPU workers and reviewers one server serves, from the measured cost per
    operation and the rates assumed (stated with the result)."""

    job_ms: float  # the server's CPU per 64-prompt job (its generation and its scoring)
    decision_ms: float
    batch_every_s: float = 4.0  # a vLLM worker finishing a 64-prompt batch every few seconds
    decision_every_s: float = 3.0  # a reviewer deciding every 3 s
    utilisation: float = 0.5  # the share of the server's one core to plan for: headroom

    @property
    def gpu_workers(self) -> int:
        """With no reviewers."""
        return int(self.utilisation * 1000 / (self.job_ms / self.batch_every_s))

    @property
    def reviewers(self) -> int:
        """With no workers."""
        return int(self.utilisation * 1000 / (self.decision_ms / self.decision_every_s))

    def reviewers_beside(self, workers: int) -> int:
        """Reviewers served beside ``workers`` GPU workers."""
        left = self.utilisation * 1000 - workers * self.job_ms / self.batch_every_s
        return max(0, int(left / (self.decision_ms / self.decision_every_s)))

    def summary(self) -> str:
        half = self.gpu_workers // 2
        return (
            f"one server, planned at {self.utilisation:.0%} of its core: {self.gpu_workers} GPU "
            f"workers (a {BATCH}-prompt batch every {self.batch_every_s:g} s, "
            f"{self.job_ms:.1f} ms of server CPU each) or {self.reviewers:,} reviewers (a "
            f"decision every {self.decision_every_s:g} s, {self.decision_ms:.2f} ms each); "
            f"{half} workers leave room for {self.reviewers_beside(half):,} reviewers"
        )


def capacity(levels: list[Level]) -> Capacity:
    """From the most expensive level measured: the pessimistic figure."""
    jobs_ms = max(x.server_ms_per_op for x in levels if x.what.startswith("job"))
    decision_ms = max(x.server_ms_per_op for x in levels if x.what.startswith("decision"))
    return Capacity(job_ms=jobs_ms, decision_ms=decision_ms)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    measured = measure(parser.parse_args().url)
    print(table(measured))
    print(capacity(measured).summary())
