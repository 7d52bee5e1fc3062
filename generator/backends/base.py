"""What every LLM backend takes and returns, and the Protocol they share."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from generator.schema import Message, SamplingParams

FinishReason = Literal["stop", "length", "error"]


class ChatRequest(BaseModel):
    """One prompt for a backend: chat messages, sampling, and optionally a JSON schema to follow."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The caller's id, echoed on the result.")
    messages: list[Message] = Field(min_length=1)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    json_schema: dict[str, Any] | None = Field(
        default=None, description="Constrain the output to this JSON schema where supported."
    )


class Completion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    finish_reason: FinishReason
    tokens: int = Field(ge=0)


class ChatResult(BaseModel):
    """The ``sampling.n`` completions of one request, with token counts and timing."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    completions: list[Completion]
    prompt_tokens: int = Field(ge=0)
    seconds: float = Field(ge=0, description="Wall time of the backend call that served it.")
    error: str | None = Field(
        default=None, description="Why this request got no output (the rest of the batch did)."
    )

    @property
    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.completions)


class BackendOptions(BaseModel):
    """Engine and client options; each backend reads the ones that apply to it."""

    model_config = ConfigDict(extra="forbid")

    # openai
    base_url: str | None = None
    api_key: str = "EMPTY"
    max_concurrency: int = Field(default=8, ge=1, le=512)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)
    # local
    batch_size: int = Field(default=8, ge=1, le=512)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # vllm
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_model_len: int | None = Field(default=None, ge=64)
    dtype: str = "auto"
    enforce_eager: bool = False
    chunked_prefill: bool | None = Field(
        default=None,
        description="vllm: chunked prefill; None = vLLM's default, except off on vLLM's CPU "
        "build, whose engine dies on seeded requests whose prompt is chunked (seen in 0.32).",
    )


@runtime_checkable
class Backend(Protocol):
    """An LLM that turns a batch of chat requests into completions.

    ``load()`` acquires the heavy handle (weights, engine, HTTP client) once; ``generate()`` takes
    the whole batch in one call so engines with continuous batching can use it.
    """

    name: str
    model: str

    def load(self) -> None: ...

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]: ...

    def close(self) -> None: ...
