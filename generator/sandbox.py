"""Running untrusted Python (a candidate's code and the tests it states) with limits, and saying
how it ended. Every ending is a result, never a hung or dead caller: an infinite loop, a fork
bomb, a 10 GB allocation or a socket each come back as a failed run with its reason.

The code runs in a child Python (``-I``: no environment variables, no user site) started by
``sandbox_launch.py``, which gives it, where the machine allows:

- its own network namespace (no interface but a loopback that is down: nothing is reachable)
  and PID namespace (it runs as PID 1: when it ends, everything it started ends too);
- as root, the user nobody, so the process limit holds (root is exempt from it);
- limits on CPU seconds, address space, file size (its output included), open files and
  processes, and a wall-clock limit enforced from here by killing its process group;
- a throw-away working directory, removed afterwards.

A Python audit hook refuses socket use in the child too, so a machine without namespaces still
keeps the code off the network from Python (not from native code: the result says which
isolation the run had).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from generator.errors import ConfigError

LAUNCHER = Path(__file__).with_name("sandbox_launch.py")
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
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
Outcome = Literal["passed", "failed", "timeout", "killed"]


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
        default=1024, ge=64, le=65536, description="Address space, in MiB (RLIMIT_AS)."
    )
    processes: int = Field(
        default=32, ge=1, le=4096, description="Processes it may run at once (RLIMIT_NPROC)."
    )
    output_kb: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="The most KiB it may write to stdout, to stderr or to any one file.",
    )
    python: str | None = Field(
        default=None,
        description="The interpreter the code runs on (default: gapfill's own; as root, the "
        "first of it and the system's python3 that the user nobody can run).",
    )


class SandboxResult(BaseModel):
    """How a run ended: ``passed`` (exit 0), ``failed`` (another exit status), ``timeout``
    (past the wall-clock limit) or ``killed`` (by a signal: the CPU or file-size limit, or a
    crash); the tails of its output; what isolation it had."""

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
    """The Python the code runs on. As root the code runs as nobody, who must be able to reach
    it: gapfill's own often lives under /root (pyenv), so the system's python3 serves."""
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
        "the sandbox runs code as the user nobody when gapfill runs as root, and none of "
        f"{', '.join(str(p) for p in wanted if p)} can be run by nobody: install python3 in "
        "/usr/bin or name one in the sandbox's python setting"
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
    with tempfile.TemporaryDirectory(prefix="gapfill-sandbox-") as root:
        base = Path(root)
        work, logs = base / "work", base / "logs"
        work.mkdir()
        logs.mkdir()
        (work / "main.py").write_text(code, encoding="utf-8")
        (work / "runner.py").write_text(RUNNER, encoding="utf-8")
        if os.geteuid() == 0:  # the code runs as nobody: its directory must be its own
            os.chmod(base, 0o711)
            for path in (work, work / "main.py", work / "runner.py"):
                os.chown(path, NOBODY, NOBODY)
        return _launch(work, logs, limits, python)


def _launch(work: Path, logs: Path, limits: SandboxLimits, python: str) -> SandboxResult:
    read_status, write_status = os.pipe()
    spec = {
        "status_fd": write_status,
        "directory": str(work),
        "python": python,
        "arguments": ["-I", "runner.py"],
        "environment": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"},
        "cpu_seconds": limits.cpu_seconds,
        "memory_bytes": limits.memory_mb * 1024 * 1024,
        "file_bytes": limits.output_kb * 1024,
        "processes": limits.processes,
    }
    started = time.monotonic()
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-I", str(LAUNCHER), json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=(write_status,),
            start_new_session=True,  # its own process group, killed whole on a timeout
            cwd=work,
        )
        os.close(write_status)
        timed_out = _wait(process, limits.wall_seconds)
    seconds = time.monotonic() - started
    with os.fdopen(read_status) as status:
        isolation = json.loads(status.read() or '{"isolation": "unknown"}')["isolation"]
    return _result(process.returncode, timed_out, logs, seconds, isolation, limits)


def _wait(process: subprocess.Popen[bytes], wall_seconds: float) -> bool:
    try:
        process.wait(timeout=wall_seconds)
        return False
    except subprocess.TimeoutExpired:
        # The launcher and the code's PID 1 are in this group; whatever the code started in a
        # session of its own dies with its PID namespace.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def _result(
    code: int,
    timed_out: bool,
    logs: Path,
    seconds: float,
    isolation: str,
    limits: SandboxLimits,
) -> SandboxResult:
    stdout, stderr = _tail(logs / "stdout"), _tail(logs / "stderr")
    outcome: Outcome
    if timed_out:
        outcome, reason = "timeout", f"still running after {limits.wall_seconds:g} s: stopped"
    elif code == 0:
        outcome, reason = "passed", "exited 0"
    elif code > 128 and code - 128 in SIGNALS:
        outcome, reason = "killed", SIGNALS[signal.Signals(code - 128)]
    elif code > 128:
        outcome, reason = "killed", f"killed by signal {code - 128}"
    else:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        outcome, reason = "failed", f"exited {code}" + (f": {last[:300]}" if last else "")
    return SandboxResult(
        outcome=outcome,
        reason=reason,
        exit_code=None if timed_out else code,
        stdout=stdout,
        stderr=stderr,
        seconds=round(seconds, 3),
        isolation=isolation,
    )


def _tail(path: Path) -> str:
    data = path.read_bytes()
    return data[-TAIL:].decode("utf-8", errors="replace")
