"""The store and the jobs on a shared machine: the bundled server wants a password that only its
owner can read, nothing gapfill writes is readable by other users, no job or cache is ever
unpickled, and no output shows a store password."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import stat
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from rq import Queue
from rq.job import Job

from generator.config import QueueSettings, Settings
from generator.connection import connect, masked_url, redact
from generator.errors import StoreUnavailableError
from generator.factories import BackendChoice
from generator.filters.reference import IndexOptions, ReferenceIndexes, ReferenceItem
from generator.queueing import SERIALIZER, WorkQueue, queue_names
from generator.redis_server import BundledServer, free_port, valkey_binary
from generator.schema import GenerationTask, Message
from generator.store import Store
from tests.factories import cli_env, run_cli
from workers.main import WorkerSpec, make_worker

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture
def server_url(valkey_url: str) -> str:
    """Only the session's own Valkey: RQ's keys (rq:job:*, rq:queues) lie outside any prefix."""
    return valkey_url


@pytest.fixture
def bundled(tmp_path: Path) -> Iterator[BundledServer]:
    server = BundledServer(tmp_path / "data")
    yield server
    server.stop()


class Planted:
    """Unpickling this creates ``marker``: the proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def modes_open_to_others(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that its group or others may use."""
    found = []
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077:
            found.append(f"{path.relative_to(root)} {oct(stat.S_IMODE(info.st_mode))}")
    return found


# -- the bundled server's password -------------------------------------------------------------


def test_the_bundled_server_refuses_a_client_without_its_password(
    bundled: BundledServer,
) -> None:
    info = bundled.ensure_running()
    anonymous = redis.Redis(host=info.host, port=info.port, protocol=2)
    with pytest.raises(redis.AuthenticationError, match="Authentication required"):
        anonymous.ping()  # NOAUTH
    with pytest.raises(StoreUnavailableError, match="refused the credentials"):
        connect(f"redis://{info.host}:{info.port}/0")
    assert connect(info.url).ping()
    assert len(info.password) >= 40 and info.url.startswith(f"redis://:{info.password}@")


def test_the_password_is_kept_in_files_only_their_owner_can_read_and_never_on_a_command_line(
    bundled: BundledServer,
) -> None:
    info = bundled.ensure_running()
    state = json.loads(bundled.state_file.read_text())
    assert state["password"] == info.password
    for path in (bundled.state_file, bundled.dir / "valkey.conf"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(bundled.dir.stat().st_mode) == 0o700
    command_line = Path(f"/proc/{info.pid}/cmdline").read_bytes()
    assert info.password.encode() not in command_line
    assert info.password not in repr(info), "a logged ServerInfo must not show it"
    assert bundled.info() == info, "a later call finds the server and its password"


def test_each_start_draws_a_new_password(bundled: BundledServer) -> None:
    first = bundled.ensure_running()
    bundled.stop()
    second = bundled.ensure_running()
    assert second.password != first.password
    with pytest.raises(StoreUnavailableError):
        connect(first.url.replace(str(first.port), str(second.port)))


def test_a_server_an_older_version_started_without_a_password_is_restarted_with_one(
    tmp_path: Path,
) -> None:
    """The old layout: no password, a 0755 folder, 0644 AOF files, a state file without one."""
    server = BundledServer(tmp_path / "data")
    server.dir.mkdir(parents=True)
    log = tmp_path / "old.log"
    old_umask = os.umask(0o022)
    try:
        port = free_port()
        with open(log, "wb") as out:
            old = subprocess.Popen(
                [str(valkey_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir",
                 str(server.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
    finally:
        os.umask(old_umask)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.set("gapfill:kept", "yes")
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the old server did not start"
                time.sleep(0.05)
        server.state_file.write_text(
            json.dumps({"pid": old.pid, "port": port, "host": "127.0.0.1"})
        )
        assert modes_open_to_others(server.dir), "the old layout is open to others"

        info = server.ensure_running()

        old.wait(timeout=30)
        assert "ready to exit" in log.read_text(), "shut down cleanly (AOF flushed), not killed"
        assert info.pid != old.pid and info.password
        assert connect(info.url).get("gapfill:kept") == "yes", "its data survived"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=info.port, protocol=2).ping()
        assert modes_open_to_others(tmp_path / "data") == []
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
        server.stop()


# -- files and folders -------------------------------------------------------------------------


def test_nothing_under_the_data_directory_is_open_to_other_users(
    tmp_path: Path, bundled: BundledServer
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)  # as an older version (or a umask 022 shell) left it
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
        )
        + "\n"
    )
    env = cli_env(GAPFILL_DATA_DIR=str(data_dir))
    old_umask = os.umask(0o022)  # the CLI must not rely on its caller's umask
    try:
        result = run_cli(env, "import", str(rows), "--run", "run-1", timeout=300)
        assert result.returncode == 0, result.stderr
        assert run_cli(env, "status", timeout=120).returncode == 0
    finally:
        os.umask(old_umask)
    assert (data_dir / "valkey" / "appendonlydir").is_dir()
    assert modes_open_to_others(data_dir) == []


# -- jobs ---------------------------------------------------------------------------------------


@pytest.fixture
def worker_settings(valkey_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return Settings(redis_url=valkey_url, key_prefix=key_prefix, data_dir=tmp_path / "data")


def _run_worker_until_empty(settings: Settings) -> None:
    worker = make_worker(settings, WorkerSpec(backend=BackendChoice()))
    worker.work(burst=True, logging_level="ERROR")


def test_a_pickled_job_planted_on_a_queue_is_never_unpickled(
    worker_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    connection = redis.Redis.from_url(str(worker_settings.redis_url))
    generate, _ = queue_names(worker_settings.key_prefix)
    planted = Queue(generate, connection=connection)  # RQ's default serializer: pickle
    job = planted.enqueue("workers.jobs.score_batch", Planted(marker), job_id="planted-pickle")
    assert not marker.exists()
    try:
        _run_worker_until_empty(worker_settings)
        assert not marker.exists(), "the worker unpickled a planted job"
        fetched = Job.fetch(job.id, connection=connection, serializer=SERIALIZER)
        assert fetched.get_status() == "failed"
        store = Store(connect(str(worker_settings.redis_url)), prefix=worker_settings.key_prefix)
        work = WorkQueue(store, connection, QueueSettings())
        [(_queue, job_id, _error)] = work.failed_jobs()  # `gapfill status` reads it: no pickle
        assert job_id == job.id and not marker.exists()
    finally:
        Job.fetch(job.id, connection=connection, serializer=SERIALIZER).delete()


def test_a_json_job_naming_any_other_function_is_refused(
    worker_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    connection = redis.Redis.from_url(str(worker_settings.redis_url))
    generate, _ = queue_names(worker_settings.key_prefix)
    queue = Queue(generate, connection=connection, serializer=SERIALIZER)
    job = queue.enqueue("pathlib.Path.touch", str(marker), job_id="planted-json")
    try:
        _run_worker_until_empty(worker_settings)
        assert not marker.exists()
        fetched = Job.fetch(job.id, connection=connection, serializer=SERIALIZER)
        assert fetched.get_status() == "failed"
        result = fetched.latest_result()
        assert result is not None and "'pathlib.Path.touch' is not a gapfill job" in str(
            result.exc_string
        )
    finally:
        Job.fetch(job.id, connection=connection, serializer=SERIALIZER).delete()


def _job_payload(connection: redis.Redis, job_id: str) -> list[object]:
    """A job's ``(function, instance, args, kwargs)`` as stored, read as JSON (RQ may zlib it)."""
    raw = connection.hget(f"rq:job:{job_id}", "data")
    assert isinstance(raw, bytes)
    with contextlib.suppress(zlib.error):
        raw = zlib.decompress(raw)
    payload: list[object] = json.loads(raw)
    return payload


def test_generation_and_scoring_jobs_are_stored_as_plain_json(
    store: Store, valkey_url: str
) -> None:
    connection = redis.Redis.from_url(valkey_url)
    work = WorkQueue(store, connection, QueueSettings(batch_size=4))
    task = GenerationTask(
        run_id="run-1", gap_id="gap-a", messages=[Message(role="user", content="Hello?")]
    )
    store.add_tasks([task])
    [generate_id] = work.enqueue_tasks("run-1").jobs
    [score_id] = work.enqueue_scoring("run-1", ["item-1", "item-2"])
    try:
        generate = _job_payload(connection, generate_id)
        score = _job_payload(connection, score_id)
        assert generate[:2] == ["workers.jobs.generate_batch", None] and generate[3] == {}
        score_args = [store.keys.prefix, "run-1", ["item-1", "item-2"]]
        assert score == ["workers.jobs.score_batch", None, score_args, {}]
        prefix, run_id, task_ids, settings = generate[2]  # type: ignore[misc]
        assert (prefix, run_id, task_ids) == (store.keys.prefix, "run-1", [task.id])
        assert QueueSettings.model_validate(settings) == work.settings
    finally:
        for job_id in (generate_id, score_id):
            Job.fetch(job_id, connection=connection, serializer=SERIALIZER).delete()


# -- caches -------------------------------------------------------------------------------------


def test_the_index_cache_round_trips_without_pickle_and_a_planted_pickle_is_never_loaded(
    tmp_path: Path,
) -> None:
    texts = [f"Tell me about river number {i} in the valley." for i in range(40)]
    items = [ReferenceItem(f"r{i}", (text,)) for i, text in enumerate(texts)]
    options = IndexOptions(semantic=False)
    built = ReferenceIndexes.cached(items, options, None, tmp_path)
    [directory] = [p for p in tmp_path.iterdir() if p.is_dir()]
    marker = tmp_path / "unpickled"
    for name in ("text.pickle", "index.pkl"):  # the old format's file, and a stray one
        (directory / name).write_bytes(pickle.dumps(Planted(marker)))
    loaded = ReferenceIndexes.cached(items, options, None, tmp_path)
    assert not marker.exists(), "a cache file was unpickled"
    assert loaded.loaded_from_cache
    query = "Tell me about river number 7 in the valley!"
    assert loaded.exact.find(items[7].text) == built.exact.find(items[7].text) == "r7"
    assert loaded.shingles.nearest(query) == built.shingles.nearest(query)
    assert loaded.shingles.nearest(query)[0] == "r7"


def test_no_module_reads_pickle_joblib_or_pickled_numpy() -> None:
    pattern = r"import pickle|from pickle|joblib|dill|cloudpickle|allow_pickle=True|torch\.load\("
    found = subprocess.run(
        ["grep", "-rnE", pattern, "generator", "cli", "workers", "review_ui", "bench", "scripts"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1, found.stdout  # grep: 1 means no line matched


# -- passwords in output ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:****@127.0.0.1:6379/0"),
        ("redis://alice:s3cret@host:6379/0", "redis://alice:****@host:6379/0"),
        ("rediss://alice:s3cret@host:6380/0?ssl_cert_reqs=required",
         "rediss://alice:****@host:6380/0?ssl_cert_reqs=required"),
        ("redis://s3cret@host:6379", "redis://****@host:6379"),
        ("redis://:p%40ss@host/0", "redis://:****@host/0"),
        ("redis://:p@ss/word@host/0", "redis://:****@host/0"),
        ("unix://:s3cret@/run/redis.sock?db=1", "unix://:****@/run/redis.sock?db=1"),
        ("redis://host:6379/0?password=s3cret&db=1", "redis://host:6379/0?password=****&db=1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)  # fmt: skip
def test_urls_are_shown_with_their_password_masked(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_redact_hides_a_password_anywhere_in_a_message() -> None:
    url = "rediss://alice:s3cr%2Fet@host:6380/0"
    message = "failed: AUTH alice s3cr/et against rediss://alice:s3cr%2Fet@host:6380/0"
    cleaned = redact(message, url)
    assert "s3cr" not in cleaned and "alice:****@host" in cleaned


def test_a_wrong_password_is_not_repeated_in_the_error(valkey_url: str) -> None:
    wrong = valkey_url.replace("redis://:", "redis://:WrongPassword", 1)
    with pytest.raises(StoreUnavailableError) as caught:
        connect(wrong)
    assert "refused the credentials" in str(caught.value)
    assert "WrongPassword" not in str(caught.value)
    assert "****" in str(caught.value)


@pytest.mark.parametrize("command", [["status"], ["server", "info"]])
def test_status_and_server_info_never_print_the_password(
    command: list[str], valkey_url: str
) -> None:
    bad = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    failed = run_cli(cli_env(REDIS_URL=bad), *command, timeout=120)
    assert failed.returncode == 1
    assert "s3cret" not in failed.stdout + failed.stderr
    assert failed.stderr.strip().count("\n") == 0 and "cannot reach Redis at" in failed.stderr
    assert "redis://:****@127.0.0.1" in failed.stderr

    password = valkey_url.split("@")[0].rsplit(":", 1)[1]
    worked = run_cli(cli_env(REDIS_URL=valkey_url), *command, timeout=120)
    assert worked.returncode == 0, worked.stderr
    assert password not in worked.stdout + worked.stderr
    assert masked_url(valkey_url) in worked.stdout


def test_server_start_and_info_show_the_bundled_server_without_its_password(
    bundled: BundledServer,
) -> None:
    env = cli_env(GAPFILL_DATA_DIR=str(bundled.dir.parent))
    started = run_cli(env, "server", "start", timeout=120)
    info = bundled.info()
    assert started.returncode == 0 and info is not None
    shown = run_cli(env, "server", "info", timeout=120)
    for output in (started, shown):
        assert info.password not in output.stdout + output.stderr
        assert f"redis://:****@127.0.0.1:{info.port}/0" in output.stdout


def test_a_worker_that_cannot_reach_the_store_does_not_print_its_password(
    tmp_path: Path, model_dir: Path
) -> None:
    env = cli_env(REDIS_URL=f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    result = run_cli(env, "worker", "--burst", "--model", str(model_dir), timeout=300)
    assert result.returncode == 1
    assert "s3cret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


# -- docker compose -----------------------------------------------------------------------------


def test_the_compose_redis_wants_a_password_that_every_client_gets() -> None:
    compose = yaml.safe_load((REPOSITORY / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    command = services["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD:?"), "no default: compose refuses to start"
    assert services["redis"]["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    for name in ("worker", "ui"):
        url = services[name]["environment"]["REDIS_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD:?") and url.endswith("@redis:6379/0")
    dashboard = services["dashboard"]
    assert "REDIS_PASSWORD" in dashboard["environment"]["RQ_DASHBOARD_REDIS_URL"]
    assert "redis://" not in " ".join(dashboard["command"]), "argv is shown by ps"
