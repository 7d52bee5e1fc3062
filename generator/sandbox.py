"""Running untrusted Python (a candidate's code and the tests it states) with limits, and saying
how it ended. Every ending is a result, never a hung or dead caller: an infinite loop, a fork
bomb, a 10 GB allocation or a socket each come back as a failed run with its reason.

The code runs in a child Python (``-I``: no environment variables, no user site) started by
``sandbox_launch.py`` (its docstring has the steps). As root, the code gets:

- its own network namespace (no interface up: nothing is reachable, not even this host's own
  ports), PID namespace (everything it starts ends with it; its ``/proc`` shows only its own
  processes), IPC namespace (no shared memory outlives it) and mount namespace, where its
  working directory is a small tmpfs of its own and ``/tmp``, ``/var/tmp``, ``/dev/shm`` and
  ``/run`` are empty small tmpfs mounts (so no local service's Unix socket is reachable, and
  nothing it writes survives the run);
- a user id of the run's own, so the process limit holds (root is exempt from it), no file of
  root's or of another run's is writable, and no other process is the code's to signal;
- limits on CPU seconds, address space (per process), file size (its output included),
  open files and processes, and a wall-clock limit kept both here and by the launcher.

Not root, it gets a user namespace with network, PID and IPC namespaces where the machine allows
one, and keeps the caller's user; where none is allowed the code is refused unless
``allow_unisolated``. A Python audit hook refuses sockets in every case. The result says which
isolation the run had.

What no sandbox here decides: whether the code's tests mean anything. Code that calls
``os._exit(0)`` before its tests passes; the reviewer sees the code.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from generator.errors import ConfigError

LAUNCHER = Path(__file__).with_name("sandbox_launch.py")
SYSTEM_PYTHON = "/usr/bin/python3"
RUN_UIDS = (200_000, 260_000)  # as root, each run's code gets a user id of its own in this range
# Run first in the child: no socket from Python, then the code as __main__.
RUNNER = """\
import runpy, sys

def _no_network(event, args):
    if event in ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo"):
        raise PermissionError("network access is not allowed in the sandbox")

sys.addaudithook(_no_network)
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""
Outcome = Literal["passed", "failed", "timeout", "killed", "refused"]
KEPT = {"\n", "\t"}


class SandboxLimits(BaseModel):
    """How much one run may take."""

    model_config = ConfigDict(extra="forbid")

    wall_seconds: float = Field(
        default=10.0, gt=0, le=600, description="Wall-clock seconds before the run is stopped."
    )
    cpu_seconds: int = Field(
        default=5, gt=0, le=600, description="CPU seconds before the kernel stops it (SIGXCPU)."
    )
    memory_mb: int = Field(
        default=512, ge=64, le=65536, description="Address space of each process, in MiB."
    )
    processes: int = Field(
        default=8, ge=1, le=4096, description="Processes it may run at once (RLIMIT_NPROC)."
    )
    output_kb: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="The most KiB it may write to stdout, to stderr or to any one file.",
    )
    disk_mb: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="As root: the size of its working directory and of each of its /tmp, "
        "/var/tmp, /dev/shm and /run (each a tmpfs of its own).",
    )
    allow_unisolated: bool = Field(
        default=False,
        description="Run the code even without the full isolation only root can give it "
        "(refused otherwise: without private mounts, local services' Unix sockets are in reach).",
    )
    python: str | None = Field(
        default=None,
        description="The interpreter the code runs on (default: gapfill's own; as root, the "
        "first of it and the system's python3 that a user with no rights here can run).",
    )


class SandboxResult(BaseModel):
    """How a run ended: ``passed`` (exit 0), ``failed`` (another exit status), ``timeout``
    (past the wall-clock limit), ``killed`` (by a signal: the CPU or file-size limit, or a
    crash) or ``refused`` (no isolation to run it in); the tails of its output, control
    characters removed; what isolation it had."""

    outcome: Outcome
    reason: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    isolation: str

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


SIGNALS = {
    signal.SIGXCPU: "CPU time limit reached",
    signal.SIGXFSZ: "file or output size limit reached",
    signal.SIGKILL: "killed (memory, process or time limit)",
    signal.SIGSEGV: "crashed (segmentation fault)",
}
TAIL = 4000  # characters of stdout and of stderr kept as evidence


def interpreter(limits: SandboxLimits) -> str:
    """The Python the code runs on. As root the code runs under a user id with no rights here,
    which must be able to reach it: gapfill's own often lives under /root (pyenv), so the
    system's python3 serves."""
    if os.geteuid() != 0:
        return limits.python or sys.executable
    wanted = (
        [limits.python]
        if limits.python
        else [sys.executable, shutil.which("python3"), SYSTEM_PYTHON]
    )
    for path in wanted:
        if path and _others_can_run(Path(path)):
            return path
    raise ConfigError(
        "the sandbox runs code under a user id with no rights here when gapfill runs as root, "
        f"and none of {', '.join(str(p) for p in wanted if p)} can be run by such a user: "
        "install python3 in /usr/bin or name one in the sandbox's python setting"
    )


def _others_can_run(path: Path) -> bool:
    """Whether a user with no rights here can execute ``path``: every directory on the way to
    it (the link's and the target's) searchable by others, the file executable by them."""
    given, real = Path(os.path.abspath(path)), path.resolve()
    if not real.is_file() or not real.stat().st_mode & 0o001:
        return False
    folders = {*given.parents, *real.parents}
    return all(folder.stat().st_mode & 0o001 for folder in folders)


def run_python(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` as a script in the sandbox and say how it ended."""
    limits = limits or SandboxLimits()
    python = interpreter(limits)
    base = Path(tempfile.mkdtemp(prefix="gapfill-sandbox-"))
    try:
        work, logs = base / "work", base / "logs"
        work.mkdir()
        logs.mkdir()
        (work / "main.py").write_text(code, encoding="utf-8")
        return _launch(work, logs, limits, python)
    finally:
        _remove(base)


def _remove(base: Path) -> None:
    """Never raises: as root the code wrote only to its own tmpfs, gone with its namespace;
    otherwise it may have left a tree too deep for shutil (recursive) to walk."""
    try:
        shutil.rmtree(base)
    except (OSError, RecursionError):
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def _spec(work: Path, limits: SandboxLimits, python: str, status_fd: int) -> dict[str, Any]:
    return {
        "status_fd": status_fd,
        "directory": str(work),
        "files": ["main.py"],
        "uid": secrets.randbelow(RUN_UIDS[1] - RUN_UIDS[0]) + RUN_UIDS[0],
        "python": python,
        # The runner as -c: a script path would be made absolute through a /tmp that the
        # code's mount namespace hides; "main.py" opens relative to its working directory.
        "arguments": ["-I", "-c", RUNNER],
        "environment": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"},
        "wall_seconds": limits.wall_seconds,
        "cpu_seconds": limits.cpu_seconds,
        "memory_bytes": limits.memory_mb * 1024 * 1024,
        "file_bytes": limits.output_kb * 1024,
        "disk_kb": limits.disk_mb * 1024,
        "processes": limits.processes,
        "allow_unisolated": limits.allow_unisolated,
    }


def _launch(work: Path, logs: Path, limits: SandboxLimits, python: str) -> SandboxResult:
    read_status, write_status = os.pipe()
    started = time.monotonic()
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    str(LAUNCHER),
                    json.dumps(_spec(work, limits, python, write_status)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(write_status,),
                start_new_session=True,  # its own process group, killed whole on a timeout
                cwd=work,
            )
        finally:
            os.close(write_status)
        timed_out = _wait(process, limits.wall_seconds)
    seconds = time.monotonic() - started
    with os.fdopen(read_status) as status:
        reports = [json.loads(line) for line in status.read().splitlines() if line.strip()]
    return _result(reports, timed_out, logs, seconds, limits)


def _wait(process: subprocess.Popen[bytes], wall_seconds: float) -> bool:
    """Whether the run had to be stopped. The launcher's group is killed on a timeout and on
    anything that interrupts this wait (the launcher would stop it too, a moment later)."""
    try:
        process.wait(timeout=wall_seconds)
        return False
    except subprocess.TimeoutExpired:
        return True
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _result(
    reports: list[dict[str, Any]],
    timed_out: bool,
    logs: Path,
    seconds: float,
    limits: SandboxLimits,
) -> SandboxResult:
    found: dict[str, Any] = {}
    for report in reports:
        found |= report
    isolation = str(found.get("isolation", "unknown"))
    stdout, stderr = _tail(logs / "stdout"), _tail(logs / "stderr")
    outcome, reason, code = _ending(found, timed_out, isolation, stderr, limits)
    return SandboxResult(
        outcome=outcome,
        reason=reason,
        exit_code=code,
        stdout=stdout,
        stderr=stderr,
        seconds=round(seconds, 3),
        isolation=isolation,
    )


def _ending(
    found: dict[str, Any], timed_out: bool, isolation: str, stderr: str, limits: SandboxLimits
) -> tuple[Outcome, str, int | None]:
    if timed_out or found.get("timeout"):  # whatever it said before it had to be stopped
        return "timeout", f"still running after {limits.wall_seconds:g} s: stopped", None
    if "exited" in found:
        code = int(found["exited"])
        if code == 0:
            return "passed", "exited 0", 0
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        said = f"; the code's last line on stderr: {last[:300]}" if last else ""
        return "failed", f"exited {code}{said}", code
    if "signal" in found:
        number = int(found["signal"])
        known = SIGNALS.get(signal.Signals(number)) if number in signal.valid_signals() else None
        return "killed", known or f"killed by signal {number}", None
    if isolation != "namespaces":
        why = found.get("error") or f"isolation here: {isolation}"
        return "refused", f"not run: no full isolation ({why}); see allow_unisolated", None
    return "failed", "the sandbox reported no ending", None


def _tail(path: Path) -> str:
    """The end of an output, without control or format characters (terminal escapes, C1
    controls, bidirectional overrides): it is shown to reviewers as the code's words."""
    text = path.read_bytes()[-TAIL:].decode("utf-8", errors="replace")
    return "".join(c for c in text if c in KEPT or unicodedata.category(c) not in ("Cc", "Cf"))
