"""The bundled Valkey server: started on demand, reused, durable across kill -9."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from generator.config import Settings
from generator.connection import connect, eviction_warning, store_client
from generator.errors import StoreMovedError, StoreUnavailableError
from generator.redis_server import BundledServer
from generator.schema import CandidateStatus
from generator.store import Store
from tests.factories import candidate


def test_the_server_starts_once_and_is_reused(tmp_path: Path) -> None:
    server = BundledServer(tmp_path)
    try:
        first = server.ensure_running()
        second = BundledServer(tmp_path).ensure_running()
        assert second.pid == first.pid and second.port == first.port
        client = connect(first.url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "always"
        assert eviction_warning(client) is None
        assert (tmp_path / "valkey" / "server.json").exists()
    finally:
        assert server.stop() is True
    assert server.info() is None
    assert server.stop() is False


def test_a_stale_state_file_is_ignored(tmp_path: Path) -> None:
    server = BundledServer(tmp_path)
    info = server.ensure_running()
    os.kill(info.pid, signal.SIGKILL)
    _wait_dead(info.pid)
    assert server.info() is None
    restarted = server.ensure_running()
    try:
        assert restarted.pid != info.pid
    finally:
        server.stop()


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if finished:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not die")


@pytest.mark.parametrize("decisions", [37])
def test_no_decision_is_lost_when_the_server_is_killed(tmp_path: Path, decisions: int) -> None:
    server = BundledServer(tmp_path, appendfsync="always")
    info = server.ensure_running()
    store = Store(connect(info.url), prefix="durable")
    store.put_many(candidate(i) for i in range(60))
    made = []
    for _ in range(decisions):
        lease = store.claim("alice", "run-1")
        assert lease is not None
        store.decide(lease.item_id, "alice", "accept", lease.version)
        made.append(lease.item_id)
    os.kill(info.pid, signal.SIGKILL)  # no shutdown, no final fsync
    _wait_dead(info.pid)
    store.redis.close()

    restarted = server.ensure_running()
    try:
        assert restarted.pid != info.pid
        after = Store(connect(restarted.url), prefix="durable")
        assert [d.decision.item_id for d in after.decisions("run-1")] == made
        assert after.count("run-1", after.get(made[0]).status) == decisions
        assert after.counts("run-1") == {
            "gap-a": {"accepted": decisions, "pending": 60 - decisions}
        }
        assert all(after.get(item_id).status.value == "accepted" for item_id in made)
        assert after.queue_depth("run-1") + after.leased_count("run-1") == 60 - decisions
    finally:
        server.stop()


def test_a_kill_during_scoring_and_review_loses_no_decision_and_the_run_completes(
    tmp_path: Path,
) -> None:
    server = BundledServer(tmp_path, appendfsync="always")
    info = server.ensure_running()
    store = Store(connect(info.url), prefix="durable")
    items = [candidate(i, status=CandidateStatus.GENERATED) for i in range(300)]
    store.put_many(items)
    decided: list[str] = []
    routed: list[str] = []

    def score() -> None:  # a scoring worker routing its batch into the queue
        own = Store(connect(info.url), prefix="durable")
        for item in items:
            try:
                own.route(item.id, CandidateStatus.PENDING, priority=1.0)
            except Exception:  # the server is gone: this worker dies too
                return
            routed.append(item.id)
            time.sleep(0.002)

    def review() -> None:  # a reviewer accepting whatever comes up
        own = Store(connect(info.url), prefix="durable")
        while True:
            try:
                lease = own.claim("alice", "run-1")
                if lease is None:
                    time.sleep(0.002)
                    continue
                own.decide(lease.item_id, "alice", "accept", lease.version)
            except Exception:
                return
            decided.append(lease.item_id)

    workers = [threading.Thread(target=score), threading.Thread(target=review)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    while len(decided) < 30 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(info.pid, signal.SIGKILL)  # mid-flight: both clients are in the middle of commands
    _wait_dead(info.pid)
    for worker in workers:
        worker.join(timeout=60)
    assert 30 <= len(decided) < 300, "the kill came while review was under way"

    restarted = server.ensure_running()
    try:
        after = Store(connect(restarted.url), prefix="durable")
        logged = [d.decision.item_id for d in after.decisions("run-1")]
        assert logged[: len(decided)] == decided, "every acknowledged decision survived, in order"
        assert all(after.get(i).status is CandidateStatus.ACCEPTED for i in decided)
        assert all(after.get(i).status is not CandidateStatus.GENERATED for i in routed)
        # The run completes: scoring finishes its batch, review empties the queue.
        for item in items:
            if after.get(item.id).status is CandidateStatus.GENERATED:
                after.route(item.id, CandidateStatus.PENDING, priority=1.0)
        while (lease := after.claim("bob", "run-1", lease_seconds=30)) is not None:
            after.decide(lease.item_id, "bob", "accept", lease.version)
        counts = after.counts("run-1")["gap-a"]
        accepted, leased = counts.get("accepted", 0), after.leased_count("run-1")
        assert accepted + leased == 300, counts
        assert leased <= 1, "at most the item alice held when the server died"
    finally:
        server.stop()


def test_an_evicting_server_is_reported(tmp_path: Path) -> None:
    server = BundledServer(tmp_path)
    info = server.ensure_running()
    try:
        client = connect(info.url)
        client.config_set("maxmemory-policy", "allkeys-lru")
        warning = eviction_warning(client)
        assert warning is not None and "allkeys-lru" in warning and "EVICT" in warning
    finally:
        server.stop()


def test_an_unreachable_server_is_one_clear_error() -> None:
    from generator.errors import StoreUnavailableError

    with pytest.raises(
        StoreUnavailableError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1"
    ):
        connect("redis://127.0.0.1:1/0")


def test_connect_returns_bytes_clients_for_rq(valkey_url: str) -> None:
    client = connect(valkey_url, decode_responses=False)
    client.set("gapfill-test-bytes", "x")
    try:
        assert client.get("gapfill-test-bytes") == b"x"
    finally:
        client.delete("gapfill-test-bytes")
    assert isinstance(client, redis.Redis)


def test_a_client_of_the_bundled_server_outlives_its_restart(tmp_path: Path) -> None:
    """The address stays (same port) and the password changes; a client made by store_client
    reads the new one from server.json when it reconnects."""
    settings = Settings(data_dir=tmp_path)
    server = BundledServer(tmp_path)
    try:
        client = store_client(settings)
        store = Store(client, prefix="restart")
        store.put(candidate(1))
        first = server.info()
        assert first is not None
        server.stop()
        with pytest.raises(StoreUnavailableError, match="not running"):
            store_client(settings, start=False)  # a UI or worker never starts it back
        with pytest.raises(redis.ConnectionError):
            client.ping()
        second = server.ensure_running()
        assert second.port == first.port and second.password != first.password
        assert store.get(candidate(1).id).id == candidate(1).id, "the same client, reconnected"
        assert store_client(settings, start=False).ping()
    finally:
        server.stop()


def test_a_process_that_takes_the_old_port_never_gets_the_password(tmp_path: Path) -> None:
    """Another local user binds the port while the server is down: the server comes back on
    another port, and a client that reconnects to the old one hands the squatter nothing."""
    import socket

    settings = Settings(data_dir=tmp_path)
    server = BundledServer(tmp_path)
    client = store_client(settings)
    first = server.info()
    assert first is not None
    server.stop()
    heard = bytearray()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", first.port))
        squatter.listen()
        squatter.settimeout(5)
        second = server.ensure_running()
        try:
            assert second.port != first.port, "the old port was taken: another one"

            def listen() -> None:
                with contextlib.suppress(OSError):
                    connection, _ = squatter.accept()
                    connection.settimeout(2)
                    with connection, contextlib.suppress(OSError):
                        heard.extend(connection.recv(4096))

            thread = threading.Thread(target=listen)
            thread.start()
            with pytest.raises(StoreMovedError, match="no longer at"):
                client.ping()
            thread.join()
            assert second.password.encode() not in heard and first.password.encode() not in heard
            assert store_client(settings, start=False).ping(), "a new client finds the new port"
        finally:
            server.stop()
