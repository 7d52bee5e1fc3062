"""LLM backends: the real bundled model through the local backend, and every bad-input path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from generator.backends import Backend, BackendOptions, ChatRequest, create_backend
from generator.errors import BackendError
from generator.generation import parse_instructions
from generator.schema import Message, SamplingParams, instructions_schema


def ask(request_id: str, question: str, **sampling: object) -> ChatRequest:
    return ChatRequest(
        id=request_id,
        messages=[Message(role="user", content=question)],
        sampling=SamplingParams.model_validate(sampling),
    )


def test_the_local_backend_answers_a_batch_in_request_order(local_backend: Backend) -> None:
    requests = [
        ask("long", "Explain in detail how bread is made.", max_tokens=24, seed=1),
        ask("short", "Say hello.", max_tokens=24, seed=1),
        ask("two", "Name a colour.", max_tokens=16, n=2, seed=1),
    ]
    results = local_backend.generate(requests)
    assert [r.request_id for r in results] == ["long", "short", "two"]
    assert [len(r.completions) for r in results] == [1, 1, 2]
    for result in results:
        assert result.prompt_tokens > 5
        assert result.seconds > 0
        for completion in result.completions:
            assert completion.text.strip()
            assert 0 < completion.tokens <= 24
            assert completion.finish_reason in ("stop", "length")
    assert "<|im_end|>" not in results[0].completions[0].text


def test_a_fixed_seed_reproduces_the_output(local_backend: Backend) -> None:
    request = ask("r", "Write a sentence about the sea.", max_tokens=20, temperature=1.0, seed=7)
    first = local_backend.generate([request])[0].completions[0].text
    second = local_backend.generate([request])[0].completions[0].text
    other = local_backend.generate(
        [request.model_copy(update={"sampling": request.sampling.model_copy(update={"seed": 8})})]
    )
    assert first == second
    assert other[0].completions[0].text != first


def test_hitting_max_tokens_is_reported_as_length(local_backend: Backend) -> None:
    [result] = local_backend.generate(
        [ask("r", "Write a long story about a dragon.", max_tokens=3)]
    )
    assert result.completions[0].finish_reason == "length"
    assert result.completions[0].tokens == 3


def test_stop_strings_cut_the_text(local_backend: Backend) -> None:
    [result] = local_backend.generate(
        [
            ask(
                "r",
                "Count from 1 to 10, separated by commas.",
                max_tokens=40,
                temperature=0,
                stop=["5"],
            )
        ]
    )
    text = result.completions[0].text
    assert "5" not in text and "6" not in text


SHOPPING_LIST = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "string"}},
        "urgent": {"type": "boolean"},
    },
    "required": ["items", "urgent"],
    "additionalProperties": False,
}


def test_a_json_schema_holds_every_sampled_answer_to_it(local_backend: Backend) -> None:
    """Hot sampling that left free writes prose; under the schema every answer is valid JSON."""
    question = "What should I buy for a picnic? Answer in JSON."
    constrained = [
        ChatRequest(
            id=f"c{seed}",
            messages=[Message(role="user", content=question)],
            sampling=SamplingParams(temperature=1.2, max_tokens=120, seed=seed),
            json_schema=SHOPPING_LIST,
        )
        for seed in range(4)
    ]
    free = ask("free", question, temperature=1.2, max_tokens=40, seed=0)
    results = local_backend.generate([*constrained, free])
    for result in results[:4]:
        [completion] = result.completions
        data = json.loads(completion.text)  # raises if the schema was not enforced
        assert set(data) == {"items", "urgent"}
        assert 2 <= len(data["items"]) <= 3 and isinstance(data["urgent"], bool)
        assert completion.finish_reason == "stop"
    # The unconstrained request in the same batch was left free.
    free_text = results[4].completions[0].text
    with pytest.raises(json.JSONDecodeError):
        json.loads(free_text)


def test_instruction_tasks_get_parseable_requests_from_the_bundled_model(
    local_backend: Backend,
) -> None:
    """The reason constraints exist: unconstrained, SmolLM2-135M rarely writes this JSON."""
    prompt = (
        "Write 3 new requests a user might send to an email assistant. "
        'Answer only with JSON: {"instructions": ["first request", "second request"]}'
    )
    requests = [
        ChatRequest(
            id=f"r{n}",
            messages=[Message(role="user", content=prompt)],
            sampling=SamplingParams(temperature=0.9, max_tokens=200, n=2, seed=n),
            json_schema=instructions_schema(3),
        )
        for n in range(2)
    ]
    for result in local_backend.generate(requests):
        for completion in result.completions:
            parsed = parse_instructions(completion.text)
            assert parsed is not None and len(parsed) == 3
            assert all(10 <= len(text) <= 300 for text in parsed)


def test_unknown_backends_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        BackendError, match="unknown backend 'gpt'; expected one of: local, openai, vllm"
    ):
        create_backend("gpt", None, BackendOptions(), data_dir=tmp_path)


def test_a_missing_model_directory_is_one_clear_error(tmp_path: Path) -> None:
    backend = create_backend("local", str(tmp_path / "nope"), BackendOptions(), data_dir=tmp_path)
    with pytest.raises(BackendError, match="no such directory"):
        backend.load()


def test_a_model_directory_without_a_tokenizer_is_refused(tmp_path: Path, model_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(model_dir / "config.json", broken)
    backend = create_backend("local", str(broken), BackendOptions(), data_dir=tmp_path)
    with pytest.raises(BackendError, match="has no tokenizer"):
        backend.load()


def test_the_vllm_backend_without_vllm_says_how_to_install_it(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        backend = create_backend("vllm", None, BackendOptions(), data_dir=tmp_path)
        with pytest.raises(BackendError, match=r"gapfill\[vllm\]"):
            backend.load()
    else:  # pragma: no cover - this env has vLLM
        pytest.skip("vLLM is installed here")


def test_an_unreachable_openai_endpoint_is_one_clear_error() -> None:
    options = BackendOptions(base_url="http://127.0.0.1:1/v1", max_retries=0, timeout_s=2)
    backend = create_backend("openai", "m", options, data_dir=Path("."))
    with pytest.raises(BackendError, match="cannot reach the OpenAI-compatible endpoint"):
        backend.load()


def test_the_openai_backend_needs_a_url() -> None:
    with pytest.raises(BackendError, match="needs a base URL"):
        create_backend("openai", "m", BackendOptions(), data_dir=Path("."))


@pytest.mark.parametrize(
    "sampling",
    [{"temperature": 3}, {"top_p": 0}, {"max_tokens": 0}, {"n": 100}, {"seed": "x"}],
)
def test_sampling_out_of_range_is_refused_before_any_backend_call(
    sampling: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        ask("r", "q", **sampling)
