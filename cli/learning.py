"""Learning from review: ``gapfill replay`` (recorded reviews into a run), ``gapfill
calibration`` (the judge against the humans) and ``gapfill prescreen`` (retrain a run's
pre-screen now)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, open_store, settings_of, user_errors
from generator.calibration import run_calibration, table_rows
from generator.errors import InvalidValueError
from generator.factories import make_embedder
from generator.llmfao import write_replay
from generator.prescreening import retrain
from generator.replay import replay
from generator.schema import PreScreenSettings, check_identifier

replay_app = typer.Typer(help="Recorded reviews: items with their votes and a judge's verdicts.")
RunOption = Annotated[str, typer.Option(help="The run.")]


@replay_app.command("import")
@user_errors
def replay_import(
    ctx: typer.Context,
    *,
    file: Annotated[Path, typer.Argument(help="A replay file (JSONL; see the README).")],
    run: Annotated[str, typer.Option(help="The run the items join (new, or with overlap).")],
    k: Annotated[
        int | None, typer.Option(help="Reviewers per item (default: the most votes on an item).")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Leave out bad lines (listed) instead of storing nothing.")
    ] = False,
) -> None:
    """Store the items and apply every recorded vote through leases and decisions."""
    check_identifier(run, "--run")
    result = replay(open_store(settings_of(ctx)), file, run, k=k, skip_invalid=skip_invalid)
    console.print(
        f"{file}: {result.items} items ({result.stored} new) in run {run!r} with k={result.k}; "
        f"{result.applied} of {result.votes} votes applied; {len(result.skipped)} lines left out",
        highlight=False,
    )
    for error in result.skipped[:10]:
        console.print(f"  skipped {error}", highlight=False)
    if result.in_other_runs:
        console.print(
            f"{len(result.in_other_runs)} items are another run's already (the same content): "
            f"their votes were not applied, e.g. {', '.join(result.in_other_runs[:3])}",
            highlight=False,
        )


@replay_app.command("llmfao")
@user_errors
def replay_llmfao(
    directory: Annotated[Path, typer.Argument(help="The LLMFAO files (pairs, votes, GPT-4).")],
    out: Annotated[Path, typer.Option(help="The replay file to write.")],
) -> None:
    """Convert LLMFAO's crowd comparisons and GPT-4 verdicts into a replay file."""
    rows = write_replay(directory, out)
    console.print(f"{out}: {rows} pairs", highlight=False)


@user_errors
def calibration(ctx: typer.Context, run: RunOption) -> None:
    """The judge against the humans' majority, per run and per gap, beside the humans' own
    agreement (each vote against the majority of the other votes)."""
    check_identifier(run, "--run")
    store = open_store(settings_of(ctx))
    if run not in store.runs():
        raise InvalidValueError(f"--run: no run {run!r} in the store")
    table = Table("scope", "who", "comparisons", "agreement", "no tie", "kappa [95% CI]")
    for result in run_calibration(store, run):
        for row in table_rows(result):
            table.add_row(*row)
    console.print(table)


@user_errors
def prescreen(ctx: typer.Context, run: RunOption) -> None:
    """Retrain the run's pre-screen now (a worker does it as decisions arrive): reorder its
    queue and, where the campaign allows and the model has earned it, decide items."""
    check_identifier(run, "--run")
    settings = settings_of(ctx)
    store = open_store(settings)
    config = store.get_run(run)
    if config is None:
        raise InvalidValueError(f"--run: no run {run!r} in the store")
    chosen = config.review.prescreen or PreScreenSettings()
    status = retrain(store, run, make_embedder(settings), chosen)
    yardstick = (
        f"{status.human_agreement:.0%} ({status.human_agreement_source})"
        if status.human_agreement is not None
        else "none"
    )
    console.print(
        f"run {run!r}: trained on {status.trained_on} items; humans' agreement {yardstick}; "
        f"queue reordered: {status.reordered}; auto-decided: {status.auto_decided}; audit: "
        f"{status.audit.decided} of {status.audit.drawn} decided by humans"
        + (f", agreeing {status.audit.agreement:.0%}" if status.audit.agreement is not None else "")
        + f". {status.message}",
        highlight=False,
    )
