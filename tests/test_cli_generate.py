"""`gapfill generate` as a user runs it: tasks from a file, run in-process or by a worker."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from generator.schema import CandidateStatus
from generator.store import Store
from tests.factories import cli_env, run_cli


@pytest.fixture
def server_url(valkey_url: str) -> str:
    return valkey_url  # RQ's global keys stay off the shared Redis


def tasks_file(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS: list[dict[str, object]] = [
    {
        "gap_id": "geo",
        "prompt": "Name a river in Europe.",
        "sampling": {"max_tokens": 12, "seed": 1},
    },
    {"gap_id": "geo", "prompt": "Name a mountain.", "sampling": {"max_tokens": 12, "seed": 2}},
    {"gap_id": "food", "prompt": "Name a fruit.", "sampling": {"max_tokens": 12, "seed": 3}},
]


def test_generate_in_process_runs_the_whole_run(
    store: Store, valkey_url: str, model_dir: Path, tmp_path: Path
) -> None:
    env = cli_env(store, valkey_url)
    path = tasks_file(tmp_path / "tasks.jsonl", ROWS)
    result = run_cli(
        env,
        "generate",
        "--run",
        "r1",
        "--requests",
        str(path),
        "--in-process",
        "--model",
        str(model_dir),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "3 new tasks in run 'r1'" in result.stdout
    assert "3 new tasks enqueued in 1 jobs" in result.stdout
    assert "running 1 generation jobs (3 tasks): 1 enqueued now, 0 already queued" in result.stdout
    assert_job_lines(result.stderr, generated=3, scored=3)
    assert "run 'r1': 3/3 tasks done, 3 candidates" in result.stdout
    assert "prompts" in result.stdout and "tok/s" in result.stdout  # the progress bar
    cut = int(store.run_stats("r1").get("truncated", 0))
    assert cut > 0, "12 tokens: the seeded answers do not finish"
    # The command says how many of its outputs were cut off, and how to raise the limit.
    assert f"run 'r1': {cut} outputs generated during this command were cut off" in result.stdout
    assert "raise the campaign's max_tokens key" in result.stdout
    counts = store.counts("r1")
    assert sum(counts["geo"].values()) == 2 and sum(counts["food"].values()) == 1
    assert store.count("r1", CandidateStatus.GENERATED) == 0, "everything was scored"
    again = run_cli(env, "generate", "--run", "r1", "--requests", str(path), timeout=300)
    assert "0 new tasks" in again.stdout and "0 new tasks enqueued" in again.stdout
    assert "cut off" not in again.stdout, "it generated nothing: the run's cut-offs are not its"


def assert_job_lines(log: str, *, generated: int, scored: int) -> None:
    """The worker's log: a line per job (id, kind, count, outcome, seconds), then its exit."""
    jobs = re.findall(
        r"job (\S+): (generate|score) (\d+) (?:tasks|items) of run '\w+': (\S+) in [\d.]+s", log
    )
    assert jobs, log
    assert all(outcome == "ok" for *_, outcome in jobs), log
    assert sum(int(n) for _, kind, n, _ in jobs if kind == "generate") == generated, log
    assert sum(int(n) for _, kind, n, _ in jobs if kind == "score") == scored, log
    exits = re.findall(r"exits, queues empty \(burst\): (\d+) jobs ok, 0 failed", log)
    assert exits and sum(int(n) for n in exits) == len(jobs), log


def test_generate_in_process_says_it_runs_a_job_queued_before(
    store: Store, valkey_url: str, model_dir: Path, tmp_path: Path
) -> None:
    env = cli_env(store, valkey_url)
    path = tasks_file(tmp_path / "tasks.jsonl", ROWS)
    queued = run_cli(env, "generate", "--run", "r4", "--requests", str(path), timeout=300)
    assert "3 new tasks enqueued in 1 jobs" in queued.stdout, queued.stderr
    result = run_cli(
        env, "generate", "--run", "r4", "--in-process", "--model", str(model_dir), timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "run 'r4': 0 new tasks enqueued in 0 jobs" in result.stdout
    assert "running 1 generation jobs (3 tasks): 0 enqueued now, 1 already queued" in result.stdout
    assert "run 'r4': 3/3 tasks done, 3 candidates" in result.stdout
    assert_job_lines(result.stderr, generated=3, scored=3)


def test_generate_wait_follows_external_workers(
    store: Store, valkey_url: str, model_dir: Path, tmp_path: Path
) -> None:
    env = cli_env(store, valkey_url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--model", str(model_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        path = tasks_file(tmp_path / "tasks.jsonl", ROWS[:2])
        result = run_cli(
            env, "generate", "--run", "r2", "--requests", str(path), "--wait", timeout=300
        )
        assert result.returncode == 0, result.stderr
        assert "run 'r2': 2/2 tasks done, 2 candidates" in result.stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert store.task_counts("r2") == (2, 2)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"prompt": "q", "sampling": {"temperature": 5}},
            ":2: sampling.temperature: Input should be less than or equal to 2",
        ),
        (
            {"prompt": "q", "sampling": {"top_k": 5}},
            ":2: sampling.top_k: Extra inputs are not permitted",
        ),
        ({"messages": [{"role": "assistant", "content": "x"}]}, ":2: example_prompt.0.role"),
        ({"prompt": 7}, ":2: prompt: must be a string"),
        ({"prompt": "q", "run_id": "other"}, ":2: run_id: 'other' is not 'r3'"),
    ],
)
def test_a_bad_task_row_is_one_error_and_nothing_is_stored(
    store: Store, valkey_url: str, tmp_path: Path, row: dict[str, object], message: str
) -> None:
    path = tasks_file(tmp_path / "tasks.jsonl", [ROWS[0], row])
    result = run_cli(
        cli_env(store, valkey_url), "generate", "--run", "r3", "--requests", str(path), timeout=300
    )
    assert result.returncode == 1
    assert f"{path}{message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert store.task_counts("r3") == (0, 0)
