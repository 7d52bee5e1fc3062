"""The stage's eval and safety reports over every exported row, written into the export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.calibration import run_calibration
from generator.coverage import GapReport
from generator.embeddings import Embedder
from generator.evaluation.measured import measured_on
from generator.evaluation.report import MeasuredOn
from generator.evaluation.runner import EvalInput, EvalOptions, evaluate, write_reports
from generator.export.options import ExportOptions
from generator.export.prepare import Prepared
from generator.schema import CandidateKind, PreferenceExample, SFTExample
from generator.store import Store


@dataclass
class Reports:
    hashes: dict[str, str]  # each report file's sha256
    report_json: str  # the eval report, kept with the runs for the review UI's Overview
    measured_on: list[MeasuredOn]  # per run: whether the merged file is its measured dataset


def gap_name(run: str, gap: str, runs: int) -> str:
    """A gap's name where an export's rows meet: "run/gap" when it spans several runs (ids hold
    no '/'), since gap ids are a run's own: every run names its reference gaps ref-N, by topic."""
    return f"{run}/{gap}" if runs > 1 else gap


def gap_reports_of(store: Store, runs: list[str]) -> dict[str, GapReport]:
    """The gap report of each run that has one (a run made by `gapfill import` has none)."""
    return {
        run: GapReport.model_validate_json(raw)
        for run in runs
        if (raw := store.gap_report_json(run)) is not None
    }


def measured_runs(
    store: Store, runs: list[str], merge: Path | None, reports: dict[str, GapReport] | None = None
) -> dict[str, MeasuredOn]:
    """Per run with a gap report: what its gaps were measured on, next to the merged file."""
    found = {}
    for run, report in (gap_reports_of(store, runs) if reports is None else reports).items():
        config = store.get_run(run)
        found[run] = measured_on(run, report, config.existing if config else [], merge)
    return found


def run_reports(
    store: Store,
    options: ExportOptions,
    splits: dict[str, list[Prepared]],
    *,
    staging: Path,
    data_dir: Path,
    embedder: Embedder | None,
) -> Reports:
    """The stage's eval report over every exported row, written into ``staging``."""
    rows = [entry for part in splits.values() for entry in part]
    model = SFTExample if options.kind is CandidateKind.SFT else PreferenceExample
    examples = [model.model_validate(entry.row) for entry in rows]
    runs = len(options.runs)
    gaps = [
        gap_name(entry.approved.item["run_id"], entry.approved.item["gap_id"], runs)
        if entry.approved
        else "existing"
        for entry in rows
    ]
    labels = {gap_name(run, g.id, runs): g.label for run in options.runs for g in store.gaps(run)}
    gap_reports = gap_reports_of(store, options.runs)
    data = EvalInput(
        source=f"export of {', '.join(options.runs)}",
        rows=len(examples),
        examples=examples,
        gaps=gaps,
        labels=labels,
        human_reviewed={i for i, entry in enumerate(rows) if entry.approved is not None},
        gap_reports=gap_reports,
        # Each reviewed row counts into its own run's gaps; merged existing rows are existing
        # data, not what the export adds (whether they are the gaps' "have": measured_on).
        row_runs=[entry.approved.item["run_id"] if entry.approved else None for entry in rows],
        counted="the reviewed rows of each run with a gap report, into that run's gaps",
        measured_on=(measured := measured_runs(store, options.runs, options.merge, gap_reports)),
    )
    eval_options = EvalOptions(
        stage=options.kind.value,
        eval_sets=options.eval_sets,
        existing=options.merge,
        judge=options.judge,
        tokenizer=options.tokenizer,
        max_length=options.max_length,
    )
    evaluation = evaluate(
        data, eval_options, embedder or Embedder(cache_dir=data_dir / "cache"), data_dir
    )
    evaluation.report.calibration = [
        result for run in options.runs for result in run_calibration(store, run)
    ]
    hashes = write_reports(evaluation, staging, gaps)
    return Reports(hashes, evaluation.report.model_dump_json(), list(measured.values()))
