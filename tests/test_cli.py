"""The gapfill command as a user runs it: a real process, the real bundled server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from generator.connection import connect, masked_url
from generator.redis_server import BundledServer
from generator.schema import CandidateStatus, Provenance, Usage
from generator.store import Store
from tests.factories import candidate, cli_env, run_cli

STATUSES = ["generated", "pending", "auto_rejected", "accepted", "rejected"]


@pytest.fixture
def data_dir() -> Path:
    return Path(os.environ["GAPFILL_DATA_DIR"])


@pytest.fixture
def bundled(data_dir: Path):  # type: ignore[no-untyped-def]
    server = BundledServer(data_dir)
    yield server
    server.stop()


def test_status_on_a_fresh_machine_starts_the_server_and_prints_an_empty_table(
    bundled: BundledServer,
) -> None:
    result = run_cli(cli_env(), "status", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "gapfill status" in result.stdout
    assert "no runs yet" in result.stdout
    assert bundled.info() is not None
    assert (bundled.dir / "appendonlydir").is_dir()


def test_status_shows_counts_per_run_gap_and_status(bundled: BundledServer) -> None:
    info = bundled.ensure_running()
    store = Store(connect(info.url))
    store.put_many(candidate(i, gap="gap-a", priority=float(i == 0)) for i in range(3))
    store.put_many(candidate(i, gap="gap-b") for i in range(3, 5))
    lease = store.claim("alice", "run-1")
    assert lease is not None
    store.decide(lease.item_id, "alice", "accept", lease.version)
    result = run_cli(cli_env(), "status", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = [tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in lines]
    header = next(line for line in lines if line.startswith("┃"))
    headers = [cell.strip() for cell in header.split("┃")[1:-1]]
    assert headers == ["run", "gap", *STATUSES, "total"]
    assert lease.item.gap_id == "gap-a"
    # The run's id on its first row only, then its gaps and their sum.
    assert ("run-1", "gap-a", "0", "2", "0", "1", "0", "3") in rows
    assert ("", "gap-b", "0", "2", "0", "0", "0", "2") in rows
    assert ("", "all gaps", "0", "4", "0", "1", "0", "5") in rows
    assert "run-1: 4 waiting for review, 0 leased to reviewers" in result.stdout


def test_status_costs_shows_what_each_accepted_item_cost_per_gap(bundled: BundledServer) -> None:
    store = Store(connect(bundled.ensure_running().url))
    spent = Usage(prompt_tokens=200, completion_tokens=800, backend_seconds=1.5)
    items = [candidate(i, gap="gap-a") for i in range(2)]
    store.put_many(
        c.model_copy(update={"provenance": Provenance(backend="openai", usage=spent)})
        for c in items
    )
    lease = store.claim("alice", "run-1")
    assert lease is not None
    store.decide(lease.item_id, "alice", "accept", lease.version)
    priced = cli_env(GAPFILL_PRICES_PER_MILLION_TOKENS='{"openai": 3.0}')
    result = run_cli(priced, "status", "--run", "run-1", "--costs", timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [tuple(c.strip() for c in line.split("│")[1:-1]) for line in result.stdout.splitlines()]
    # Two items generated, one accepted: it cost both (2,000 tokens, 3 s, $0.006).
    assert ("gap-a", "2", "1", "2,000", "3.00", "0.0", "0.0060") in rows, result.stdout
    unpriced = run_cli(cli_env(), "status", "--run", "run-1", "--costs", timeout=120)
    assert ("gap-a", "2", "1", "2,000", "3.00", "0.0", "-") in [
        tuple(c.strip() for c in line.split("│")[1:-1]) for line in unpriced.stdout.splitlines()
    ]


LONG_RUNS = ["lease1-two-tabs-and-a-reload-2024-06-01", "import-of-the-customer-support-logs"]
LONG_GAP = "general_approach_to_subject_matter_questions_long"


def test_status_in_80_columns_shows_every_name_and_figure_in_full(bundled: BundledServer) -> None:
    store = Store(connect(bundled.ensure_running().url))
    store.put_many(candidate(i, run=LONG_RUNS[0], gap=LONG_GAP) for i in range(3))
    rejected = CandidateStatus.AUTO_REJECTED
    store.put_many(candidate(i, run=LONG_RUNS[1], gap="writing_help") for i in range(3, 15))
    store.put_many(candidate(i, run=LONG_RUNS[1], status=rejected) for i in range(15, 17))
    result = run_cli(cli_env(COLUMNS="80"), "status", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    table = lines[lines.index(next(x for x in lines if x.startswith("┏"))) :]
    table = table[: table.index(next(x for x in table if x.startswith("└"))) + 1]
    assert all(len(line) <= 80 and line[-1] in "┓┃┩│┤┘" for line in table), result.stdout
    headers = [cell.strip() for cell in table[1].split("┃")[1:-1]]
    assert headers == ["run", "gap", "gen.", "pend.", "auto-rej.", "acc.", "rej.", "total"]
    rows: list[list[str]] = []  # a row's cells, its folded pieces joined
    for line in table[3:-1]:
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if line.startswith("├"):
            continue
        if cells[-1]:  # a row's first line: the others continue its ids
            rows.append(cells)
        else:
            rows[-1][:2] = [rows[-1][0] + cells[0], rows[-1][1] + cells[1]]
    assert rows == [
        [LONG_RUNS[1], "gap-a", "0", "0", "2", "0", "0", "2"],
        ["", "writing_help", "0", "12", "0", "0", "0", "12"],
        ["", "all gaps", "0", "12", "2", "0", "0", "14"],
        [LONG_RUNS[0], LONG_GAP, "0", "3", "0", "0", "0", "3"],
        ["", "all gaps", "0", "3", "0", "0", "0", "3"],
    ], result.stdout


def test_status_too_narrow_for_a_table_prints_a_line_per_gap(bundled: BundledServer) -> None:
    store = Store(connect(bundled.ensure_running().url))
    store.put_many(candidate(i, run=LONG_RUNS[0], gap=LONG_GAP) for i in range(3))
    result = run_cli(cli_env(COLUMNS="60"), "status", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "┃" not in result.stdout and f"run {LONG_RUNS[0]}\n" in result.stdout
    text = " ".join(result.stdout.split())  # lines wrapped at spaces, rejoined
    figures = "0 generated, 3 pending, 0 auto_rejected, 0 accepted, 0 rejected, 3 total"
    assert f"{LONG_GAP}: {figures} all gaps: {figures}" in text, result.stdout


def test_status_counts_an_expired_lease_as_waiting_not_leased(bundled: BundledServer) -> None:
    store = Store(connect(bundled.ensure_running().url))
    store.put_many(candidate(i) for i in range(3))
    shown = store.claim("alice", "run-1")  # a closed tab's two leases: shown and prefetched
    assert shown is not None and store.claim("alice", "run-1", holding=[shown.item_id])
    result = run_cli(cli_env(), "status", timeout=120)
    assert "run-1: 1 waiting for review, 2 leased to reviewers" in result.stdout
    store.expire_leases("run-1")
    result = run_cli(cli_env(), "status", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "run-1: 3 waiting for review, 0 leased to reviewers" in result.stdout


def test_server_start_info_stop(bundled: BundledServer) -> None:
    started = run_cli(cli_env(), "server", "start", timeout=120)
    assert started.returncode == 0 and "bundled Valkey running" in started.stdout
    info = run_cli(cli_env(), "server", "info", timeout=120)
    assert info.returncode == 0 and started.stdout.split(",")[0] in info.stdout
    assert (
        run_cli(cli_env(), "server", "stop", timeout=120).stdout.strip() == "bundled Valkey stopped"
    )
    assert run_cli(cli_env(), "server", "info", timeout=120).returncode == 3


def test_redis_url_means_no_bundled_server(valkey_url: str, data_dir: Path) -> None:
    result = run_cli(cli_env(REDIS_URL=valkey_url), "status", timeout=120)
    assert result.returncode == 0, result.stderr
    assert masked_url(valkey_url) in result.stdout
    assert not (data_dir / "valkey").exists()


def test_an_evicting_server_gets_a_loud_warning(tmp_path: Path) -> None:
    server = BundledServer(tmp_path / "other")
    info = server.ensure_running()
    try:
        connect(info.url).config_set("maxmemory-policy", "allkeys-lru")
        result = run_cli(cli_env(REDIS_URL=info.url), "status", timeout=120)
        assert result.returncode == 0
        assert "WARNING" in result.stderr and "allkeys-lru" in result.stderr
    finally:
        server.stop()


def test_validate_reports_each_bad_row_as_file_line_reason(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad = {"messages": [{"role": "user", "content": "q"}]}
    path.write_bytes((json.dumps(good) + "\n" + json.dumps(bad) + "\n{oops\n").encode() + b"\xff\n")
    result = run_cli(cli_env(), "validate", str(path), timeout=120)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}:2: messages: the last message must be from the assistant",
        f"{path}:3: invalid JSON: unexpected character, expected a string key (column 2)",
        f"{path}:4: not valid UTF-8 (byte 1 of the line)",
    ]
    assert "format messages, 4 rows, 1 valid, 3 invalid" in result.stderr


def test_validate_passes_the_real_seed_tasks(real_data: Path) -> None:
    path = real_data / "self-instruct" / "seed_tasks.jsonl"
    result = run_cli(cli_env(), "validate", str(path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "format self_instruct, 175 rows, 175 valid, 0 invalid" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["validate", "/no/such.jsonl"], {}, "error: /no/such.jsonl: no such file"),
        (["validate", "x.jsonl", "--format", "csv"], {}, "error: unknown format 'csv'"),
        (["status"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, "error: cannot reach Redis at"),
        (["status"], {"REDIS_URL": "http://x"}, "must start with redis://"),
        (["status"], {"GAPFILL_KEY_PREFIX": "a b"}, "error: key_prefix: String should match"),
        (["--config", "/no/cfg.yaml", "status"], {}, "error: /no/cfg.yaml: config file not found"),
    ],
)
def test_user_errors_are_one_line_without_a_traceback(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = run_cli(cli_env(**env), *args, timeout=120)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_import_is_all_or_nothing(tmp_path: Path, bundled: BundledServer) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [{"instruction": f"Task {i}", "output": "Done."} for i in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"instruction": "x"}\n')
    failed = run_cli(cli_env(), "import", str(path), "--run", "r1", timeout=120)
    assert failed.returncode == 1
    assert f"{path}:4: missing field 'output'" in failed.stderr
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = run_cli(cli_env(), "import", str(path), "--run", "r1", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "3 rows (alpaca); 3 stored in run 'r1'" in result.stdout
    store = Store(connect(bundled.ensure_running().url))
    assert store.counts("r1") == {"imported": {"pending": 3}}
