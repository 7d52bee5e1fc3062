"""The ``gapfill`` command line.

User errors (``GapfillError``) print one line on stderr and exit 1; usage errors exit 2 (typer).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from generator import __version__
from generator.config import Settings, load_settings
from generator.connection import connect, eviction_warning, redis_url
from generator.errors import GapfillError
from generator.importers import FORMATS, Format, read_examples
from generator.ingest import ingest_file
from generator.redis_server import EmbeddedServer
from generator.schema import CandidateStatus
from generator.store import Store

app = typer.Typer(
    name="gapfill",
    help="Find coverage gaps in a fine-tuning dataset, generate candidates for them, filter, "
    "review and export what humans approved.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
server_app = typer.Typer(help="Start, stop or inspect the embedded Valkey server.")
app.add_typer(server_app, name="server")

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
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _store(settings: Settings) -> Store:
    client = connect(redis_url(settings))
    warning = eviction_warning(client)
    if warning:
        err_console.print(f"[bold yellow]WARNING:[/] {escape(warning)}", highlight=False)
    return Store(client, prefix=settings.key_prefix, lease_seconds=settings.lease_seconds)


def _version(value: bool) -> None:
    if value:
        console.print(f"gapfill {__version__}")
        raise typer.Exit()


@app.callback()
@user_errors
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML settings file (else $GAPFILL_CONFIG)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    ctx.obj = load_settings(config)


_STATUS_COLUMNS = [s.value for s in CandidateStatus]


@app.command()
@user_errors
def status(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option(help="Only this run.")] = None,
) -> None:
    """Counts of items per run, gap and status (read from O(1) counters)."""
    settings = _settings(ctx)
    store = _store(settings)
    runs = [run] if run else store.runs()
    table = Table(title="gapfill status", caption=_where(settings))
    for column in ["run", "gap", *_STATUS_COLUMNS, "total"]:
        table.add_column(column, justify="left" if column in ("run", "gap") else "right")
    queues = []
    for run_id in runs:
        counts = store.counts(run_id)
        totals: dict[str, int] = {}
        for gap_id in sorted(counts):
            row = counts[gap_id]
            for key, value in row.items():
                totals[key] = totals.get(key, 0) + value
            table.add_row(run_id, gap_id, *_figures(row))
        table.add_row(run_id, "[bold]all gaps[/]", *_figures(totals), end_section=True)
        queues.append(
            f"{run_id}: {store.queue_depth(run_id)} waiting for review, "
            f"{store.leased_count(run_id)} leased to reviewers"
        )
    if not runs:
        table.caption = f"no runs yet; {_where(settings)}"
    console.print(table)
    for line in queues:
        console.print(line, highlight=False)


def _figures(row: dict[str, int]) -> list[str]:
    return [str(row.get(s, 0)) for s in _STATUS_COLUMNS] + [str(sum(row.values()))]


def _where(settings: Settings) -> str:
    if settings.redis_url:
        return f"store: {settings.redis_url} prefix {settings.key_prefix!r}"
    return f"store: embedded Valkey in {settings.data_dir} prefix {settings.key_prefix!r}"


@server_app.command("start")
@user_errors
def server_start(ctx: typer.Context) -> None:
    """Start the embedded server (or report the one already running)."""
    settings = _settings(ctx)
    info = EmbeddedServer(settings.data_dir, appendfsync=settings.appendfsync).ensure_running()
    console.print(f"embedded Valkey running: pid {info.pid}, {info.url}, data in {info.data_dir}")


@server_app.command("stop")
@user_errors
def server_stop(ctx: typer.Context) -> None:
    """Stop the embedded server cleanly (its AOF is flushed first)."""
    settings = _settings(ctx)
    stopped = EmbeddedServer(settings.data_dir).stop()
    console.print("embedded Valkey stopped" if stopped else "embedded Valkey was not running")


@server_app.command("info")
@user_errors
def server_info(ctx: typer.Context) -> None:
    """Which server the store uses, and whether it is running."""
    settings = _settings(ctx)
    if settings.redis_url:
        console.print(f"REDIS_URL is set: using {settings.redis_url}; no embedded server is used")
        return
    info = EmbeddedServer(settings.data_dir).info()
    if info is None:
        console.print(f"embedded Valkey not running (data dir {settings.data_dir})")
        raise typer.Exit(3)
    console.print(f"embedded Valkey running: pid {info.pid}, {info.url}, data in {info.data_dir}")


@app.command()
@user_errors
def validate(
    file: Annotated[Path, typer.Argument(help="JSONL, JSONL.gz, JSON array or Parquet file.")],
    row_format: Annotated[
        str | None,
        typer.Option("--format", "-f", help=f"Row format (default: detect): {', '.join(FORMATS)}"),
    ] = None,
) -> None:
    """Check every row of a dataset file; print each invalid one as FILE:LINE: reason."""
    chosen: Format | None = row_format  # type: ignore[assignment]  # checked by read_examples
    report = read_examples(file, chosen, collect_errors=True)
    for error in report.errors:
        console.print(escape(str(error)), highlight=False, soft_wrap=True)
    summary = (
        f"{file}: format {report.format or 'unknown'}, {report.rows} rows, "
        f"{len(report.examples)} valid, {len(report.errors)} invalid"
    )
    if report.errors:
        err_console.print(f"[bold red]{escape(summary)}[/]", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]{escape(summary)}[/]", highlight=False)


@app.command("import")
@user_errors
def import_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSONL, JSONL.gz, JSON array or Parquet file.")],
    run: Annotated[str, typer.Option(help="The run the rows join.")],
    row_format: Annotated[
        str | None,
        typer.Option("--format", "-f", help=f"Row format (default: detect): {', '.join(FORMATS)}"),
    ] = None,
    gap: Annotated[str, typer.Option(help="Gap id recorded on the imported items.")] = "imported",
) -> None:
    """Put a dataset's rows in the review queue. All or nothing: one bad row stores none."""
    chosen: Format | None = row_format  # type: ignore[assignment]  # checked by read_examples
    result = ingest_file(_store(_settings(ctx)), file, run, row_format=chosen, gap_id=gap)
    console.print(
        f"{file}: {result.rows} rows ({result.format}); {result.stored} stored in run {run!r}, "
        f"{result.already_present} already present",
        highlight=False,
    )


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return app(args=argv if argv is not None else sys.argv[1:], prog_name="gapfill")


if __name__ == "__main__":
    main()
