"""The sandbox runs untrusted Python and always comes back with how it ended: the hostile
programs an execution check meets (an endless loop, a fork bomb, a 10 GB allocation, a socket,
a flood of output, a process that hides in a session of its own) each end as a failed run,
never as a hung or dead caller."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from generator.errors import ConfigError
from generator.sandbox import RUN_UIDS, TAIL, SandboxLimits, run_python

FAST = SandboxLimits(wall_seconds=3, cpu_seconds=1, processes=16)


def sandboxed_processes() -> list[str]:
    """Processes under the user ids the sandbox gives runs as root."""
    listing = subprocess.run(["ps", "-e", "-o", "uid=,pid=,cmd="], capture_output=True, text=True)
    return [
        line
        for line in listing.stdout.splitlines()
        if line.split() and RUN_UIDS[0] <= int(line.split()[0]) < RUN_UIDS[1]
    ]


def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the mount namespace and the run's own user id are had as root")


def test_code_whose_tests_hold_passes_and_its_output_is_kept() -> None:
    result = run_python("def double(x):\n    return 2 * x\n\nassert double(4) == 8\nprint('ok')")
    assert (result.outcome, result.exit_code, result.stdout) == ("passed", 0, "ok\n")


def test_a_failing_assertion_fails_with_its_message_as_the_reason() -> None:
    result = run_python("assert sorted([3, 1]) == [3, 1], 'not sorted'", FAST)
    assert result.outcome == "failed"
    assert result.reason == "exited 1; the code's last line on stderr: AssertionError: not sorted"
    assert "main.py" in result.stderr


def test_an_endless_loop_is_stopped_at_the_cpu_limit() -> None:
    started = time.monotonic()
    result = run_python("while True:\n    pass", FAST)
    assert (result.outcome, result.reason) == ("killed", "CPU time limit reached")
    assert time.monotonic() - started < FAST.wall_seconds


def test_a_sleeping_program_is_stopped_at_the_wall_clock_limit() -> None:
    result = run_python("import time\ntime.sleep(60)", SandboxLimits(wall_seconds=1))
    assert result.outcome == "timeout"
    assert result.exit_code is None
    assert 1 <= result.seconds < 5


def test_a_ten_gigabyte_allocation_fails_as_a_memory_error() -> None:
    result = run_python("block = bytearray(10 * 1024**3)", FAST)
    assert result.outcome == "failed"
    assert result.reason.endswith("MemoryError")


def test_a_fork_bomb_ends_and_leaves_no_process_behind() -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = run_python(bomb, FAST)
    assert result.outcome in ("timeout", "killed")
    assert result.seconds < FAST.wall_seconds + 5
    if os.geteuid() == 0:  # the code ran under a user id of its own: none of it is left
        assert sandboxed_processes() == []
    assert subprocess.run(["true"], check=False).returncode == 0  # this process still forks


def test_a_process_in_a_session_of_its_own_ends_with_the_run() -> None:
    hiding = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
        "print('parent done')"
    )
    result = run_python(hiding, FAST)
    assert result.outcome == "passed"
    if result.isolation == "namespaces" and os.geteuid() == 0:
        assert sandboxed_processes() == []


def test_a_socket_is_refused_from_python() -> None:
    code = "import socket\nsocket.create_connection(('127.0.0.1', 6379), timeout=1)"
    result = run_python(code, FAST)
    assert result.outcome == "failed"
    assert "network access is not allowed in the sandbox" in result.reason


def test_native_code_cannot_reach_this_machine_either() -> None:
    """Past the audit hook (ctypes calls libc's connect directly): the network namespace has
    no interface up, so even this machine's own Redis on 127.0.0.1:6379 is out of reach."""
    result = run_python(
        "import ctypes, struct\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.socket(2, 1, 0)\n"
        "address = struct.pack('>HH4s8x', 0, 6379, bytes([127, 0, 0, 1]))\n"
        "address = struct.pack('<H', 2) + address[2:]\n"
        "assert libc.connect(fd, address, 16) == 0, 'reached 127.0.0.1:6379'\n",
        FAST,
    )
    if result.isolation != "namespaces":
        pytest.skip("this machine allows no network namespace: only the audit hook holds")
    assert result.outcome == "failed"
    assert "reached 127.0.0.1:6379" in result.reason


def test_a_flood_of_output_is_cut_at_the_output_limit() -> None:
    result = run_python("while True:\n    print('x' * 1000)", SandboxLimits(output_kb=64))
    assert result.outcome in ("failed", "killed")
    assert "File too large" in result.stderr or "size limit" in result.reason
    assert len(result.stdout) <= TAIL


def test_the_code_cannot_write_into_the_project() -> None:
    as_root()
    target = Path(__file__).parents[1] / "written-by-the-sandbox.txt"
    result = run_python(f"open({str(target)!r}, 'w').write('x')", FAST)
    assert result.outcome == "failed"
    assert "PermissionError" in result.reason
    assert not target.exists()


def run_directories() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("gapfill-sandbox-*"))


def test_what_the_code_writes_anywhere_is_gone_after_the_run() -> None:
    as_root()
    before = run_directories()
    result = run_python(
        "import os\nopen('left.txt', 'w').write('x')\n"
        "for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
        "    open(os.path.join(d, 'gapfill-left-behind'), 'w').write('x')\n"
        "for i in range(1200):\n"  # a tree deeper than a recursive remove can walk
        "    os.mkdir('d'); os.chdir('d')\n"
        "print(os.getcwd()[:9])",
        FAST,
    )
    assert (result.outcome, result.stdout) == ("passed", "/tmp/work\n")
    assert not any(
        Path(d, "gapfill-left-behind").exists() for d in ("/tmp", "/var/tmp", "/dev/shm")
    )
    assert run_directories() <= before, "the run's own directory is removed"


def test_a_local_services_unix_socket_is_out_of_reach(tmp_path: Path) -> None:
    """A network namespace does not cover Unix sockets: a database trusting local connections
    would take the code's. Its own /tmp and /run hide them."""
    as_root()
    path = tmp_path / "service.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    os.chmod(tmp_path, 0o755)
    os.chmod(path, 0o777)
    try:
        result = run_python(
            "import ctypes, struct\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "fd = libc.socket(1, 1, 0)\n"
            f"address = struct.pack('<H', 1) + {str(path).encode()!r}.ljust(108, b'\\0')\n"
            "assert libc.connect(fd, address, len(address)) != 0, 'reached the service'\n"
            "print(sorted(__import__('os').listdir('/run')))",
            FAST,
        )
    finally:
        server.close()
    assert (result.outcome, result.stdout) == ("passed", "[]\n")


def test_the_code_sees_only_its_own_processes() -> None:
    as_root()
    result = run_python("import os\nprint(sorted(p for p in os.listdir('/proc') if p.isdigit()))")
    assert result.stdout == "['1', '2']\n", "its PID 1 and itself"


def test_an_exit_status_above_128_is_not_mistaken_for_a_signal() -> None:
    result = run_python("raise SystemExit(152)", FAST)
    assert (result.outcome, result.reason, result.exit_code) == ("failed", "exited 152", 152)


def test_control_characters_in_the_output_are_dropped() -> None:
    result = run_python("import sys\nsys.stderr.write('\\x1b[31mred\\x00\\n')\nsys.exit(1)")
    assert result.stderr == "[31mred\n"
    assert result.reason == "exited 1; the code's last line on stderr: [31mred"


def test_the_code_ends_when_its_caller_is_killed(tmp_path: Path) -> None:
    as_root()
    before = run_directories()
    caller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from generator.sandbox import run_python, SandboxLimits\n"
            "run_python('import time\\ntime.sleep(60)', SandboxLimits(wall_seconds=50))",
        ],
        cwd=Path(__file__).parents[1],
    )
    deadline = time.monotonic() + 20
    while not sandboxed_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandboxed_processes(), "the code started"
    caller.kill()
    caller.wait()
    deadline = time.monotonic() + 5
    while sandboxed_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandboxed_processes() == []
    for left in run_directories() - before:  # a killed caller removes nothing: its code and logs
        shutil.rmtree(left)


def test_the_environment_does_not_reach_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAPFILL_SECRET_FOR_TEST", "s3cret")
    result = run_python("import os\nprint(os.environ.get('GAPFILL_SECRET_FOR_TEST'))", FAST)
    assert result.stdout == "None\n"


def test_limits_are_checked() -> None:
    with pytest.raises(ValidationError, match="wall_seconds"):
        SandboxLimits(wall_seconds=0)
    with pytest.raises(ValidationError, match="extra"):
        SandboxLimits.model_validate({"cpu": 1})


def test_an_interpreter_nobody_can_run_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only as root does the code run as nobody")
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    python = hidden / "python"
    python.symlink_to("/usr/bin/python3")
    with pytest.raises(ConfigError, match="can be run by such a user"):
        run_python("print(1)", SandboxLimits(python=str(python)))


def test_the_code_cannot_make_namespaces_of_its_own() -> None:
    """A user namespace would give the code root-like powers over namespaces of its own: its
    own tmpfs past the disk limit, or a FUSE mount that never answers, whose waiting processes
    no signal ends. The seccomp filter refuses it (and ptrace), in libc and from a command."""
    as_root()
    result = run_python(
        "import ctypes, subprocess\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n"
        "print(subprocess.run(['unshare', '-Ur', 'true']).returncode)\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')])",
        FAST,
    )
    assert result.stdout == "-1 1\n1\n['1']\n", result.stderr


def test_only_harmless_devices_and_no_shared_memory_segments() -> None:
    as_root()
    result = run_python(
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(sorted(os.listdir('/dev')), os.listdir('/sys'))\n"
        "print(libc.shmget(0, 1 << 20, 0o1600) == -1)",
        FAST,
    )
    assert result.stdout == (
        "['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'urandom', 'zero'] "
        "[]\nTrue\n"
    )


def test_ordinary_code_still_runs_threads_and_processes() -> None:
    result = run_python(
        "import multiprocessing, subprocess, threading\n"
        "seen = []\n"
        "workers = [threading.Thread(target=seen.append, args=(i,)) for i in range(3)]\n"
        "[w.start() for w in workers]; [w.join() for w in workers]\n"
        "if __name__ == '__main__':\n"
        "    with multiprocessing.get_context('fork').Pool(2) as pool:\n"
        "        print(sorted(seen), pool.map(abs, [-1, -2]))\n"
        "    print(subprocess.run(['echo', 'ok'], capture_output=True, text=True).stdout)",
        FAST,
    )
    assert (result.outcome, result.stdout) == ("passed", "[0, 1, 2] [1, 2]\nok\n\n"), result.stderr


def test_bidirectional_and_terminal_controls_are_dropped_from_the_output() -> None:
    result = run_python("print('\\u202eevil\\u2066 \\x9b31m ok')", FAST)
    assert result.stdout == "evil 31m ok\n"
