"""What every command shares: the consoles, the user-error wrapper, settings and the store.

User errors (``GapfillError``) print one line on stderr and exit 1; usage errors exit 2 (typer).
Anything else is a bug and keeps its traceback. No message shows a store password: URLs are
printed masked, and error lines pass through ``redact``.

Text is printed as text: the consoles parse no markup, no ``:emoji:`` codes and highlight
nothing, because most of what they print comes from data, paths and user input (a file named
``[auth].jsonl`` or an error at ``data.jsonl:100:`` must print as it is). Styling is explicit,
with ``styled`` (a rich ``Text``), never by interpolating markup into a string.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from generator.config import Settings
from generator.connection import eviction_warning, masked_url, redact, store_client
from generator.errors import GapfillError
from generator.store import Store

console = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


def styled(label: str, style: str, rest: str = "") -> Text:
    """``label`` in ``style``, then ``rest`` as plain text (neither is parsed as markup)."""
    return Text.assemble((label, style), rest)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a GapfillError as one red line and exit 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except GapfillError as exc:
            err_console.print(styled("error:", "bold red", f" {redact(str(exc))}"))
            raise typer.Exit(1) from None

    return wrapper


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the main callback loaded (``--config``, environment, defaults)."""
    settings: Settings = ctx.obj
    return settings


def open_store(settings: Settings) -> Store:
    """The store on the configured server, warning loudly if the server may evict keys."""
    client = store_client(settings)
    warning = eviction_warning(client)
    if warning:
        err_console.print(styled("WARNING:", "bold yellow", f" {warning}"))
    return Store(client, prefix=settings.key_prefix, lease_seconds=settings.lease_seconds)


def where(settings: Settings) -> str:
    """Which server and key prefix the store is on, for captions."""
    if settings.redis_url:
        return f"store: {masked_url(settings.redis_url)} prefix {settings.key_prefix!r}"
    return f"store: bundled Valkey in {settings.data_dir} prefix {settings.key_prefix!r}"


def first_error(exc: Exception) -> str:
    """The first problem of a validation error, as ``field: message``."""
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        place = ".".join(str(p) for p in error["loc"])
        return f"{place}: {error['msg']}" if place else str(error["msg"])
    return str(exc)
