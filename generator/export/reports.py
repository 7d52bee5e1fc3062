"""The stage's eval and safety reports over every exported row, written into the export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.coverage import GapReport
from generator.embeddings import Embedder
from generator.evaluation.runner import EvalInput, EvalOptions, evaluate, write_reports
from generator.export.options import ExportOptions
from generator.export.prepare import Prepared
from generator.schema import CandidateKind, PreferenceExample, SFTExample
from generator.store import Store


@dataclass
class Reports:
    hashes: dict[str, str]  # each report file's sha256
    report_json: str  # the eval report, kept with the runs for the review UI's Overview


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
    gaps = [entry.approved.item["gap_id"] if entry.approved else "existing" for entry in rows]
    labels = {g.id: g.label for run in options.runs for g in store.gaps(run)}
    gap_reports = {
        run: GapReport.model_validate_json(raw)
        for run in options.runs
        if (raw := store.gap_report_json(run)) is not None
    }
    data = EvalInput(
        source=f"export of {', '.join(options.runs)}",
        rows=len(examples),
        examples=examples,
        gaps=gaps,
        labels=labels,
        human_reviewed={i for i, entry in enumerate(rows) if entry.approved is not None},
        gap_reports=gap_reports,
        # Each reviewed row counts into its own run's gaps; merged existing rows are the gaps'
        # "have" already, so counting them again would report them as gains.
        row_runs=[entry.approved.item["run_id"] if entry.approved else None for entry in rows],
        counted="the rows this export adds from its runs (merged existing rows are not counted)",
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
    hashes = write_reports(evaluation, staging, gaps)
    return Reports(hashes, evaluation.report.model_dump_json())
