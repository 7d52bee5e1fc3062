"""The server and what it holds: `gapfill status` and `gapfill server start|stop|info`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from cli.common import console, open_store, settings_of, styled, user_errors, where
from cli.rounds import print_rounds
from cli.tables import Column, Fit, choose, cramped, fitted_table
from generator.config import Settings
from generator.connection import connect, masked_url
from generator.costs import GapCost, run_costs
from generator.factories import make_work_queue
from generator.redis_server import BundledServer
from generator.rounds import round_yields
from generator.schema import CandidateStatus
from generator.store import Store

server_app = typer.Typer(help="Start, stop or inspect the bundled Valkey server.")

_STATUS_COLUMNS = [s.value for s in CandidateStatus]
_FIGURES = [*_STATUS_COLUMNS, "total"]
# Header words for a narrow terminal, where the full ones leave the ids no room.
_SHORT = {"generated": "gen.", "pending": "pend.", "auto_rejected": "auto-rej."}
_SHORT |= {"accepted": "acc.", "rejected": "rej."}
_ALL = "all gaps"

Rows = dict[str, list[tuple[str, list[str]]]]  # run id: its gaps' figures, then all its gaps'


@user_errors
def status(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option(help="Only this run.")] = None,
    costs: Annotated[
        bool,
        typer.Option(
            "--costs",
            help="Also what each accepted item cost per gap: tokens, backend and reviewer "
            "seconds, and money where prices_per_million_tokens names the backend (reads every "
            "item of the runs).",
        ),
    ] = False,
) -> None:
    """Counts of items per run, gap and status (read from O(1) counters)."""
    settings = settings_of(ctx)
    store = open_store(settings)
    runs = [run] if run else store.runs()
    rows: Rows = {}
    queues = []
    for run_id in runs:
        rows[run_id] = _run_rows(store.counts(run_id))
        waiting, leased = store.queue_figures(run_id)  # one read: a consistent pair
        queues.append(f"{run_id}: {waiting} waiting for review, {leased} leased to reviewers")
    _print_counts(rows, where(settings) if runs else f"no runs yet; {where(settings)}")
    for line in queues:
        console.print(line)
    _print_queues(settings, store, runs)
    followed = {config.after for config in map(store.get_run, store.runs()) if config}
    for run_id in runs:
        # A campaign's latest round (its table has every round), or the round asked for.
        if run or run_id not in followed:
            print_rounds(round_yields(store, run_id))
        if costs:
            _print_costs(run_id, run_costs(store, run_id, settings.prices_per_million_tokens))


def _per(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _print_costs(run_id: str, rows: list[GapCost]) -> None:
    table = Table(title=f"cost per accepted item, run {run_id}")
    for header in ("gap", "generated", "accepted", "tokens", "backend s", "reviewer s", "money"):
        table.add_column(header, justify="left" if header == "gap" else "right")
    for row in rows:
        table.add_row(
            row.gap_id,
            str(row.generated),
            str(row.accepted),
            _per(row.per_accepted(row.tokens), 0),
            _per(row.per_accepted(row.backend_seconds), 2),
            _per(row.per_accepted(row.reviewer_seconds), 1),
            _per(row.per_accepted(row.money), 4),
        )
    table.caption = (
        "per accepted item; '-': nothing accepted, or no price for a backend the gap used"
    )
    console.print(table)


def _run_rows(counts: dict[str, dict[str, int]]) -> list[tuple[str, list[str]]]:
    totals: dict[str, int] = {}
    for row in counts.values():
        for key, value in row.items():
            totals[key] = totals.get(key, 0) + value
    return [
        *((gap_id, _figures(counts[gap_id])) for gap_id in sorted(counts)),
        (_ALL, _figures(totals)),
    ]


def _print_counts(rows: Rows, caption: str) -> None:
    """A table with run and gap ids whole where the terminal has room (with shorter headers
    first), else folded; a line per gap where even folded ids would get too little room."""
    runs = [run_id for run_id, gaps in rows.items() for _ in gaps]
    gaps = [(gap_id, figures) for run_rows in rows.values() for gap_id, figures in run_rows]
    names = [Column("run", runs, Fit.FOLD), Column("gap", [g for g, _ in gaps], Fit.FOLD)]
    layouts = [
        [
            *names,
            *(
                Column(headers.get(h, h), [f[i] for _, f in gaps], Fit.WHOLE, "right")
                for i, h in enumerate(_FIGURES)
            ),
        ]
        for headers in ({}, _SHORT)
    ]
    columns = layouts[choose(layouts, console.width)]
    if cramped(columns, console.width):
        _print_lines(rows, caption)
        return
    table = fitted_table(columns, title="gapfill status")
    table.caption = caption
    for run_id, run_rows in rows.items():
        for index, (gap_id, figures) in enumerate(run_rows):
            last = index == len(run_rows) - 1  # the run's all-gaps row
            # The run's id once, on its first row: folded, it would repeat over lines on each.
            run_cell = run_id if index == 0 else ""
            gap = Text(gap_id, style="bold" if last else "")
            table.add_row(run_cell, gap, *figures, end_section=last)
    console.print(table, soft_wrap=False)


def _print_lines(rows: Rows, caption: str) -> None:
    """The counts as lines, wrapped at word boundaries, for a terminal too narrow for the table."""
    console.print("gapfill status")
    for run_id, run_rows in rows.items():
        console.print(f"run {run_id}", soft_wrap=False)
        for gap_id, figures in run_rows:
            counts = ", ".join(f"{n} {h}" for n, h in zip(figures, _FIGURES, strict=True))
            console.print(
                Padding(f"{gap_id}: {counts}", (0, 0, 0, 2), expand=False), soft_wrap=False
            )
    console.print(caption, soft_wrap=False)


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
