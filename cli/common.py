"""What every command shares: the consoles, the user-error wrapper, settings and the store.

User errors (``GapfillError``) print one line on stderr and exit 1; usage errors exit 2 (typer).
Anything else is a bug and keeps its traceback. No message shows a store password: URLs are
printed masked, and error lines pass through ``redact``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from generator.config import Settings
from generator.connection import connect, eviction_warning, masked_url, redact, redis_url
from generator.errors import GapfillError
from generator.store import Store

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a GapfillError as one red line and exit 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except GapfillError as exc:
            message = escape(redact(str(exc)))
            err_console.print(f"[bold red]error:[/] {message}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the main callback loaded (``--config``, environment, defaults)."""
    settings: Settings = ctx.obj
    return settings


def open_store(settings: Settings) -> Store:
    """The store on the configured server, warning loudly if the server may evict keys."""
    client = connect(redis_url(settings))
    warning = eviction_warning(client)
    if warning:
        err_console.print(f"[bold yellow]WARNING:[/] {escape(warning)}", highlight=False)
    return Store(client, prefix=settings.key_prefix, lease_seconds=settings.lease_seconds)


def where(settings: Settings) -> str:
    """Which server and key prefix the store is on, for captions."""
    if settings.redis_url:
        return f"store: {escape(masked_url(settings.redis_url))} prefix {settings.key_prefix!r}"
    return f"store: bundled Valkey in {settings.data_dir} prefix {settings.key_prefix!r}"


def first_error(exc: Exception) -> str:
    """The first problem of a validation error, as ``field: message``."""
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        place = ".".join(str(p) for p in error["loc"])
        return f"{place}: {error['msg']}" if place else str(error["msg"])
    return str(exc)
