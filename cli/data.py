"""Dataset files and their items: ``gapfill validate``, ``import``, ``rescreen`` and ``score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, err_console, open_store, settings_of, user_errors
from generator.dataset_import import ingest_file
from generator.dataset_reader import FORMATS, Format, read_examples
from generator.errors import InvalidValueError
from generator.factories import make_embedder
from generator.filters.file_scoring import score_file
from generator.filters.settings import load_filter_settings
from generator.schema import CandidateStatus, check_identifier

DataFile = Annotated[Path, typer.Argument(help="JSONL, JSONL.gz, JSON array or Parquet file.")]
# The dataset row formats are the library's (it checks the name and lists them in its error).
RowFormat = Annotated[
    str | None,
    typer.Option("--format", "-f", help=f"Row format (default: detect): {', '.join(FORMATS)}"),
]


@user_errors
def validate(file: DataFile, row_format: RowFormat = None) -> None:
    """Check every row of a dataset file; print each invalid one as FILE:LINE: reason."""
    chosen: Format | None = row_format  # type: ignore[assignment]  # checked by read_examples
    report = read_examples(file, chosen, collect_errors=True)
    for error in report.errors:
        console.print(str(error))
    summary = (
        f"{file}: format {report.format or 'unknown'}, {report.rows} rows, "
        f"{len(report.examples)} valid, {len(report.errors)} invalid"
    )
    if report.errors:
        err_console.print(summary, style="bold red")
        raise typer.Exit(1)
    console.print(summary, style="green")


@user_errors
def import_file(
    ctx: typer.Context,
    *,
    file: DataFile,
    run: Annotated[str, typer.Option(help="The run the rows join.")],
    row_format: RowFormat = None,
    gap: Annotated[str, typer.Option(help="Gap id recorded on the imported items.")] = "imported",
    skip_invalid: Annotated[
        bool, typer.Option(help="Store the valid rows and list the invalid ones with reasons.")
    ] = False,
) -> None:
    """Put a dataset's rows in the review queue. All or nothing: one bad row stores none
    (unless --skip-invalid)."""
    chosen: Format | None = row_format  # type: ignore[assignment]  # checked by read_examples
    check_identifier(run, "--run")
    check_identifier(gap, "--gap")
    result = ingest_file(
        open_store(settings_of(ctx)),
        file,
        run,
        row_format=chosen,
        gap_id=gap,
        skip_invalid=skip_invalid,
    )
    console.print(
        f"{file}: {result.rows} rows ({result.format}); {result.stored} stored in run {run!r}, "
        f"{result.already_present} already present, {len(result.skipped)} invalid skipped",
        highlight=False,
    )
    for error in result.skipped:
        console.print(f"  skipped {error}")


@user_errors
def rescreen(
    ctx: typer.Context,
    run: Annotated[str, typer.Option(help="The run whose items to screen.")],
) -> None:
    """Screen a run's items for PII and secrets where their screen is missing or out of date
    (items stored by a gapfill from before screening): the export refuses those items."""
    check_identifier(run, "--run")
    store = open_store(settings_of(ctx))
    if run not in store.runs():
        raise InvalidValueError(f"--run: no run {run!r} in the store")
    ids = [i for status in CandidateStatus for i in store.ids(run, status)]
    written = sum(store.rescreen(item_id) for item_id in ids)
    console.print(
        f"run {run!r}: {len(ids)} items, {written} screened now, {len(ids) - written} current",
        highlight=False,
    )


@user_errors
def score(
    ctx: typer.Context,
    *,
    file: Annotated[Path, typer.Argument(help="Any dataset file `validate` reads.")],
    out: Annotated[Path, typer.Option(help="Where to write one JSON line per input row.")],
    existing: Annotated[
        Path | None, typer.Option(help="The existing dataset: the reference for duplicates.")
    ] = None,
    eval_sets: Annotated[
        list[Path] | None, typer.Option("--eval", help="An eval set to check contamination.")
    ] = None,
    filter_config: Annotated[
        Path | None, typer.Option("--config", help="YAML with a filters: section (thresholds).")
    ] = None,
) -> None:
    """Run the filter pipeline on a dataset file: route and scores per row, in input order."""
    settings = settings_of(ctx)
    filters = load_filter_settings(filter_config)
    summary = score_file(
        file,
        out,
        settings=filters,
        existing=existing,
        evals=eval_sets,
        embedder=make_embedder(settings),
        index_cache=settings.data_dir / "indexes",
    )
    failures = ", ".join(f"{name} {count}" for name, count in summary.failures.most_common())
    console.print(
        f"{file}: {summary.rows} rows: {summary.review} to review, {summary.rejected} rejected"
        + (f" (failed: {failures})" if failures else "")
        + f"; scores in {out}",
        highlight=False,
    )
