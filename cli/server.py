"""The server and what it holds: `gapfill status` and `gapfill server start|stop|info`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cli.common import console, open_store, settings_of, styled, user_errors, where
from generator.config import Settings
from generator.connection import connect, masked_url
from generator.factories import make_work_queue
from generator.redis_server import BundledServer
from generator.schema import CandidateStatus
from generator.store import Store

server_app = typer.Typer(help="Start, stop or inspect the bundled Valkey server.")

_STATUS_COLUMNS = [s.value for s in CandidateStatus]


@user_errors
def status(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option(help="Only this run.")] = None,
) -> None:
    """Counts of items per run, gap and status (read from O(1) counters)."""
    settings = settings_of(ctx)
    store = open_store(settings)
    runs = [run] if run else store.runs()
    table = Table(title="gapfill status", caption=where(settings))
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
        table.add_row(run_id, Text("all gaps", style="bold"), *_figures(totals), end_section=True)
        queues.append(
            f"{run_id}: {store.queue_depth(run_id)} waiting for review, "
            f"{store.leased_count(run_id)} leased to reviewers"
        )
    if not runs:
        table.caption = f"no runs yet; {where(settings)}"
    console.print(table, soft_wrap=False)
    for line in queues:
        console.print(line, highlight=False)
    _print_queues(settings, store, runs)


def _print_queues(settings: Settings, store: Store, runs: list[str]) -> None:
    work = make_work_queue(settings, store)
    for run_id in runs:
        done, total = store.task_counts(run_id)
        if total:
            console.print(f"{run_id}: generation tasks {done}/{total} done", highlight=False)
    for queue, figures in work.depths().items():
        counts = ", ".join(f"{value} {name}" for name, value in figures.items())
        console.print(f"queue {queue}: {counts}", highlight=False)
    for queue, job_id, error in work.failed_jobs():
        console.print(styled("failed job", "red", f" {job_id} on {queue}: {error}"))


def _figures(row: dict[str, int]) -> list[str]:
    return [str(row.get(s, 0)) for s in _STATUS_COLUMNS] + [str(sum(row.values()))]


@server_app.command("start")
@user_errors
def server_start(ctx: typer.Context) -> None:
    """Start the bundled server (or report the one already running)."""
    settings = settings_of(ctx)
    info = BundledServer(settings.data_dir, appendfsync=settings.appendfsync).ensure_running()
    console.print(
        f"bundled Valkey running: pid {info.pid}, {masked_url(info.url)}, data in {info.data_dir}",
        highlight=False,
    )


@server_app.command("stop")
@user_errors
def server_stop(ctx: typer.Context) -> None:
    """Stop the bundled server cleanly (its AOF is flushed first)."""
    settings = settings_of(ctx)
    stopped = BundledServer(settings.data_dir).stop()
    console.print("bundled Valkey stopped" if stopped else "bundled Valkey was not running")


@server_app.command("info")
@user_errors
def server_info(ctx: typer.Context) -> None:
    """Which server the store uses, and whether it is running (or answering, for REDIS_URL)."""
    settings = settings_of(ctx)
    if settings.redis_url:
        connect(settings.redis_url)  # unreachable or refusing: one line (masked), exit 1
        shown = masked_url(settings.redis_url)
        console.print(f"REDIS_URL is set: using {shown}; no bundled server runs", highlight=False)
        return
    info = BundledServer(settings.data_dir).info()
    if info is None:
        console.print(f"bundled Valkey not running (data dir {settings.data_dir})")
        raise typer.Exit(3)
    console.print(
        f"bundled Valkey running: pid {info.pid}, {masked_url(info.url)}, data in {info.data_dir}",
        highlight=False,
    )
