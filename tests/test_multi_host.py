"""gapfill across hosts: each host a process tree with its own HOME, data directory and working
directory and, where the machine allows it (``unshare``), its own mount namespace, in which the
other hosts' directories are hidden under an empty tmpfs. The host that creates a run deletes
its files; the workers reach nothing but the store's URL. Then the store restarts under a live
review session and a scoring worker, and both carry on."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import redis
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from generator.config import QueueSettings
from generator.connection import connect
from generator.queueing import WorkQueue
from generator.redis_server import free_port, valkey_binary
from generator.schema import CandidateStatus, RunConfig
from generator.store import Store
from tests.factories import serving_ui
from tests.test_review_ui import decide_by_key, idle, real_candidates, shown_item
from tests.test_workers import wait_until

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"
CAMPAIGN = """\
run: multi
kind: sft
data: seed_tasks.jsonl
reference: user_oriented_instructions.jsonl
reference_label: motivation_app
eval_sets: [HumanEval.jsonl.gz]
backend: local
gaps: 2
per_gap: 3
max_tokens: 64
filters:
  judge: false
"""


@cache
def can_unshare() -> bool:
    """Whether this machine lets an unprivileged user make a user and mount namespace."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "-Urm", "true"], capture_output=True)
    return probe.returncode == 0


@dataclass
class Host:
    """One simulated machine: its own home, data and working directories."""

    root: Path
    store_url: str
    prefix: str

    def __post_init__(self) -> None:
        for name in ("home", "data", "work"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def env(self) -> dict[str, str]:
        """Only what an operator would set on that machine: the store's URL and prefix."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.root / "home"),
            "XDG_DATA_HOME": str(self.root / "home" / ".local" / "share"),
            "XDG_CACHE_HOME": str(self.root / "home" / ".cache"),
            "GAPFILL_DATA_DIR": str(self.data),
            "GAPFILL_REDIS_URL": self.store_url,
            "GAPFILL_KEY_PREFIX": self.prefix,
            "GAPFILL_WORKER_HEARTBEAT_S": "1",
            "GAPFILL_MAINTENANCE_INTERVAL_S": "2",
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "COLUMNS": "200",
        }

    def command(self, args: Sequence[str], hidden: Sequence[Path] = ()) -> list[str]:
        """``gapfill ARGS`` on this host; ``hidden`` (other hosts' roots) mounted over, empty."""
        base = [sys.executable, "-m", "cli", *args]
        if not hidden or not can_unshare():
            return base
        mounts = " && ".join(f"mount -t tmpfs none {shlex.quote(str(p))}" for p in hidden)
        return ["unshare", "-Urm", "sh", "-c", f'{mounts} && exec "$@"', "sh", *base]

    def start(self, args: Sequence[str], hidden: Sequence[Path] = ()) -> subprocess.Popen[str]:
        log = (self.root / "log.txt").open("w")  # a file, not a pipe: a full pipe blocks it
        return subprocess.Popen(
            self.command(args, hidden),
            cwd=self.work,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def log(self) -> str:
        return (self.root / "log.txt").read_text()


def stop(process: subprocess.Popen[str], host: Host) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"no exit within 120 s of SIGTERM:\n{host.log()[-3000:]}")
    return host.log()


def jobs_ok(log: str, kind: str) -> int:
    """How many tasks (generate) or items (score) the jobs of a worker log finished."""
    return sum(int(n) for n in re.findall(rf": {kind} (\d+) \w+ of run '[^']+': ok in", log))


@pytest.fixture
def store_of(valkey_url: str, key_prefix: str) -> Iterator[Store]:
    store = Store(redis.Redis.from_url(valkey_url, decode_responses=True), prefix=key_prefix)
    yield store
    store.delete_prefix()


@pytest.mark.slow
def test_a_run_made_on_one_host_is_generated_on_a_second_and_scored_on_a_third(
    valkey_url: str, key_prefix: str, store_of: Store, tmp_path: Path
) -> None:
    hosts = {name: Host(tmp_path / name, valkey_url, key_prefix) for name in ("cli", "gpu", "cpu")}
    cli, gpu, cpu = hosts["cli"], hosts["gpu"], hosts["cpu"]
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl", "HumanEval.jsonl.gz"):
        shutil.copy(DEMO / name, cli.work / name)
    (cli.work / "campaign.yaml").write_text(CAMPAIGN)
    created = subprocess.run(
        cli.command(["run", "campaign.yaml", "--workers", "external"]),
        cwd=cli.work,
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert created.returncode == 0, created.stderr
    config = store_of.get_run("multi")
    assert config is not None and Path(config.existing[0]).is_relative_to(cli.root)
    shutil.rmtree(cli.root)  # the CLI host's inputs are gone: only the store has them
    cli.root.mkdir()  # (an empty mount point, hidden from the workers all the same)

    others = {name: [h.root for other, h in hosts.items() if other != name] for name in hosts}
    generating = gpu.start(["worker", "--queues", "generate"], others["gpu"])
    scoring = cpu.start(["worker", "--queues", "score"], others["cpu"])
    work = WorkQueue(
        store_of, redis.Redis.from_url(valkey_url), QueueSettings(retries=0, retry_intervals=[])
    )

    def finished() -> bool:
        for process, host in ((generating, gpu), (scoring, cpu)):
            if process.poll() is not None:
                pytest.fail(f"a worker exited early:\n{host.log()[-3000:]}")
        failed = work.failed_jobs()
        assert not failed, f"jobs failed: {failed}"
        done, total = store_of.task_counts("multi")
        counts = store_of.counts("multi")
        waiting = sum(by_status.get("generated", 0) for by_status in counts.values())
        return done == total and waiting == 0 and not work.busy()

    try:
        wait_until(finished, 900, "the run to be generated and scored")
    finally:  # a failed wait must not leave the workers running
        gpu_log, cpu_log = stop(generating, gpu), stop(scoring, cpu)

    done, total = store_of.task_counts("multi")
    assert done == total > 0
    assert jobs_ok(gpu_log, "generate") == total, "each task generated exactly once"
    ids = [i for status in CandidateStatus for i in store_of.ids("multi", status)]
    items = [c for c in store_of.get_many(ids) if c is not None]
    assert items and all(c.status is not CandidateStatus.GENERATED for c in items)
    assert all(c.scores for c in items), "every candidate scored"
    assert jobs_ok(cpu_log, "score") == len(items), cpu_log[-3000:]
    assert work.failed_jobs() == []
    assert "failed" not in (gpu_log + cpu_log).replace(" 0 failed", ""), "no job failed"
    assert "serving score without an LLM backend" in cpu_log
    # The scoring host read the run's files from the store, by their hashes, into its cache.
    existing = next(i for i in config.inputs if i.role == "existing")
    cached = cpu.data / "inputs" / existing.sha256 / "seed_tasks.jsonl"
    assert cached.is_file() and cached.stat().st_size == existing.bytes
    assert not (gpu.data / "inputs").exists(), "the generating host scored nothing"
    if can_unshare():
        assert "mount" not in cpu_log, "the hosts' directories were hidden without an error"


class StoreHost:
    """The store's own host: a Valkey as compose runs Redis (a fixed port and password, AOF,
    fsync always), restarted on the same address as a supervisor would."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True)
        self.root, self.port = root, free_port()
        self.password = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # The password on the command line: a throwaway test server's, so acceptable here.
        arguments = [
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)),
            *("--requirepass", self.password, "--appendonly", "yes", "--appendfsync", "always"),
            *("--save", "", "--maxmemory-policy", "noeviction"),
        ]
        log = (self.root / "valkey.log").open("ab")
        self.process = subprocess.Popen([str(valkey_binary()), *arguments], stdout=log, stderr=log)
        wait_until(self._answers, 15, "the store to start")

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)  # a clean shutdown: the AOF is flushed
        self.process.wait(timeout=30)


@pytest.mark.slow
def test_the_store_restarts_under_a_review_session_and_a_scoring_worker(
    tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    server = StoreHost(tmp_path / "store-host")
    server.start()
    store = Store(connect(server.url), prefix="restart")
    try:
        _restart_mid_run(server, store, tmp_path, browser)
    finally:
        server.stop()


def waiting_scores(store: Store) -> int:
    return store.count("ui-run", CandidateStatus.GENERATED)


def _restart_mid_run(  # type: ignore[no-untyped-def]
    server: StoreHost, store: Store, tmp_path: Path, browser
) -> None:
    url = server.url
    store.save_run(RunConfig(run_id="ui-run"))
    reviewed, backlog = real_candidates(12), real_candidates(40)[12:]
    store.put_many(reviewed)
    store.put_many(c.model_copy(update={"status": CandidateStatus.GENERATED}) for c in backlog)
    work = WorkQueue(store, connect(url, decode_responses=False), QueueSettings(score_batch_size=4))
    before, after = backlog[:12], backlog[12:]
    work.enqueue_scoring("ui-run", [c.id for c in before])
    cpu = Host(tmp_path / "cpu", url, "restart")
    scoring = cpu.start(["worker", "--queues", "score"])
    try:
        ui = Host(tmp_path / "ui", url, "restart")
        with serving_ui(ui.env(), free_port(), "--local", cwd=ui.work) as address:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(address)
            current, decided = shown_item(page), []
            for _ in range(3):
                decided.append(current)
                current, _again = decide_by_key(page, ["a"], current, store, len(decided) - 1)

            wait_until(lambda: waiting_scores(store) == 16, 300, "scoring")
            # Items are saved before RQ marks their job done: stopping the store in between
            # leaves a job with no "ok" line (retried later as abandoned), so the count of
            # finished jobs below would depend on timing. Wait for the worker's own word.
            wait_until(lambda: jobs_ok(cpu.log(), "score") == len(before), 60, "jobs done")
            server.stop()  # the store goes away mid-run
            away = page.get_by_text("store unavailable, retrying").first
            for _attempt in range(3):  # a key pressed mid-render can be dropped: press it again
                idle(page)
                page.keyboard.press("a")  # a decision while the store is away is not confirmed...
                try:
                    away.wait_for(timeout=10_000)
                    break
                except PlaywrightTimeout:
                    continue
            away.wait_for(timeout=10_000)
            assert "Traceback" not in page.content()
            time.sleep(3)  # ...the page keeps retrying, the worker waits
            assert scoring.poll() is None, cpu.log()[-3000:]
            server.start()  # back on the same address

            shown = shown_item(page)  # the session recovers by itself
            assert shown == current, "the unconfirmed item is still this reviewer's"
            for _ in range(3):
                decided.append(current)
                current, _again = decide_by_key(page, ["a"], current, store, len(decided) - 1)
            work.enqueue_scoring("ui-run", [c.id for c in after])
            wait_until(lambda: waiting_scores(store) == 0, 300, "scoring")
    except BaseException:  # a failure must not leave the worker running
        scoring.kill()
        raise
    log = stop(scoring, cpu)
    # It waited for the store (in RQ's wait for a job, or in gapfill's reconnect loop, as the
    # moment falls) and served on in the same process.
    assert re.search(r"store unavailable, retrying|could not connect to Redis .* retrying", log)
    assert jobs_ok(log, "score") == len(backlog), log[-3000:]
    assert work.failed_jobs() == []
    made = [d.decision.item_id for d in store.decisions("ui-run")]
    assert made == decided, "every decision made is in the log, once, in order"
    assert all(store.get(i).status is CandidateStatus.ACCEPTED for i in decided)
