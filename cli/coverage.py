"""What a dataset does not cover: ``gapfill gaps``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.choices import OverlapRule
from cli.common import console, open_store, settings_of, user_errors
from cli.tables import print_report
from generator.charts import gap_chart
from generator.config import Settings
from generator.coverage import (
    DEFAULT_REFERENCE_THRESHOLD,
    GapReport,
    analyse,
    count_into_gaps,
    load_reference,
    load_taxonomy,
)
from generator.dataset_reader import read_examples
from generator.embeddings import Embedder
from generator.errors import ConfigError
from generator.factories import make_embedder
from generator.filters.contamination import load_eval_items
from generator.filters.settings import load_filter_settings
from generator.prompts import PromptTemplates, tasks_for_gap
from generator.run_inputs import pack_run
from generator.schema import CandidateKind, ReviewSettings, RunConfig


@user_errors
def gaps(
    ctx: typer.Context,
    *,
    data: Annotated[
        Path | None, typer.Option(help="The existing dataset (any format `validate` reads).")
    ] = None,
    taxonomy: Annotated[Path | None, typer.Option(help="Taxonomy YAML: cells and targets.")] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Reference prompts (JSONL/Parquet), optionally labelled.")
    ] = None,
    label_field: Annotated[
        str | None, typer.Option(help="Reference label field (default: 'label').")
    ] = None,
    run: Annotated[
        str | None, typer.Option(help="Store the gaps and their generation tasks in this run.")
    ] = None,
    kind: Annotated[
        CandidateKind, typer.Option(help="What the run generates.")
    ] = CandidateKind.SFT,
    threshold: Annotated[
        float, typer.Option(help="Reference prompts below this similarity are uncovered.")
    ] = DEFAULT_REFERENCE_THRESHOLD,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    png_out: Annotated[
        Path | None, typer.Option("--png", help="Write a have/target chart.")
    ] = None,
    compare: Annotated[
        str | None, typer.Option(help="Show a stored run's gaps before/after its accepted items.")
    ] = None,
    eval_sets: Annotated[
        list[Path] | None,
        typer.Option("--eval", help="With --run: an eval set its candidates must not leak."),
    ] = None,
    filter_config: Annotated[
        Path | None,
        typer.Option("--filters", help="With --run: YAML with a filters: section (thresholds)."),
    ] = None,
    reviewers_per_item: Annotated[
        int,
        typer.Option(min=1, max=10, help="With --run: overlap, k different reviewers per item."),
    ] = 1,
    overlap_rule: Annotated[
        OverlapRule, typer.Option(help="With --run: how k votes settle an item.")
    ] = OverlapRule.MAJORITY,
) -> None:
    """Measure what the dataset does not cover; with --run, store the gaps and their tasks."""
    settings = settings_of(ctx)
    embedder = make_embedder(settings)
    if compare is not None:
        _compare(settings, embedder, compare, png_out)
        return
    if data is None:
        raise ConfigError("give --data FILE (the existing dataset), or --compare RUN")
    review = ReviewSettings.model_validate(
        {"reviewers_per_item": reviewers_per_item, "overlap_rule": overlap_rule.value}
    )
    filters = load_filter_settings(filter_config)
    for eval_set in eval_sets or []:
        load_eval_items(eval_set)  # a bad eval set fails now, not in every scoring job
    cells = load_taxonomy(taxonomy) if taxonomy else None
    prompts = load_reference(reference, label_field) if reference else None
    examples = [row.example for row in read_examples(data).examples]
    report = analyse(
        run or "preview",
        data,
        examples,
        embedder,
        taxonomy=cells,
        taxonomy_path=str(taxonomy) if taxonomy else None,
        reference=prompts,
        reference_path=str(reference) if reference else None,
        reference_threshold=threshold,
    )
    templates = PromptTemplates()
    tasks = [t for gap in report.gaps for t in tasks_for_gap(gap, templates, kind=kind)]
    if run is not None:  # everything above validated: only now write
        store = open_store(settings)
        config = RunConfig(
            run_id=run,
            kind=kind,
            description=f"gaps of {data}",
            existing=[str(data.resolve())],
            eval_sets=[str(p.resolve()) for p in eval_sets or []],
            filters=filters,
            review=review,
        )
        # Its inputs go into the store first, so no worker sees the run without them.
        packed = pack_run(store, config, embedder, templates)
        store.save_gaps(run, report.gaps, report.model_dump_json())
        store.save_run(packed)
        added = store.add_tasks(tasks)
    print_report(report)
    if run is not None:
        console.print(
            f"run {run!r}: {len(report.gaps)} gaps stored, {added} generation tasks added "
            f"(gapfill generate --run {run})",
            highlight=False,
        )
    if json_out is not None:
        _write_json(json_out, report.to_json())
    if png_out is not None:
        gap_chart(report.gaps, png_out, f"coverage of {Path(data).name}")


def _compare(settings: Settings, embedder: Embedder, run_id: str, png_out: Path | None) -> None:
    store = open_store(settings)
    raw = store.gap_report_json(run_id)
    if raw is None:
        raise ConfigError(
            f"run {run_id!r} has no gap report (run gapfill gaps --run {run_id} first)"
        )
    report = GapReport.model_validate_json(raw)
    accepted = store.accepted_payloads(run_id)
    gained = count_into_gaps(report, [p.prompt_text() for p in accepted], embedder)
    after = {gap.id: gap.have + gained[gap.id] for gap in report.gaps}
    console.print(f"run {run_id!r}: {len(accepted)} accepted items counted in", highlight=False)
    print_report(report, after)
    if png_out is not None:
        gap_chart(report.gaps, png_out, f"run {run_id}: before and after review", after)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    temporary.replace(path)
