"""The sandbox's launcher: run as its own script (``python -I sandbox_launch.py SPEC``), never
imported by the sandbox's callers. Standard library only, single-threaded, so nothing in it
runs between fork and exec in a process that also holds threads (a worker does).

As root, in order:

1. new network, PID, IPC and mount namespaces; every mount made private;
2. empty small tmpfs mounts hide ``/tmp``, ``/var/tmp``, ``/dev/shm`` and ``/run`` (where
   local services keep their Unix sockets: a network namespace does not cover those, and a
   database that trusts local connections would take the code's); the code is copied into
   ``/tmp/work``, its working directory;
3. a PID 1 for the namespace that dies with this launcher, mounts its own ``/proc`` (only the
   run's processes are visible) and waits: when it ends, everything the code started ends;
4. in PID 1's child: resource limits, a user id of the run's own (no other run or service
   shares it, so the process limit and file permissions hold), exec of the code's runner.

This launcher keeps the wall-clock limit too, so the code ends even if the caller is killed,
and dies with the caller. It reports on the status pipe, which the code never holds: what
isolation the run had, then how the code ended (an exit status or a signal, never confused).
Not root: a user namespace with network, PID and IPC namespaces where the machine allows one
(no private mounts, the code keeps the caller's user), else no isolation at all; the caller
refuses to run code without it unless told otherwise.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import secrets
import signal
import stat
import sys
import time
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC, MS_PRIVATE = 0x4000, 0x40000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
# Device nodes the code keeps (major, minor): /dev becomes a tmpfs holding only these, so no
# /dev/fuse (a FUSE mount that never answers leaves processes no signal ends) and no tun.
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9)}
# Per IPC namespace, so only the run's: no System V shared memory or message queues (a run
# could otherwise hold gigabytes past its memory limit until its namespace ends).
IPC_LIMITS = {"kernel/shmmni": "0", "kernel/msgmni": "0", "fs/mqueue/queues_max": "0"}
HIDDEN = ("/tmp", "/var/tmp", "/run", "/sys")
RUN_UIDS = (200_000, 260_000)  # sandbox.RUN_UIDS: this script imports nothing of gapfill's
WORK = "/tmp/work"  # the code's working directory, inside its own /tmp
GRACE_S = 2.0  # past the wall-clock limit, for the caller's own kill to come first

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def mount(source: str, target: str, kind: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            kind.encode() if kind else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def isolate_as_root(spec: dict[str, Any]) -> str:
    """Steps 1 and 2, with the working directory set: "namespaces", or why not."""
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC
    if _libc.unshare(flags) != 0:
        return "none"
    directory, uid = spec["directory"], spec["uid"]
    while processes_of(uid):  # a user id no process has: the run's own
        uid = spec["uid"] = RUN_UIDS[0] + secrets.randbelow(RUN_UIDS[1] - RUN_UIDS[0])
    files = {}
    for name in spec["files"]:
        with open(os.path.join(directory, name), "rb") as file:
            files[name] = file.read()
    mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    small = f"size={spec['disk_kb']}k,nr_inodes=4096"
    for hidden in HIDDEN:
        if os.path.isdir(hidden) and not os.path.islink(hidden):
            mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, f"{small},mode=1777")
    minimal_dev(small)
    os.mkdir(WORK, 0o700)  # in the run's own /tmp
    os.chown(WORK, uid, uid)
    for name, content in files.items():
        with open(os.path.join(WORK, name), "wb") as file:
            file.write(content)
        os.chown(os.path.join(WORK, name), uid, uid)
    os.chdir(WORK)
    return "namespaces"


def minimal_dev(size: str) -> None:
    """/dev as a tmpfs of its own: the harmless character devices, the std streams, /dev/shm."""
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, f"{size},mode=0755")
    for name, (major, minor) in DEVICES.items():
        os.mknod(f"/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(f"/dev/{name}", 0o666)
    for index, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{index}", f"/dev/{name}")
    os.symlink("/proc/self/fd", "/dev/fd")
    os.mkdir("/dev/shm", 0o1777)
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=1777")


def isolate_unprivileged(spec: dict[str, Any]) -> str:
    os.chdir(spec["directory"])
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC) == 0:
        return "user namespace"
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


def limit(spec: dict[str, Any], as_root: bool) -> None:
    cpu, memory, files = spec["cpu_seconds"], spec["memory_bytes"], spec["file_bytes"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (files, files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    # RLIMIT_NPROC counts every process of the real user, and root is exempt from it: as root
    # the code gets a user id of its own; otherwise this many beyond what its user runs.
    allowed = spec["processes"] + (0 if as_root else processes_of(os.getuid()))
    resource.setrlimit(resource.RLIMIT_NPROC, (allowed, allowed))
    if as_root:
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])


# -- the seccomp filter (x86_64; elsewhere none, and the result says so) -------------------------

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
CLONE_NEWUSER_FLAG = CLONE_NEWUSER
# Refused with EPERM: new namespaces and mounts (a user namespace gives the code root-like powers
# in namespaces of its own: its own tmpfs past the disk limit, FUSE), kernel keyrings, BPF,
# ptrace, io_uring (syscalls outside this filter's sight), perf and userfaultfd.
DENIED = {
    "ptrace": 101, "pivot_root": 155, "mount": 165, "umount2": 166, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298, "setns": 308,
    "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}  # fmt: skip
CLONE, CLONE3 = 56, 435
EPERM, ENOSYS = 1, 38
RET_ALLOW, RET_ERRNO, RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
LD_W_ABS, JEQ_K, JSET_K, RET_K = 0x20, 0x15, 0x45, 0x06


class SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def seccomp_program() -> SockFprog | None:
    """A classic-BPF seccomp program: another architecture (or the x32 ABI) is killed; the
    DENIED calls, and clone with CLONE_NEWUSER, get EPERM; clone3 gets ENOSYS (its flags are
    in memory a filter cannot read; libc falls back to clone)."""
    if os.uname().machine != "x86_64":
        return None
    ops: list[tuple[int, int, int, int]] = [
        (LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (RET_K, 0, 0, RET_KILL),
        (LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (0x35, 0, 1, X32_SYSCALL_BIT),  # JGE: the x32 ABI
        (RET_K, 0, 0, RET_ERRNO | EPERM),
        (JEQ_K, 0, 1, CLONE3),
        (RET_K, 0, 0, RET_ERRNO | ENOSYS),
    ]
    for number in DENIED.values():
        ops += [(JEQ_K, 0, 1, number), (RET_K, 0, 0, RET_ERRNO | EPERM)]
    ops += [
        (JEQ_K, 0, 3, CLONE),
        (LD_W_ABS, 0, 0, 16),  # args[0], its low 32 bits: the clone flags
        (JSET_K, 0, 1, CLONE_NEWUSER_FLAG),
        (RET_K, 0, 0, RET_ERRNO | EPERM),
        (RET_K, 0, 0, RET_ALLOW),
    ]
    filters = (SockFilter * len(ops))(*(SockFilter(*op) for op in ops))
    program = SockFprog(len(ops), filters)
    program._keep = filters  # alive as long as the program
    return program


def confine() -> None:
    """No new privileges (no setuid binary gives any), then the seccomp filter."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    program = seccomp_program()
    if program is not None:
        _check(
            _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0), "seccomp"
        )


def run_code(spec: dict[str, Any], as_root: bool) -> None:
    """In the child that becomes the code: limits, user, exec. Never returns."""
    try:
        os.close(spec["status_fd"])  # the code never holds the status pipe
        limit(spec, as_root)
        confine()
        os.execve(spec["python"], [spec["python"], *spec["arguments"]], spec["environment"])
    except BaseException as exc:  # never return into the launcher's code
        os.write(2, f"sandbox: could not start the code: {exc}\n".encode())
    os._exit(126)


def ending(status: int) -> dict[str, int]:
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exited": os.WEXITSTATUS(status)}


def reap(spec: dict[str, Any], as_root: bool, status: Any) -> None:
    """PID 1 of the namespace: its own /proc, the code as its child, the code's ending on the
    status pipe. Never returns."""
    die_with_parent()
    if as_root:
        try:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        except OSError as exc:
            os.write(2, f"sandbox: /proc not remounted: {exc}\n".encode())
        for name, value in IPC_LIMITS.items():
            with open(f"/proc/sys/{name}", "w") as setting:
                setting.write(value)
    code = os.fork()
    if code == 0:
        run_code(spec, as_root)
    _, end = os.waitpid(code, 0)
    status.write(json.dumps(ending(end)) + "\n")
    status.flush()
    os._exit(0)


def wait_within(child: int, seconds: float) -> int | None:
    """``child``'s status, or None after ``seconds`` (then it is killed and reaped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, end = os.waitpid(child, os.WNOHANG)
        if done:
            return end
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    return None


def main() -> int:
    die_with_parent()  # a killed caller takes the run with it
    spec = json.loads(sys.argv[1])
    status = os.fdopen(spec["status_fd"], "w")
    as_root = os.geteuid() == 0  # before any namespace: a user namespace hides it
    try:
        isolation = isolate_as_root(spec) if as_root else isolate_unprivileged(spec)
    except OSError as exc:
        status.write(json.dumps({"isolation": "none", "error": str(exc)}) + "\n")
        return 125
    status.write(json.dumps({"isolation": isolation}) + "\n")
    status.flush()
    if isolation != "namespaces" and not spec["allow_unisolated"]:
        return 125  # without private mounts, local services' Unix sockets are in reach
    reaper = os.fork()
    if reaper == 0:
        reap(spec, as_root, status)
    if wait_within(reaper, spec["wall_seconds"] + GRACE_S) is None:
        status.write(json.dumps({"timeout": True}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
