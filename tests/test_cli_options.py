"""Every option a command declares reaches its effect.

Two checks: statically, every parameter of every command is read by the command's body (the
backend flags by ``BackendFlags.choice``); and for the backend flags of ``worker`` and
``generate``, each one set to a non-default value on a real command line arrives in the backend
choice the worker loads. ``generate --chunked-prefill`` was once accepted and dropped: both fail
on that.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Annotated, Any

import pytest
import typer
from typer.models import OptionInfo
from typer.testing import CliRunner

from cli import generation
from cli.app import app
from cli.backend_flags import BackendFlags
from generator.errors import GapfillError
from workers.main import WorkerSpec


def commands(group: typer.Typer, prefix: str = "") -> Iterator[tuple[str, Callable[..., Any]]]:
    """(name, callback) of every command of ``group`` and its sub-groups, and its callback."""
    if group.registered_callback is not None and group.registered_callback.callback is not None:
        yield f"{prefix}(callback)", group.registered_callback.callback
    for info in group.registered_commands:
        assert info.callback is not None
        yield f"{prefix}{info.name or info.callback.__name__}", info.callback
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        yield from commands(sub.typer_instance, f"{prefix}{sub.name} ")


def _loaded_names(function: Callable[..., Any]) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _self_attributes(function: Callable[..., Any]) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
    }


def _has_callback(parameter: inspect.Parameter) -> bool:
    """An option whose effect is its own callback (``--version``)."""
    metadata = getattr(parameter.annotation, "__metadata__", ())
    return any(isinstance(m, OptionInfo) and m.callback is not None for m in metadata)


def unused_options(callback: Callable[..., Any]) -> list[str]:
    """The parameters typer sees on ``callback`` that nothing reads."""
    body = inspect.unwrap(callback)
    own = inspect.signature(body).parameters
    read = _loaded_names(body)
    flags_read = _self_attributes(BackendFlags.choice)
    unused = []
    for name, parameter in inspect.signature(callback, eval_str=True).parameters.items():
        if _has_callback(parameter):
            continue
        used = name in read if name in own else name in flags_read
        if not used:
            unused.append(name)
    return unused


def test_every_option_of_every_command_is_read() -> None:
    found = dict(commands(app))
    assert {"generate", "worker", "server info", "reviewer add", "(callback)"} <= set(found)
    unused = {name: unused_options(cb) for name, cb in found.items() if unused_options(cb)}
    assert unused == {}


def test_the_check_finds_an_option_nobody_reads() -> None:
    def generate(
        run: Annotated[str, typer.Option()],
        chunked_prefill: Annotated[bool, typer.Option()] = False,
    ) -> None:
        print(run)

    assert unused_options(generate) == ["chunked_prefill"]


# Each backend flag: its command line (non-default), and where its value must arrive.
FLAGS: dict[str, tuple[list[str], Callable[[WorkerSpec], object], object]] = {
    "backend": (["--backend", "openai"], lambda s: s.backend.name, "openai"),
    "model": (["--model", "m-1"], lambda s: s.backend.model, "m-1"),
    "base_url": (
        ["--base-url", "http://h:1/v1"],
        lambda s: s.backend.options.base_url,
        "http://h:1/v1",
    ),
    "api_key": (["--api-key", "k-1"], lambda s: s.backend.options.api_key, "k-1"),
    "engine_batch": (["--engine-batch", "3"], lambda s: s.backend.options.batch_size, 3),
    "device": (["--device", "cpu"], lambda s: s.backend.options.device, "cpu"),
    "concurrency": (["--concurrency", "5"], lambda s: s.backend.options.max_concurrency, 5),
    "tensor_parallel": (
        ["--tensor-parallel", "2"],
        lambda s: s.backend.options.tensor_parallel_size,
        2,
    ),
    "gpu_memory": (
        ["--gpu-memory", "0.5"],
        lambda s: s.backend.options.gpu_memory_utilization,
        0.5,
    ),
    "max_model_len": (["--max-model-len", "512"], lambda s: s.backend.options.max_model_len, 512),
    "dtype": (["--dtype", "float16"], lambda s: s.backend.options.dtype, "float16"),
    "enforce_eager": (["--enforce-eager"], lambda s: s.backend.options.enforce_eager, True),
    "chunked_prefill": (["--chunked-prefill"], lambda s: s.backend.options.chunked_prefill, True),
}


def test_the_table_covers_every_backend_flag() -> None:
    assert set(FLAGS) == {field.name for field in fields(BackendFlags)}


class Captured(GapfillError):
    """Stops the command once the worker spec is built."""


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[WorkerSpec]:
    specs: list[WorkerSpec] = []

    def capture(settings: object, spec: WorkerSpec, **kwargs: object) -> float:
        specs.append(spec)
        raise Captured("captured")

    monkeypatch.setattr(generation, "run_worker", capture)
    monkeypatch.setattr(generation, "load_backend", capture)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return specs


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_each_backend_flag_reaches_the_worker(flag: str, captured: list[WorkerSpec]) -> None:
    args, where, expected = FLAGS[flag]
    result = CliRunner().invoke(app, ["worker", *args])
    assert result.exit_code == 1 and captured, result.output
    assert where(captured[0]) == expected
    default = BackendFlags().choice()
    assert where(WorkerSpec(backend=default)) != expected, "the test value must not be the default"


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_each_backend_flag_reaches_generate_in_process(
    flag: str,
    captured: list[WorkerSpec],
    valkey_url: str,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GAPFILL_REDIS_URL", valkey_url)
    monkeypatch.setenv("GAPFILL_KEY_PREFIX", key_prefix)
    args, where, expected = FLAGS[flag]
    result = CliRunner().invoke(app, ["generate", "--run", "r1", "--in-process", *args])
    assert result.exit_code == 1 and captured, result.output
    assert where(captured[0]) == expected


def test_no_chunked_prefill_reaches_generate_too(
    captured: list[WorkerSpec], valkey_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAPFILL_REDIS_URL", valkey_url)
    monkeypatch.setenv("GAPFILL_KEY_PREFIX", key_prefix)
    args = ["generate", "--run", "r1", "--in-process", "--no-chunked-prefill"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and captured, result.output
    assert captured[0].backend.options.chunked_prefill is False


def test_a_bad_backend_flag_is_one_error_naming_the_flag(captured: list[WorkerSpec]) -> None:
    result = CliRunner().invoke(app, ["worker", "--engine-batch", "0"])
    assert result.exit_code == 1 and not captured
    assert "--engine-batch: Input should be greater than or equal to 1" in result.output


@pytest.mark.parametrize(
    ("args", "queues", "llm"),
    [
        ([], None, True),
        (["--queues", "generate"], ["generate"], True),
        (["--queues", "score"], ["score"], False),
        (["--queues", "score", "--backend", "local"], ["score"], True),
        (["--queues", "score,score,generate"], ["score", "generate"], True),
    ],
)
def test_a_worker_serves_queues_by_capability_and_a_scoring_host_loads_no_llm_unasked(
    args: list[str], queues: list[str] | None, llm: bool, captured: list[WorkerSpec]
) -> None:
    result = CliRunner().invoke(app, ["worker", *args])
    assert result.exit_code == 1 and captured, result.output
    assert (captured[0].queues, captured[0].llm) == (queues, llm)
