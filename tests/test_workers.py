"""Workers as real processes: the gapfill worker command against the test Valkey, killed,
stopped and failing on purpose."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest
import redis
from rq import Queue, Retry
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler

from generator.config import QueueSettings
from generator.embeddings import Embedder
from generator.queueing import WorkQueue
from generator.run_inputs import pack_run
from generator.schema import (
    CandidateStatus,
    EmbeddingSpec,
    GenerationTask,
    Message,
    RunConfig,
    SamplingParams,
)
from generator.store import Store
from tests.conftest import REAL_DATA
from tests.factories import candidate, cli_env, run_cli
from workers import worker as worker_module
from workers.worker import GapfillWorker


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


HEARTBEAT_TTL_S = 3  # start_worker's GAPFILL_WORKER_HEARTBEAT_S=1, three beats


def heartbeat_landed(queue: Queue, job_id: str | None) -> bool:
    """True once the worker's first heartbeat for the job is in the started registry.

    RQ enters a started job with an expiry as long as the job's timeout; the first heartbeat
    cuts it to three beats. Only from then on is a killed worker's job seen as abandoned within
    seconds, so a kill test waits for this event, not for a guessed sleep."""
    if job_id is None:
        return False
    registry = StartedJobRegistry(queue=queue)
    horizon = time.time() + HEARTBEAT_TTL_S + 1
    for member, expiry in registry.connection.zrange(registry.key, 0, -1, withscores=True):
        name = member.decode() if isinstance(member, bytes) else member
        if name.rsplit(":", 1)[0] == job_id and expiry <= horizon:
            return True
    return False


@pytest.fixture
def server_url(valkey_url: str) -> str:
    """Only the test session's own Valkey: RQ writes global keys (rq:workers, rq:queues) that a
    key prefix cannot cover, and the machine's shared Redis must not get them."""
    return valkey_url


@pytest.fixture
def work(store: Store, server_url: str) -> WorkQueue:
    connection = redis.Redis.from_url(server_url)
    settings = QueueSettings(batch_size=16, retries=2, retry_intervals=[1])
    return WorkQueue(store, connection, settings)


@pytest.fixture
def start_worker(
    store: Store, server_url: str, model_dir: Path
) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*extra: str, burst: bool = False) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "GAPFILL_REDIS_URL": server_url,
            "GAPFILL_KEY_PREFIX": store.keys.prefix,
            "GAPFILL_WORKER_HEARTBEAT_S": "1",
            "GAPFILL_MAINTENANCE_INTERVAL_S": "1",
            "OMP_NUM_THREADS": "2",
        }
        command = [
            sys.executable,
            "-m",
            "cli",
            "worker",
            "--model",
            str(model_dir),
            "--engine-batch",
            "2",
            *extra,
        ]
        if burst:
            command.append("--burst")
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def tasks(count: int, *, tokens: int = 32, seed: int | None = None) -> list[GenerationTask]:
    return [
        GenerationTask(
            run_id="run-1",
            gap_id="gap-a",
            messages=[Message(role="user", content=f"Tell me fact number {i} about the moon.")],
            sampling=SamplingParams(max_tokens=tokens, seed=seed, temperature=1.0),
        )
        for i in range(count)
    ]


def test_a_worker_generates_stores_and_scores_the_queued_batches(
    store: Store, work: WorkQueue, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    batch = tasks(3, tokens=12, seed=3)
    store.add_tasks(batch)
    enqueued = work.enqueue_tasks("run-1")
    assert enqueued.tasks == 3
    assert work.enqueue_tasks("run-1").tasks == 0, "a second enqueue must not duplicate live jobs"
    process = start_worker(burst=True)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert store.task_counts("run-1") == (3, 3)
    counts = store.counts("run-1")["gap-a"]
    assert counts.get("generated", 0) == 0, "scoring jobs must have routed every candidate"
    assert sum(counts.values()) == 3
    assert not work.busy()
    [job_id] = enqueued.jobs
    assert re.search(rf"job {job_id}: generate 3 tasks of run 'run-1': ok in [\d.]+s", output)
    assert re.search(r"job \S+-score-\S+: score 3 items of run 'run-1': ok in [\d.]+s", output)
    assert re.search(
        r"exits, queues empty \(burst\): 2 jobs ok, 0 failed, 0 to retry; 3 tasks, 3 items", output
    ), output


def test_a_gpu_host_generates_and_a_cpu_host_without_a_model_scores(
    store: Store,
    work: WorkQueue,
    start_worker: Callable[..., subprocess.Popen[str]],
    server_url: str,
) -> None:
    store.add_tasks(tasks(3, tokens=12, seed=5))
    work.enqueue_tasks("run-1")
    generating = start_worker("--queues", "generate", burst=True)
    output, _ = generating.communicate(timeout=300)
    assert generating.returncode == 0, output
    assert store.counts("run-1")["gap-a"] == {"generated": 3}, "scoring left to the score queue"
    assert " score " not in output, "a generate-only worker takes no scoring job"
    env = cli_env(store, server_url, GAPFILL_WORKER_HEARTBEAT_S="1", OMP_NUM_THREADS="2")
    scoring = run_cli(env, "worker", "--queues", "score", "--burst", timeout=300)
    assert scoring.returncode == 0, scoring.stderr
    assert "serving score without an LLM backend" in scoring.stderr
    assert "loaded in" not in scoring.stderr, "no model loaded on the scoring host"
    assert re.search(r"score 3 items of run 'run-1': ok", scoring.stderr), scoring.stderr
    counts = store.counts("run-1")["gap-a"]
    assert counts.get("generated", 0) == 0 and sum(counts.values()) == 3


def test_a_worker_told_to_serve_an_unknown_queue_takes_no_job(
    store: Store, work: WorkQueue, server_url: str
) -> None:
    store.add_tasks(tasks(1, tokens=4, seed=1))
    work.enqueue_tasks("run-1")
    result = run_cli(cli_env(store, server_url), "worker", "--queues", "gpu", "--burst")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--queues: 'gpu' is not a queue; name generate, score or both" in result.stderr
    assert store.task_counts("run-1") == (0, 1), "none done of one"


def test_a_worker_without_the_runs_embedding_model_fails_its_scoring_and_scores_nothing(
    store: Store, server_url: str
) -> None:
    spec = EmbeddingSpec(model="/models/on/the/cli/host", fingerprint="c" * 64)
    store.save_run(RunConfig(run_id="run-1", embedding=spec))
    item = candidate(1, status=CandidateStatus.GENERATED)
    store.put(item)
    connection = redis.Redis.from_url(server_url)
    work = WorkQueue(store, connection, QueueSettings(retries=0, retry_intervals=[]))
    work.enqueue_scoring("run-1", [item.id])
    result = run_cli(cli_env(store, server_url), "worker", "--queues", "score", "--burst")
    assert result.returncode == 0, result.stderr
    [(_queue, _job, error)] = work.failed_jobs()
    assert error.startswith("generator.errors.RunSettingsError: the run was created with ")
    assert "embedding model '/models/on/the/cli/host' (fingerprint cccccccccccc)" in error
    assert "this worker cannot provide it" in error
    assert store.get(item.id).status is CandidateStatus.GENERATED, "never scored by another"


def test_a_worker_started_with_a_config_file_scores_with_its_data_dir_and_the_runs_model(
    store: Store, server_url: str, tmp_path: Path
) -> None:
    existing = tmp_path / "cli-host" / "seed_tasks.jsonl"
    existing.parent.mkdir()
    existing.write_bytes((REAL_DATA / "self-instruct" / "seed_tasks.jsonl").read_bytes())
    config = pack_run(store, RunConfig(run_id="run-1", existing=[str(existing)]), Embedder())
    store.save_run(config)
    existing.unlink()
    item = candidate(1, status=CandidateStatus.GENERATED)
    store.put(item)
    work = WorkQueue(
        store, redis.Redis.from_url(server_url), QueueSettings(retries=0, retry_intervals=[])
    )
    work.enqueue_scoring("run-1", [item.id])
    data_dir = tmp_path / "the-worker's-data"
    settings = tmp_path / "worker.yaml"
    settings.write_text(f"data_dir: {data_dir}\n")
    env = {k: v for k, v in cli_env(store, server_url).items() if k != "GAPFILL_DATA_DIR"}
    result = run_cli(env, "-c", str(settings), "worker", "--queues", "score", "--burst")
    assert result.returncode == 0, result.stderr
    assert work.failed_jobs() == []
    assert store.get(item.id).status is not CandidateStatus.GENERATED, "scored"
    [seed] = [i for i in config.inputs if i.role == "existing"]
    assert (data_dir / "inputs" / seed.sha256 / "seed_tasks.jsonl").is_file()
    assert any((data_dir / "indexes").iterdir()), "its indexes under the -c data_dir"


def test_a_burst_worker_logs_the_retry_the_failure_and_why_it_exits(
    store: Store, work: WorkQueue, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    job_id = f"{store.keys.prefix}-broken"
    work.generate.enqueue(
        "workers.jobs.generate_batch",
        store.keys.prefix,
        "run-1",
        ["no-such-task"],
        work.settings.model_dump(),
        job_id=job_id,
        retry=Retry(max=1),  # no interval: straight back on the queue, so this burst reruns it
    )
    process = start_worker(burst=True)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    reason = "no generation task 'no-such-task'"
    first = rf"job {job_id}: generate 1 tasks of run 'run-1': retry \(\w+: {reason}"
    second = rf"job {job_id}: generate 1 tasks of run 'run-1': failed \(\w+: {reason}"
    assert re.search(first, output) and re.search(second, output), output
    assert "exits, queues empty (burst): 0 jobs ok, 1 failed, 1 to retry; 0 tasks" in output


def test_a_batch_whose_worker_is_killed_is_rerun_without_duplicates(
    store: Store, work: WorkQueue, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    batch = tasks(8, tokens=64)  # unseeded: a rerun writes different text, so duplicates would show
    store.add_tasks(batch)
    [job_id] = work.enqueue_tasks("run-1").jobs
    first = start_worker()
    # Killed on its first heartbeat for the job: the batch stores nothing until all 8 answers
    # are generated (seconds of work), so the kill lands mid-batch. Checked just below.
    wait_until(lambda: heartbeat_landed(work.generate, job_id), 120, "the job's first heartbeat")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert store.task_counts("run-1")[0] < 8, "the batch finished before the kill; make it longer"

    second = start_worker()
    wait_until(lambda: store.task_counts("run-1") == (8, 8), 240, "a new worker to rerun the batch")
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=60)

    all_items = [i for s in CandidateStatus for i in store.ids("run-1", s)]
    assert len(all_items) == 8, "exactly one candidate per task"
    by_task = {store.get(i).provenance.task_id for i in all_items}
    assert by_task == {t.id for t in batch}


def test_three_workers_killed_mid_batch_lose_no_request_and_duplicate_none(
    store: Store, server_url: str, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    from rq import Worker

    connection = redis.Redis.from_url(server_url)
    work = WorkQueue(store, connection, QueueSettings(batch_size=8, retries=5, retry_intervals=[1]))
    batch = tasks(24, tokens=64)  # unseeded: a rerun writes different text, so duplicates show
    store.add_tasks(batch)
    assert len(work.enqueue_tasks("run-1").jobs) == 3

    def current_job(process: subprocess.Popen[str]) -> str | None:
        for worker in Worker.all(connection=connection):
            if worker.pid == process.pid and worker.get_state() == "busy":
                job_id: str | None = worker.get_current_job_id()
                return job_id
        return None

    for kill in range(3):
        victim = start_worker()
        wait_until(
            lambda p=victim: heartbeat_landed(work.generate, current_job(p)),  # type: ignore[misc]
            180,
            f"worker {kill + 1}'s first heartbeat for its batch",
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    assert store.task_counts("run-1")[0] < 24, "the campaign finished before the kills"

    survivor = start_worker()
    wait_until(lambda: store.task_counts("run-1") == (24, 24), 400, "the campaign to finish")
    survivor.send_signal(signal.SIGTERM)
    survivor.wait(timeout=60)
    all_items = [i for s in CandidateStatus for i in store.ids("run-1", s)]
    assert len(all_items) == 24, "exactly one candidate per request"
    assert {store.get(i).provenance.task_id for i in all_items} == {t.id for t in batch}


def test_a_failing_job_is_retried_then_lands_in_failed_with_its_error(
    store: Store, work: WorkQueue, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    work.generate.enqueue(
        "workers.jobs.generate_batch",
        store.keys.prefix,
        "run-1",
        ["no-such-task"],
        work.settings.model_dump(),
        job_id=f"{store.keys.prefix}-broken",
        retry=work._retry(),
    )
    worker = start_worker()
    wait_until(lambda: work.depths()[work.generate.name]["failed"] == 1, 120, "the job to fail")
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    [(_queue, job_id, error)] = work.failed_jobs()
    assert job_id == f"{store.keys.prefix}-broken"
    assert "no generation task 'no-such-task'" in error
    from rq.job import Job

    assert Job.fetch(job_id, connection=work.connection).retries_left == 0, "retries were used up"
    status = run_cli(cli_env(store), "status", timeout=120)
    assert "1 failed" in status.stdout
    assert "no generation task 'no-such-task'" in status.stdout
    requeue = run_cli(cli_env(store), "requeue-failed", timeout=120)
    assert "requeued 1 failed jobs" in requeue.stdout
    assert work.depths()[work.generate.name]["queued"] == 1


def test_sigterm_lets_the_running_batch_finish(
    store: Store, work: WorkQueue, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    store.add_tasks(tasks(4, tokens=32, seed=1))
    [job_id] = work.enqueue_tasks("run-1").jobs
    worker = start_worker()
    wait_until(lambda: heartbeat_landed(work.generate, job_id), 120, "the job's first heartbeat")
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=180)
    except subprocess.TimeoutExpired:
        worker.kill()
        output, _ = worker.communicate(timeout=30)
        pytest.fail(f"no exit within 180 s of SIGTERM; the worker said:\n{output[-4000:]}")
    assert store.task_counts("run-1") == (4, 4), "the batch in hand was finished before exiting"


def _ignore_sigterm_and_wait(ready: EventType) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    time.sleep(120)


def test_a_scheduler_process_that_ignores_sigterm_cannot_hold_the_worker(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RQ joins its scheduler process without a timeout inside the SIGTERM handler; a scheduler
    # fork stuck on an inherited lock kept a worker alive after SIGTERM until killed.
    monkeypatch.setattr(worker_module, "SCHEDULER_STOP_S", 1.0)
    connection = redis.Redis.from_url(server_url)
    worker = GapfillWorker([Queue("gapfill-test-q", connection=connection)], connection=connection)
    worker.scheduler = RQScheduler(["gapfill-test-q"], connection=connection)
    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    stubborn = fork.Process(target=_ignore_sigterm_and_wait, args=(ready,))
    stubborn.start()
    assert ready.wait(30)
    worker.scheduler._process = stubborn
    started = time.monotonic()
    worker.stop_scheduler()
    assert not stubborn.is_alive()
    assert time.monotonic() - started < 5, "killed after the bounded wait, not after 120 s"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [  # exit 2: a usage error (typer checks the choice); 1: the backend refused to load
        (["--backend", "gpt"], 2, "'gpt' is not one of 'local', 'openai', 'vllm'"),
        (["--model", "/no/such/model"], 1, "no such directory"),
        (
            ["--backend", "openai", "--base-url", "http://127.0.0.1:1/v1"],
            1,
            "cannot reach the OpenAI-compatible endpoint",
        ),
        (["--device", "tpu"], 2, "'tpu' is not one of 'auto', 'cpu', 'cuda'"),
    ],
)
def test_a_worker_that_cannot_start_takes_no_job(
    store: Store, work: WorkQueue, server_url: str, args: list[str], code: int, message: str
) -> None:
    store.add_tasks(tasks(1))
    work.enqueue_tasks("run-1")
    result = run_cli(cli_env(store, server_url), "worker", "--burst", *args, timeout=120)
    assert result.returncode == code
    assert message in " ".join(result.stderr.replace("│", " ").split())  # usage errors are boxed
    assert "Traceback" not in result.stderr
    assert work.depths()[work.generate.name]["queued"] == 1, "the job must still be queued"


class DeadBackend:
    """Stands in for an engine that died (a fake for the worker's stop logic only)."""

    name, model = "dead", "dead"

    def load(self) -> None: ...

    def close(self) -> None: ...

    def generate(self, requests: list[object]) -> list[object]:
        from generator.errors import BackendDeadError

        raise BackendDeadError("vLLM's engine died: test")


def test_a_worker_whose_backend_died_stops_and_its_job_is_retried(
    store: Store, work: WorkQueue
) -> None:
    from rq.job import Job

    from generator.queueing import queue_names
    from workers.registry import context, install
    from workers.worker import GapfillWorker

    store.add_tasks(tasks(2))
    work.settings = work.settings.model_copy(update={"batch_size": 1, "retry_intervals": [60]})
    first, second = work.enqueue_tasks("run-1").jobs
    install(DeadBackend())  # type: ignore[arg-type]
    try:
        worker = GapfillWorker(list(queue_names(store.keys.prefix)), connection=work.connection)
        worker.work(burst=True, logging_level="ERROR")
        assert context().fatal == "vLLM's engine died: test"
    finally:
        install(None)
        context().fatal = None
    assert Job.fetch(first, connection=work.connection).get_status() == "scheduled", "retried"
    assert Job.fetch(second, connection=work.connection).get_status() == "queued", "not taken"


def test_jobs_read_the_settings_the_worker_was_started_with(tmp_path: Path) -> None:
    from generator.config import Settings
    from workers.registry import context, install

    started_with = Settings(data_dir=tmp_path / "worker-data", embedding_max_tokens=64)
    install(None, started_with)
    try:
        assert context().current_settings() is started_with, "not re-read from the environment"
    finally:
        install(None)
    assert context().current_settings() == Settings(), "without any, the environment's"
    context().settings = None


def test_a_worker_whose_password_is_refused_exits_at_once_saying_so(valkey_url: str) -> None:
    """Waiting would not fix it: unlike a store that is away, this is one clear error."""
    wrong = re.sub(r"://[^@]*@", "://:not-the-password@", valkey_url)
    env = {**os.environ, "GAPFILL_REDIS_URL": wrong}
    started = time.monotonic()
    result = run_cli(env, "worker", "--queues", "score", timeout=60)
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert "refused the credentials" in result.stderr and "Traceback" not in result.stderr
    assert "not-the-password" not in result.stderr


def test_sigterm_while_the_store_is_away_stops_the_worker_cleanly(tmp_path: Path) -> None:
    from generator.redis_server import BundledServer

    server = BundledServer(tmp_path / "store-host")
    url = server.ensure_running().url
    env = {**os.environ, "GAPFILL_REDIS_URL": url, "GAPFILL_WORKER_HEARTBEAT_S": "1"}
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--queues", "score"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: "serving score" in (tmp_path / "worker.log").read_text(), 60, "start")
        time.sleep(2)
        server.stop()
        wait_until(
            lambda: "retrying" in (tmp_path / "worker.log").read_text(), 60, "the worker to wait"
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        server.stop()
    output = (tmp_path / "worker.log").read_text()
    # (RQ's scheduler, a child process, prints its own traceback when the store goes.)
    assert "exits, stop requested" in output, output[-3000:]
