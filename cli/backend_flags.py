"""The LLM backend options, declared once: ``gapfill worker`` and ``gapfill generate`` both take
them through :func:`with_backend_flags`, which adds every field of :class:`BackendFlags` to the
command's options and hands the command one ``flags: BackendFlags`` argument.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from cli.choices import Device
from generator.backends import BackendOptions
from generator.errors import ConfigError
from generator.factories import BackendChoice, BackendName

R = TypeVar("R")

# The flag of each BackendOptions field whose flag has another name.
_FLAG_OF_OPTION = {
    "batch_size": "engine_batch",
    "max_concurrency": "concurrency",
    "tensor_parallel_size": "tensor_parallel",
    "gpu_memory_utilization": "gpu_memory",
}


@dataclass(frozen=True)
class BackendFlags:
    """The backend a command loads, as its command-line options (each field is one option)."""

    backend: Annotated[BackendName, typer.Option("--backend", "-b", help="LLM backend.")] = (
        BackendName.LOCAL
    )
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model: a local directory (local, vllm) or a served name (openai).",
        ),
    ] = None
    base_url: Annotated[
        str | None,
        typer.Option(
            envvar="OPENAI_BASE_URL", help="openai: the endpoint, e.g. http://host:8000/v1"
        ),
    ] = None
    api_key: Annotated[str, typer.Option(envvar="OPENAI_API_KEY", help="openai: the API key.")] = (
        "EMPTY"
    )
    engine_batch: Annotated[int, typer.Option(help="local: prompts per forward batch.")] = 8
    device: Annotated[Device, typer.Option(help="local: the device.")] = Device.AUTO
    concurrency: Annotated[int, typer.Option(help="openai: concurrent requests at most.")] = 8
    tensor_parallel: Annotated[int, typer.Option(help="vllm: GPUs per engine.")] = 1
    gpu_memory: Annotated[float, typer.Option(help="vllm: share of GPU memory for the engine.")] = (
        0.9
    )
    max_model_len: Annotated[int | None, typer.Option(help="vllm: context length limit.")] = None
    dtype: Annotated[str, typer.Option(help="vllm: dtype (auto, float32, bfloat16...).")] = "auto"
    enforce_eager: Annotated[bool, typer.Option(help="vllm: skip CUDA graph capture.")] = False
    chunked_prefill: Annotated[
        bool | None,
        typer.Option(
            "--chunked-prefill/--no-chunked-prefill",
            help="vllm: chunked prefill (default: vLLM's; off on its CPU build).",
        ),
    ] = None

    def choice(self) -> BackendChoice:
        """The backend, model and options these flags name; a bad value is one ConfigError."""
        try:
            options = BackendOptions(
                base_url=self.base_url,
                api_key=self.api_key,
                batch_size=self.engine_batch,
                device=self.device.value,
                max_concurrency=self.concurrency,
                tensor_parallel_size=self.tensor_parallel,
                gpu_memory_utilization=self.gpu_memory,
                max_model_len=self.max_model_len,
                dtype=self.dtype,
                enforce_eager=self.enforce_eager,
                chunked_prefill=self.chunked_prefill,
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0])
            flag = _FLAG_OF_OPTION.get(field, field).replace("_", "-")
            raise ConfigError(f"--{flag}: {error['msg']}") from exc
        return BackendChoice(name=self.backend, model=self.model, options=options)


def _flag_parameters() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(BackendFlags, include_extras=True)
    return [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=hints[field.name],
        )
        for field in fields(BackendFlags)
    ]


def with_backend_flags(command: Callable[..., R]) -> Callable[..., R]:
    """Give ``command`` (which takes ``flags: BackendFlags``) every backend option."""
    signature = inspect.signature(command, eval_str=True)
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():  # typer passes every option by keyword
        if parameter.name == "flags":
            parameters.extend(_flag_parameters())
        else:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    names = [field.name for field in fields(BackendFlags)]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        flags = BackendFlags(**{name: kwargs.pop(name) for name in names if name in kwargs})
        return command(*args, flags=flags, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return wrapper
