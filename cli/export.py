"""What leaves the system: ``gapfill export``, ``gapfill eval`` and ``gapfill audit``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from cli.choices import ExportFormat, RankingPairs
from cli.common import console, first_error, open_store, settings_of, user_errors
from generator.coverage import GapReport
from generator.errors import ConfigError
from generator.evaluation.runner import EvalOptions, Stage, evaluate, read_input, write_reports
from generator.export.audit import read_audit
from generator.export.writer import ExportOptions, export
from generator.factories import make_embedder
from generator.filters.contamination import load_eval_items
from generator.schema import CandidateKind

EvalSets = Annotated[
    list[Path] | None, typer.Option("--eval", help="An eval set the report checks against.")
]
Tokenizer = Annotated[
    str | None,
    typer.Option(help="Tokenizer directory for the length check (default: the bundled SmolLM2)."),
]
MaxLength = Annotated[int, typer.Option(help="Tokens under the chat template, at most.")]
Judge = Annotated[str | None, typer.Option(help="BACKEND/MODEL judging, e.g. local/bundled.")]


@user_errors
def export_command(
    ctx: typer.Context,
    *,
    run: Annotated[list[str], typer.Option("--run", help="A run to export (repeat for several).")],
    kind: Annotated[CandidateKind, typer.Option(help="The training stage.")],
    out: Annotated[Path, typer.Option(help="The export directory.")],
    row_format: Annotated[
        ExportFormat, typer.Option("--format", help="The row files' format.")
    ] = ExportFormat.JSONL,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier export in --out (nothing else is replaced).")
    ] = False,
    merge: Annotated[
        Path | None, typer.Option(help="An existing dataset merged in (generated duplicates drop).")
    ] = None,
    eval_fraction: Annotated[
        float, typer.Option(help="Share held out as eval.jsonl (near duplicates kept together).")
    ] = 0.0,
    tokenizer: Tokenizer = None,
    max_length: MaxLength = 2048,
    base_model: Annotated[str | None, typer.Option(help="For the stage-audit record.")] = None,
    pretraining_data: Annotated[
        list[str] | None, typer.Option(help="Continued-pretraining data, for the audit record.")
    ] = None,
    previous: Annotated[
        Path | None, typer.Option(help="The export this one follows (its manifest hash is kept).")
    ] = None,
    evaluate_export: Annotated[
        bool,
        typer.Option("--evaluate/--no-evaluate", help="Write the eval and safety reports."),
    ] = True,
    eval_sets: EvalSets = None,
    judge: Judge = None,
    include_auto_decided: Annotated[
        bool,
        typer.Option(
            help="Also export items the pre-screen model accepted without a human (marked in "
            "provenance, the manifest and the card). Off: only what humans accepted leaves."
        ),
    ] = False,
    ranking_pairs: Annotated[
        RankingPairs,
        typer.Option(
            help="A ranking of 3+ answers becomes every pair, the better chosen (all), or the "
            "best against the worst only (best-worst)."
        ),
    ] = RankingPairs.ALL,
) -> None:
    """Write what reviewers accepted as a TRL-ready dataset with manifest, card, provenance and
    the stage's eval and safety reports."""
    settings = settings_of(ctx)
    try:
        options = ExportOptions(
            runs=run,
            kind=kind,
            format=row_format.value,
            out=out,
            overwrite=overwrite,
            merge=merge,
            eval_fraction=eval_fraction,
            tokenizer=tokenizer,
            max_length=max_length,
            base_model=base_model,
            pretraining_data=pretraining_data or [],
            previous=previous,
            evaluate=evaluate_export,
            eval_sets=eval_sets or [],
            judge=judge,
            include_auto_decided=include_auto_decided,
            ranking_pairs="all" if ranking_pairs is RankingPairs.ALL else "best_worst",
            mode=settings.export_dir_mode(),
        )
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"export: {first_error(exc)}") from exc
    for eval_set in options.eval_sets:
        load_eval_items(eval_set)  # a bad eval set fails before any work
    result = export(open_store(settings), options, settings.data_dir, make_embedder(settings))
    rows = ", ".join(f"{name} {n}" for name, n in result.rows.items())
    console.print(f"{out}: {rows} rows; export {result.export_id[:12]}", highlight=False)
    if result.excluded or result.refused:
        console.print(
            f"{len(result.excluded)} excluded, {len(result.refused)} refused (no current "
            f"PII/secret screen, or a flag not cleared); reasons in {out / 'excluded.jsonl'}",
            highlight=False,
        )
        for item_id, reason in [*result.excluded, *result.refused][:5]:
            console.print(f"  {item_id}: {reason}", highlight=False)
    if result.auto_left_out:
        console.print(
            f"{result.auto_left_out} accepted by the pre-screen model without a human: left out "
            "(--include-auto-decided takes them, marked)",
            highlight=False,
        )


@user_errors
def eval_command(
    ctx: typer.Context,
    *,
    file: Annotated[Path, typer.Argument(help="A dataset file (any format `validate` reads).")],
    stage: Annotated[CandidateKind, typer.Option(help="The training stage.")],
    out: Annotated[Path, typer.Option(help="Directory for the report files.")],
    eval_sets: EvalSets = None,
    judge: Judge = None,
    judge_sample: Annotated[int, typer.Option(help="Rows the judge sees.")] = 50,
    existing: Annotated[
        Path | None, typer.Option(help="The existing dataset, to compare diversity with.")
    ] = None,
    run: Annotated[
        str | None, typer.Option(help="A run whose gap report gives the coverage before/after.")
    ] = None,
    tokenizer: Tokenizer = None,
    max_length: MaxLength = 2048,
) -> None:
    """Evaluate a dataset for its training stage: format, refusals, diversity, contamination,
    safety (and, for preference data, pair quality and the judge's win rate)."""
    settings = settings_of(ctx)
    stage_name: Stage = "sft" if stage is CandidateKind.SFT else "preference"
    data = read_input(file, stage_name)
    options = EvalOptions(
        stage=stage_name,
        eval_sets=eval_sets or [],
        existing=existing,
        judge=judge,
        judge_sample=judge_sample,
        tokenizer=tokenizer,
        max_length=max_length,
    )
    for eval_set in options.eval_sets:
        load_eval_items(eval_set)  # a bad eval set fails before any work
    store = open_store(settings) if run else None
    if store is not None and run is not None:
        raw = store.gap_report_json(run)
        if raw is None:
            raise ConfigError(f"--run {run}: no gap report stored for it")
        data.gap_reports = {run: GapReport.model_validate_json(raw)}
        data.counted = f"every row of {file} (rows already in the measured dataset count again)"
    evaluation = evaluate(data, options, make_embedder(settings), settings.data_dir)
    write_reports(evaluation, out, data.gaps)
    if store is not None and run is not None:
        store.save_eval_report(run, evaluation.report.model_dump_json())
    report = evaluation.report
    fmt = report.format
    console.print(
        f"{file}: {report.rows} {stage} rows ({fmt.valid} of {fmt.rows} valid); "
        f"refusals {report.refusals.share:.1%}; over {max_length} tokens "
        f"{fmt.over_max_length}; PII {report.safety.pii_rows}, unsafe "
        f"{report.safety.unsafe_rows}; report in {out / 'eval_report.md'}",
        highlight=False,
    )


@user_errors
def audit_command(
    export_dir: Annotated[Path, typer.Argument(help="An export directory (with manifest.json).")],
) -> None:
    """Print an export's stage-audit record, check its file hashes, and name the missing fields
    its kind requires."""
    record = read_audit(export_dir)
    # Names, paths and hashes are one word each: folded onto the next line when the column is
    # narrower, never cut short with an ellipsis (rich's default).
    title = Text(f"stage audit of {export_dir}", overflow="fold")
    table = Table(title=title, title_justify="left")
    table.add_column("field", overflow="fold")
    table.add_column("value", overflow="fold")
    for name, value in record.fields.items():
        why = record.not_required.get(name)
        table.add_row(name, value or (f"not required: {why}" if why else "[missing]"))
    console.print(table, soft_wrap=False)
    for problem in record.problems:
        console.print(problem, style="red")
    missing = ", ".join(record.missing) or "none"
    console.print(f"missing: {missing}", highlight=False)
    if record.problems:
        raise typer.Exit(1)
