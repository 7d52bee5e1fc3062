"""The sandbox's launcher: run as its own script (``python -I sandbox_launch.py SPEC``), never
imported by the sandbox's callers. Standard library only, single-threaded, so nothing in it
runs between fork and exec in a process that also holds threads (a worker does).

In order: new network and PID namespaces (as root; otherwise inside a new user namespace, where
the machine allows one); a PID 1 for that namespace that dies with the launcher (when it ends,
the kernel kills everything the code started); then, in PID 1's child, resource limits, an
unprivileged user (as root, so that the process limit holds), the throw-away directory, and
exec of the code's runner. What isolation was had is written to the status pipe before the
code runs, so the code cannot forge it.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
NOBODY = 65534


def _unshare(flags: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.unshare(flags) == 0)


def isolate() -> str:
    """The namespaces had: "namespaces" (network and PID), or "none"."""
    if os.geteuid() == 0 and _unshare(CLONE_NEWNET | CLONE_NEWPID):
        return "namespaces"
    if _unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID):
        return "namespaces"
    return "none"


def processes_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                continue
    return count


def limit(spec: dict[str, Any], drop_to_nobody: bool) -> None:
    cpu, memory = spec["cpu_seconds"], spec["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (spec["file_bytes"], spec["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    # RLIMIT_NPROC counts every process of the real user, and root is exempt from it: the code
    # runs as nobody when we are root, else gets this many beyond what its user already runs.
    uid = NOBODY if drop_to_nobody else os.getuid()
    allowed = spec["processes"] + (0 if drop_to_nobody else processes_of(uid))
    resource.setrlimit(resource.RLIMIT_NPROC, (allowed, allowed))
    if drop_to_nobody:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


def status_of(child: int) -> int:
    """``child``'s end as an exit status, a signal as 128 + its number (as a shell says)."""
    _, code = os.waitpid(child, 0)
    if os.WIFSIGNALED(code):
        return 128 + os.WTERMSIG(code)
    return os.WEXITSTATUS(code)


def run_code(spec: dict[str, Any], drop_to_nobody: bool) -> None:
    """In the child that becomes the code: limits, user, directory, exec. Never returns."""
    try:
        limit(spec, drop_to_nobody)
        os.chdir(spec["directory"])
        os.execve(spec["python"], [spec["python"], *spec["arguments"]], spec["environment"])
    except BaseException as exc:  # never return into the launcher's code
        os.write(2, f"sandbox: could not start the code: {exc}\n".encode())
    os._exit(126)


def main() -> int:
    spec = json.loads(sys.argv[1])
    status = os.fdopen(spec["status_fd"], "w")
    isolation = isolate()
    status.write(json.dumps({"isolation": isolation}))
    status.close()
    drop = os.geteuid() == 0
    # The first child is PID 1 of the new namespace: it only waits. The code runs as its child,
    # so the kernel's signals reach it as usual (a namespace's PID 1 ignores those it has no
    # handler for, SIGXCPU at the CPU limit included), and when PID 1 ends, with the code or
    # with this launcher, everything left in the namespace is killed.
    reaper = os.fork()
    if reaper == 0:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        code = os.fork()
        if code == 0:
            run_code(spec, drop)
        os._exit(status_of(code))
    return status_of(reaper)


if __name__ == "__main__":
    sys.exit(main())
