"""LLM backends behind one Protocol: ``local`` (bundled CPU model), ``openai``, ``vllm``."""

from __future__ import annotations

from pathlib import Path

from generator.backends.base import (
    Backend,
    BackendOptions,
    ChatRequest,
    ChatResult,
    Completion,
)
from generator.errors import BackendError

BACKENDS = ("local", "openai", "vllm")

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendOptions",
    "ChatRequest",
    "ChatResult",
    "Completion",
    "create_backend",
]


def create_backend(
    name: str, model: str | None, options: BackendOptions, *, data_dir: Path
) -> Backend:
    """A backend by name, not yet loaded. Unknown names and bad options fail here, cheaply."""
    if name == "local":
        from generator.backends.local import LocalBackend

        return LocalBackend(model, options, data_dir=data_dir)
    if name == "openai":
        from generator.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(model, options)
    if name == "vllm":
        from generator.backends.vllm_engine import VLLMBackend

        return VLLMBackend(model, options, data_dir=data_dir)
    raise BackendError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
