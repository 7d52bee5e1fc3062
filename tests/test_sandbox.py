"""The sandbox runs untrusted Python and always comes back with how it ended: the hostile
programs an execution check meets (an endless loop, a fork bomb, a 10 GB allocation, a socket,
a flood of output, a process that hides in a session of its own) each end as a failed run,
never as a hung or dead caller."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from generator.errors import ConfigError
from generator.sandbox import TAIL, SandboxLimits, run_python

FAST = SandboxLimits(wall_seconds=3, cpu_seconds=1, processes=16)


def nobody_processes() -> list[str]:
    listing = subprocess.run(
        ["ps", "-u", "nobody", "-o", "pid=,cmd="], capture_output=True, text=True, check=False
    )
    return [line for line in listing.stdout.splitlines() if line.strip()]


def test_code_whose_tests_hold_passes_and_its_output_is_kept() -> None:
    result = run_python("def double(x):\n    return 2 * x\n\nassert double(4) == 8\nprint('ok')")
    assert (result.outcome, result.exit_code, result.stdout) == ("passed", 0, "ok\n")


def test_a_failing_assertion_fails_with_its_message_as_the_reason() -> None:
    result = run_python("assert sorted([3, 1]) == [3, 1], 'not sorted'", FAST)
    assert result.outcome == "failed"
    assert result.reason == "exited 1: AssertionError: not sorted"
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
    if os.geteuid() == 0:  # the code ran as nobody: none of its processes is left
        assert nobody_processes() == []
    assert subprocess.run(["true"], check=False).returncode == 0  # this process still forks


def test_a_process_in_a_session_of_its_own_ends_with_the_run() -> None:
    hiding = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
        "print('parent done')"
    )
    result = run_python(hiding, FAST)
    assert result.outcome == "passed"
    if result.isolation == "namespaces" and os.geteuid() == 0:
        assert nobody_processes() == []


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


def test_the_code_cannot_write_into_the_project(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only as root does the code run as another user (nobody)")
    target = tmp_path / "written.txt"
    os.chmod(tmp_path, 0o755)
    result = run_python(f"open({str(target)!r}, 'w').write('x')", FAST)
    assert result.outcome == "failed"
    assert "PermissionError" in result.reason
    assert not target.exists()


def test_the_code_runs_in_a_throw_away_directory_removed_afterwards() -> None:
    result = run_python("import os\nopen('left.txt', 'w').write('x')\nprint(os.getcwd())", FAST)
    assert result.outcome == "passed"
    assert not Path(result.stdout.strip()).exists()


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
    with pytest.raises(ConfigError, match="can be run by nobody"):
        run_python("print(1)", SandboxLimits(python=str(python)))
