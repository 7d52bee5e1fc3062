"""Small builders for test data, and the one way tests run the gapfill command (`run_cli`, in
the environment `cli_env` builds)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    Message,
    PreferenceExample,
    SFTExample,
)

if TYPE_CHECKING:
    from generator.store import Store


def sft(question: str, answer: str = "An answer.") -> SFTExample:
    return SFTExample(
        messages=[Message(role="user", content=question), Message(role="assistant", content=answer)]
    )


def pair(prompt: str, chosen: str, rejected: str) -> PreferenceExample:
    return PreferenceExample(
        prompt=[Message(role="user", content=prompt)],
        chosen=[Message(role="assistant", content=chosen)],
        rejected=[Message(role="assistant", content=rejected)],
    )


def wrap(example: SFTExample | PreferenceExample, index: int = 0, gap: str = "none") -> Candidate:
    """An unstored candidate around an example, as a filter sees it."""
    kind = CandidateKind.PREFERENCE if isinstance(example, PreferenceExample) else CandidateKind.SFT
    return Candidate(id=f"c{index}", kind=kind, payload=example, run_id="r", gap_id=gap)


def candidate(
    index: int,
    *,
    run: str = "run-1",
    gap: str = "gap-a",
    status: CandidateStatus = CandidateStatus.PENDING,
    priority: float = 0.0,
) -> Candidate:
    return Candidate(
        kind=CandidateKind.SFT,
        payload=sft(f"Question number {index}?", f"Answer number {index}."),
        run_id=run,
        gap_id=gap,
        status=status,
        priority=priority,
    )


def preference(index: int, *, run: str = "run-1") -> Candidate:
    return Candidate(
        kind=CandidateKind.PREFERENCE,
        payload=PreferenceExample(
            prompt=[Message(role="user", content=f"Prompt {index}")],
            chosen=[Message(role="assistant", content="good")],
            rejected=[Message(role="assistant", content="bad")],
        ),
        run_id=run,
        gap_id="gap-p",
        status=CandidateStatus.PENDING,
    )


def store_url(store: Store) -> str:
    """The URL of the server a store's client talks to, with its credentials."""
    kwargs = store.redis.get_connection_kwargs()
    user, password = kwargs.get("username") or "", kwargs.get("password")
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}@" if password else ""
    return f"redis://{credentials}{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def cli_env(store: Store | None = None, url: str | None = None, /, **extra: str) -> dict[str, str]:
    """This process's environment for `gapfill`, 200 columns wide, on the store's server (at
    `url` when given) and key prefix, then `extra` on top."""
    env = {**os.environ, "COLUMNS": "200"}
    if store is not None:
        env["GAPFILL_REDIS_URL"] = url or store_url(store)
        env["GAPFILL_KEY_PREFIX"] = store.keys.prefix
    elif url is not None:
        env["GAPFILL_REDIS_URL"] = url
    return {**env, **extra}


def run_cli(
    env: dict[str, str], *args: str, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """`gapfill ARGS` as a separate process, with exactly this environment."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def serving_ui(
    env: dict[str, str], port: int, *flags: str, cwd: Path | None = None
) -> Iterator[str]:
    """`gapfill ui --port PORT FLAGS` running until the block ends; yields its address once its
    health check answers. Stopped with its whole session (gapfill ui and what it started)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "ui", "--port", str(port), *flags],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError("gapfill ui did not start") from None
            time.sleep(0.3)
    try:
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


TOOLS_DATA = Path(__file__).parent / "fixtures" / "tools"
CHATML_TOOLS = Path(__file__).parent.parent / "examples" / "tools" / "chatml_tools.jinja"


def tool_conversations() -> list[SFTExample]:
    """The hand-written tool-calling conversations of tests/fixtures/tools (TRL layout)."""
    from generator.dataset_reader import load_examples

    return [e for e in load_examples(TOOLS_DATA / "trl_tools.jsonl") if isinstance(e, SFTExample)]


def tool_tokenizer(model_dir: Path, out: Path) -> Path:
    """The bundled model's tokenizer saved with the ChatML-with-tools template of examples/
    (SmolLM2's own template drops tool calls)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.chat_template = CHATML_TOOLS.read_text(encoding="utf-8")
    tokenizer.save_pretrained(str(out))
    return out
