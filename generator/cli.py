"""The ``gapfill`` command line.

User errors (``GapfillError``) print one line on stderr and exit 1; usage errors exit 2 (typer).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from generator import __version__, reviewers
from generator.backends import BACKENDS, BackendOptions
from generator.campaign import CampaignConfig, load_campaign, plan
from generator.charts import gap_chart
from generator.config import Settings, load_settings
from generator.connection import connect, eviction_warning, redis_url
from generator.coverage import (
    DEFAULT_REFERENCE_THRESHOLD,
    GapReport,
    analyse,
    count_into_gaps,
    load_reference,
    load_taxonomy,
)
from generator.dataset_import import ingest_file
from generator.dataset_reader import FORMATS, Format, read_examples
from generator.embeddings import Embedder
from generator.errors import ConfigError, GapfillError
from generator.evaluation.runner import EvalOptions, evaluate, read_input, write_reports
from generator.export.audit import read_audit
from generator.export.writer import ExportOptions, export
from generator.filters.contamination import load_eval_items
from generator.filters.file_scoring import score_file
from generator.filters.settings import load_filter_settings
from generator.progress import RunProgress
from generator.prompts import PromptTemplates, tasks_for_gap
from generator.queueing import WorkQueue
from generator.redis_server import BundledServer
from generator.schema import CandidateKind, CandidateStatus, ReviewSettings, RunConfig
from generator.store import Store
from generator.task_reader import read_tasks

app = typer.Typer(
    name="gapfill",
    help="Find coverage gaps in a fine-tuning dataset, generate candidates for them, filter, "
    "review and export what humans approved.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
server_app = typer.Typer(help="Start, stop or inspect the bundled Valkey server.")
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
    _print_queues(settings, store, runs)


def _print_queues(settings: Settings, store: Store, runs: list[str]) -> None:
    work = WorkQueue(
        store, connect(redis_url(settings), decode_responses=False), settings.queue_settings()
    )
    for run_id in runs:
        done, total = store.task_counts(run_id)
        if total:
            console.print(f"{run_id}: generation tasks {done}/{total} done", highlight=False)
    for queue, figures in work.depths().items():
        counts = ", ".join(f"{value} {name}" for name, value in figures.items())
        console.print(f"queue {queue}: {counts}", highlight=False)
    for queue, job_id, error in work.failed_jobs():
        console.print(f"[red]failed job[/] {job_id} on {queue}: {escape(error)}", highlight=False)


def _figures(row: dict[str, int]) -> list[str]:
    return [str(row.get(s, 0)) for s in _STATUS_COLUMNS] + [str(sum(row.values()))]


def _where(settings: Settings) -> str:
    if settings.redis_url:
        return f"store: {settings.redis_url} prefix {settings.key_prefix!r}"
    return f"store: bundled Valkey in {settings.data_dir} prefix {settings.key_prefix!r}"


@server_app.command("start")
@user_errors
def server_start(ctx: typer.Context) -> None:
    """Start the bundled server (or report the one already running)."""
    settings = _settings(ctx)
    info = BundledServer(settings.data_dir, appendfsync=settings.appendfsync).ensure_running()
    console.print(f"bundled Valkey running: pid {info.pid}, {info.url}, data in {info.data_dir}")


@server_app.command("stop")
@user_errors
def server_stop(ctx: typer.Context) -> None:
    """Stop the bundled server cleanly (its AOF is flushed first)."""
    settings = _settings(ctx)
    stopped = BundledServer(settings.data_dir).stop()
    console.print("bundled Valkey stopped" if stopped else "bundled Valkey was not running")


@server_app.command("info")
@user_errors
def server_info(ctx: typer.Context) -> None:
    """Which server the store uses, and whether it is running."""
    settings = _settings(ctx)
    if settings.redis_url:
        console.print(f"REDIS_URL is set: using {settings.redis_url}; no bundled server is used")
        return
    info = BundledServer(settings.data_dir).info()
    if info is None:
        console.print(f"bundled Valkey not running (data dir {settings.data_dir})")
        raise typer.Exit(3)
    console.print(f"bundled Valkey running: pid {info.pid}, {info.url}, data in {info.data_dir}")


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
    skip_invalid: Annotated[
        bool, typer.Option(help="Store the valid rows and list the invalid ones with reasons.")
    ] = False,
) -> None:
    """Put a dataset's rows in the review queue. All or nothing: one bad row stores none
    (unless --skip-invalid)."""
    chosen: Format | None = row_format  # type: ignore[assignment]  # checked by read_examples
    result = ingest_file(
        _store(_settings(ctx)), file, run, row_format=chosen, gap_id=gap, skip_invalid=skip_invalid
    )
    console.print(
        f"{file}: {result.rows} rows ({result.format}); {result.stored} stored in run {run!r}, "
        f"{result.already_present} already present, {len(result.skipped)} invalid skipped",
        highlight=False,
    )
    for error in result.skipped:
        console.print(f"  skipped {escape(str(error))}", highlight=False)


# -- coverage -----------------------------------------------------------------------------------


@app.command()
@user_errors
def gaps(
    ctx: typer.Context,
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
    kind: Annotated[str, typer.Option(help="What the run generates: sft or preference.")] = "sft",
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
        str, typer.Option(help="With --run: how k votes settle an item: majority or unanimous.")
    ] = "majority",
) -> None:
    """Measure what the dataset does not cover; with --run, store the gaps and their tasks."""
    settings = _settings(ctx)
    embedder = Embedder(
        settings.embedding_model,
        cache_dir=settings.data_dir / "cache",
        max_tokens=settings.embedding_max_tokens,
    )
    if compare is not None:
        _compare(settings, embedder, compare, png_out)
        return
    if data is None:
        raise ConfigError("give --data FILE (the existing dataset), or --compare RUN")
    if kind not in ("sft", "preference"):
        raise ConfigError(f"--kind: {kind!r} is not sft or preference")
    if overlap_rule not in ("majority", "unanimous"):
        raise ConfigError(f"--overlap-rule: {overlap_rule!r} is not majority or unanimous")
    review = ReviewSettings.model_validate(
        {"reviewers_per_item": reviewers_per_item, "overlap_rule": overlap_rule}
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
    tasks = [
        t for gap in report.gaps for t in tasks_for_gap(gap, templates, kind=CandidateKind(kind))
    ]
    if run is not None:  # everything above validated: only now write
        store = _store(settings)
        store.save_gaps(run, report.gaps, report.model_dump_json())
        store.save_run(
            RunConfig(
                run_id=run,
                kind=CandidateKind(kind),
                description=f"gaps of {data}",
                existing=[str(data.resolve())],
                eval_sets=[str(p.resolve()) for p in eval_sets or []],
                filters=filters,
                review=review,
            )
        )
        added = store.add_tasks(tasks)
    _print_report(report)
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


def _print_report(report: GapReport, after: dict[str, int] | None = None) -> None:
    table = Table(title=f"gaps of {report.data} ({report.data_rows} examples)")
    columns = ["gap", "kind", "label", "have", *(["after"] if after else []), "target", "deficit"]
    for column in [*columns, "examples"]:
        table.add_column(
            column,
            justify="right" if column in ("have", "after", "target", "deficit") else "left",
            overflow="fold",
        )
    for gap in report.gaps:
        moved = [str(after[gap.id])] if after else []
        deficit = max(gap.target - after[gap.id], 0) if after else gap.deficit
        example = gap.examples[0][:70] if gap.examples else ""
        table.add_row(
            gap.id,
            gap.kind,
            escape(gap.label),
            str(gap.have),
            *moved,
            str(gap.target),
            str(deficit),
            escape(example),
        )
    console.print(table)
    if report.taxonomy:
        console.print(
            f"unassigned examples (no cell close enough): {report.unassigned}", highlight=False
        )
    if report.covered_share is not None:
        uncovered = sum(not r.covered for r in report.reference_coverage)
        console.print(
            f"reference prompts covered: {report.covered_share:.0%} "
            f"({uncovered} of {len(report.reference_coverage)} uncovered, "
            f"similarity < {report.reference_threshold})",
            highlight=False,
        )


def _compare(settings: Settings, embedder: Embedder, run_id: str, png_out: Path | None) -> None:
    store = _store(settings)
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
    _print_report(report, after)
    if png_out is not None:
        gap_chart(report.gaps, png_out, f"run {run_id}: before and after review", after)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    temporary.replace(path)


# -- scoring ------------------------------------------------------------------------------------


@app.command()
@user_errors
def score(
    ctx: typer.Context,
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
    settings = _settings(ctx)
    filters = load_filter_settings(filter_config)
    embedder = Embedder(
        settings.embedding_model,
        cache_dir=settings.data_dir / "cache",
        max_tokens=settings.embedding_max_tokens,
    )
    summary = score_file(
        file,
        out,
        settings=filters,
        existing=existing,
        evals=eval_sets,
        embedder=embedder,
        index_cache=settings.data_dir / "indexes",
    )
    failures = ", ".join(f"{name} {count}" for name, count in summary.failures.most_common())
    console.print(
        f"{file}: {summary.rows} rows: {summary.review} to review, {summary.rejected} rejected"
        + (f" (failed: {failures})" if failures else "")
        + f"; scores in {out}",
        highlight=False,
    )


# -- generation ---------------------------------------------------------------------------------

BackendName = Annotated[
    str, typer.Option("--backend", "-b", help=f"LLM backend: {', '.join(BACKENDS)}.")
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Model: a local directory (local, vllm) or a served name (openai)."
    ),
]
BaseUrl = Annotated[
    str | None,
    typer.Option(envvar="OPENAI_BASE_URL", help="openai: the endpoint, e.g. http://host:8000/v1"),
]
ApiKey = Annotated[str, typer.Option(envvar="OPENAI_API_KEY", help="openai: the API key.")]
EngineBatch = Annotated[int, typer.Option(help="local: prompts per forward batch.")]
Device = Annotated[str, typer.Option(help="local: auto, cpu or cuda.")]
Concurrency = Annotated[int, typer.Option(help="openai: concurrent requests at most.")]
TensorParallel = Annotated[int, typer.Option(help="vllm: GPUs per engine.")]
GpuMemory = Annotated[float, typer.Option(help="vllm: share of GPU memory for the engine.")]
MaxModelLen = Annotated[int | None, typer.Option(help="vllm: context length limit.")]
DType = Annotated[str, typer.Option(help="vllm: dtype (auto, float32, bfloat16...).")]
EnforceEager = Annotated[bool, typer.Option(help="vllm: skip CUDA graph capture.")]
ChunkedPrefill = Annotated[
    bool | None,
    typer.Option(
        "--chunked-prefill/--no-chunked-prefill",
        help="vllm: chunked prefill (default: vLLM's; off on its CPU build).",
    ),
]


def _backend_options(
    base_url: str | None,
    api_key: str,
    engine_batch: int,
    device: str,
    concurrency: int,
    tensor_parallel: int,
    gpu_memory: float,
    max_model_len: int | None,
    dtype: str,
    enforce_eager: bool,
    chunked_prefill: bool | None = None,
) -> BackendOptions:
    try:
        return BackendOptions(
            base_url=base_url,
            api_key=api_key,
            batch_size=engine_batch,
            device=device,  # validated by pydantic
            max_concurrency=concurrency,
            tensor_parallel_size=tensor_parallel,
            gpu_memory_utilization=gpu_memory,
            max_model_len=max_model_len,
            dtype=dtype,
            enforce_eager=enforce_eager,
            chunked_prefill=chunked_prefill,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from exc


@app.command()
@user_errors
def worker(
    ctx: typer.Context,
    backend: BackendName = "local",
    model: ModelOption = None,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: this prefix's two).")
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit when the queues are empty.")] = False,
    name: Annotated[str | None, typer.Option(help="Worker name (default: host and pid).")] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = "EMPTY",
    engine_batch: EngineBatch = 8,
    device: Device = "auto",
    concurrency: Concurrency = 8,
    tensor_parallel: TensorParallel = 1,
    gpu_memory: GpuMemory = 0.9,
    max_model_len: MaxModelLen = None,
    dtype: DType = "auto",
    enforce_eager: EnforceEager = False,
    chunked_prefill: ChunkedPrefill = None,
) -> None:
    """Serve generation and scoring jobs; the backend is loaded once, before any job is taken."""
    from workers.main import WorkerSpec, run_worker

    options = _backend_options(
        base_url,
        api_key,
        engine_batch,
        device,
        concurrency,
        tensor_parallel,
        gpu_memory,
        max_model_len,
        dtype,
        enforce_eager,
        chunked_prefill,
    )
    spec = WorkerSpec(
        backend=backend,
        model=model,
        options=options,
        queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
        name=name,
    )
    run_worker(_settings(ctx), spec, burst=burst)


@app.command()
@user_errors
def generate(
    ctx: typer.Context,
    run: Annotated[str, typer.Option(help="The run whose open tasks to generate.")],
    requests: Annotated[
        Path | None, typer.Option(help="Add these tasks to the run first (JSONL, one per line).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Show progress until the run is done.")] = False,
    in_process: Annotated[
        bool, typer.Option(help="Run a burst worker in this process instead of external ones.")
    ] = False,
    batch_size: Annotated[
        int | None, typer.Option(help="Tasks per job (default: generate_batch_size).")
    ] = None,
    backend: BackendName = "local",
    model: ModelOption = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = "EMPTY",
    engine_batch: EngineBatch = 8,
    device: Device = "auto",
    concurrency: Concurrency = 8,
    tensor_parallel: TensorParallel = 1,
    gpu_memory: GpuMemory = 0.9,
    max_model_len: MaxModelLen = None,
    dtype: DType = "auto",
    enforce_eager: EnforceEager = False,
    chunked_prefill: ChunkedPrefill = None,
) -> None:
    """Enqueue a run's open generation tasks as batch jobs (and optionally run or watch them)."""
    settings = _settings(ctx)
    if batch_size is not None:
        settings = settings.model_copy(update={"generate_batch_size": batch_size})
    store = _store(settings)
    if requests is not None:
        added = store.add_tasks(read_tasks(requests, run))
        console.print(f"{requests}: {added} new tasks in run {run!r}", highlight=False)
    spec = None
    if in_process:
        from workers.main import WorkerSpec, load_backend

        options = _backend_options(
            base_url,
            api_key,
            engine_batch,
            device,
            concurrency,
            tensor_parallel,
            gpu_memory,
            max_model_len,
            dtype,
            enforce_eager,
        )
        spec = WorkerSpec(backend=backend, model=model, options=options)
        seconds = load_backend(settings, spec)  # before enqueueing: a bad backend loses no work
        console.print(f"backend {backend} loaded in {seconds:.1f}s", highlight=False)
    work = WorkQueue(
        store, connect(redis_url(settings), decode_responses=False), settings.queue_settings()
    )
    enqueued = work.enqueue_tasks(run)
    console.print(
        f"run {run!r}: {enqueued.tasks} tasks enqueued in {len(enqueued.jobs)} jobs "
        f"on {work.generate.name}",
        highlight=False,
    )
    if spec is not None:
        _run_in_process(settings, spec, store, work, run)
    elif wait:
        RunProgress(store, run, console).watch(lambda: not work.busy())
    _print_outcome(store, work, run)


def _run_in_process(
    settings: Settings, spec: Any, store: Store, work: WorkQueue, run_id: str
) -> None:
    from workers.main import make_worker

    progress = RunProgress(store, run_id, console)
    stop = progress.in_background()
    try:
        # Burst until nothing is queued, running or waiting for a retry (retries are scheduled).
        while True:
            make_worker(settings, spec).work(burst=True, with_scheduler=True, logging_level="ERROR")
            if not work.busy():
                break
            time.sleep(1.0)
    finally:
        stop()


def _print_outcome(store: Store, work: WorkQueue, run_id: str) -> None:
    done, total = store.task_counts(run_id)
    stats = store.run_stats(run_id)
    console.print(
        f"run {run_id!r}: {done}/{total} tasks done, {int(stats.get('candidates', 0))} candidates, "
        f"{int(stats.get('completion_tokens', 0))} tokens generated",
        highlight=False,
    )
    for queue, job_id, error in work.failed_jobs():
        err_console.print(
            f"[red]failed job[/] {job_id} on {queue}: {escape(error)}", highlight=False
        )


# -- campaigns -----------------------------------------------------------------------------------

DEMO_SIZES = {"small": {"gaps": 3, "per_gap": 4}, "medium": {"gaps": 5, "per_gap": 10}}


def _examples_dir() -> Path:
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (base / "examples" / "demo" / "campaign.yaml").is_file():
            return base / "examples"
    raise ConfigError("examples/demo not found: run gapfill demo from the project directory")


def _campaign(
    ctx: typer.Context, config: CampaignConfig, workers: str, show_ui: bool, port: int
) -> None:
    settings = _settings(ctx)
    store = _store(settings)
    embedder = Embedder(
        settings.embedding_model,
        cache_dir=settings.data_dir / "cache",
        max_tokens=settings.embedding_max_tokens,
    )
    console.rule(f"1/4 gaps of {config.data.name}")
    planned = plan(config, store, embedder)
    _print_report(planned.report)
    console.print(
        f"run {config.run!r}: {planned.tasks} generation tasks for the largest gaps "
        f"({', '.join(planned.chosen)})",
        highlight=False,
    )
    work = WorkQueue(
        store, connect(redis_url(settings), decode_responses=False), settings.queue_settings()
    )
    if workers == "external":
        enqueued = work.enqueue_tasks(config.run)
        console.print(
            f"{enqueued.tasks} tasks enqueued in {len(enqueued.jobs)} jobs: start workers with "
            f"`gapfill worker --backend {config.backend}` (watch: gapfill status --run "
            f"{config.run})",
            highlight=False,
        )
        return
    from workers.main import WorkerSpec, load_backend

    console.rule(f"2/4 generate and score ({config.backend} backend, in this process)")
    options = BackendOptions(base_url=config.base_url) if config.base_url else BackendOptions()
    spec = WorkerSpec(backend=config.backend, model=config.model, options=options)
    seconds = load_backend(settings, spec)
    console.print(f"backend loaded in {seconds:.1f}s", highlight=False)
    work.enqueue_tasks(config.run)
    _run_in_process(settings, spec, store, work, config.run)
    _print_outcome(store, work, config.run)
    console.rule("3/4 the funnel: generated -> auto-rejected -> pending review")
    status(ctx, run=config.run)
    if not show_ui:
        console.print(
            f"next: gapfill ui --local, then gapfill export --run {config.run} --kind "
            f"{config.kind} --out DIR",
            highlight=False,
        )
        return
    console.rule("4/4 review")
    ui(ctx, port=port, host="127.0.0.1", local=True, oidc=False)


@app.command("run")
@user_errors
def run_command(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="The campaign's YAML config.")],
    workers: Annotated[
        str, typer.Option(help="inprocess (a burst worker here) or external (enqueue only).")
    ] = "inprocess",
    show_ui: Annotated[
        bool, typer.Option("--ui/--no-ui", help="Then serve the review UI.")
    ] = False,
    port: Annotated[int, typer.Option(help="The review UI's port.")] = 8501,
) -> None:
    """The whole loop for a campaign: gaps, generation, scoring, then review."""
    if workers not in ("inprocess", "external"):
        raise ConfigError(f"--workers: {workers!r} is not inprocess or external")
    _campaign(ctx, load_campaign(config), workers, show_ui, port)


@app.command("demo")
@user_errors
def demo_command(
    ctx: typer.Context,
    size: Annotated[str, typer.Option(help="small (minutes on a laptop CPU) or medium.")] = "small",
    show_ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Then serve the review UI.")] = True,
    port: Annotated[int, typer.Option(help="The review UI's port.")] = 8501,
) -> None:
    """The main job on bundled defaults: the self-instruct seed tasks' gaps against real user
    traffic, filled by the bundled model, scored, and put up for review."""
    if size not in DEMO_SIZES:
        raise ConfigError(f"--size: {size!r} is not small or medium")
    config = load_campaign(_examples_dir() / "demo" / "campaign.yaml", dict(DEMO_SIZES[size]))
    _campaign(ctx, config, "inprocess", show_ui, port)


# -- export -------------------------------------------------------------------------------------


@app.command("export")
@user_errors
def export_command(
    ctx: typer.Context,
    run: Annotated[list[str], typer.Option("--run", help="A run to export (repeat for several).")],
    kind: Annotated[str, typer.Option(help="sft or preference.")],
    out: Annotated[Path, typer.Option(help="The export directory.")],
    row_format: Annotated[str, typer.Option("--format", help="jsonl or parquet.")] = "jsonl",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    merge: Annotated[
        Path | None, typer.Option(help="An existing dataset merged in (generated duplicates drop).")
    ] = None,
    eval_fraction: Annotated[
        float, typer.Option(help="Share held out as eval.jsonl (near duplicates kept together).")
    ] = 0.0,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Tokenizer directory for the length check (default: the bundled SmolLM2)."
        ),
    ] = None,
    max_length: Annotated[
        int, typer.Option(help="Tokens under the chat template, at most.")
    ] = 2048,
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
    eval_sets: Annotated[
        list[Path] | None, typer.Option("--eval", help="An eval set the report checks against.")
    ] = None,
    judge: Annotated[
        str | None, typer.Option(help="BACKEND/MODEL judging in the eval report.")
    ] = None,
) -> None:
    """Write what reviewers accepted as a TRL-ready dataset with manifest, card, provenance and
    the stage's eval and safety reports."""
    settings = _settings(ctx)
    if kind not in ("sft", "preference"):
        raise ConfigError(f"--kind: {kind!r} is not sft or preference")
    try:
        options = ExportOptions(
            runs=run,
            kind=CandidateKind(kind),
            format=row_format,
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
        )
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"export: {_first_error(exc)}") from exc
    for eval_set in options.eval_sets:
        load_eval_items(eval_set)  # a bad eval set fails before any work
    embedder = Embedder(
        settings.embedding_model,
        cache_dir=settings.data_dir / "cache",
        max_tokens=settings.embedding_max_tokens,
    )
    result = export(_store(settings), options, settings.data_dir, embedder)
    rows = ", ".join(f"{name} {n}" for name, n in result.rows.items())
    console.print(f"{out}: {rows} rows; export {result.export_id[:12]}", highlight=False)
    if result.excluded or result.refused:
        console.print(
            f"{len(result.excluded)} excluded, {len(result.refused)} refused (PII/secret flag "
            f"not cleared); reasons in {out / 'excluded.jsonl'}",
            highlight=False,
        )
        for item_id, reason in [*result.excluded, *result.refused][:5]:
            console.print(f"  {item_id}: {reason}", highlight=False)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        return f"{where}: {error['msg']}" if where else str(error["msg"])
    return str(exc)


# -- evaluation ---------------------------------------------------------------------------------


@app.command("eval")
@user_errors
def eval_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A dataset file (any format `validate` reads).")],
    stage: Annotated[str, typer.Option(help="sft or preference.")],
    out: Annotated[Path, typer.Option(help="Directory for the report files.")],
    eval_sets: Annotated[
        list[Path] | None, typer.Option("--eval", help="An eval set to check for contamination.")
    ] = None,
    judge: Annotated[
        str | None, typer.Option(help="BACKEND/MODEL for the LLM judge, e.g. local/bundled.")
    ] = None,
    judge_sample: Annotated[int, typer.Option(help="Rows the judge sees.")] = 50,
    existing: Annotated[
        Path | None, typer.Option(help="The existing dataset, to compare diversity with.")
    ] = None,
    run: Annotated[
        str | None, typer.Option(help="A run whose gap report gives the coverage before/after.")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer directory (default: the bundled model's).")
    ] = None,
    max_length: Annotated[
        int, typer.Option(help="Tokens under the chat template, at most.")
    ] = 2048,
) -> None:
    """Evaluate a dataset for its training stage: format, refusals, diversity, contamination,
    safety (and, for preference data, pair quality and the judge's win rate)."""
    settings = _settings(ctx)
    data = read_input(file, stage)  # type: ignore[arg-type]  # checked there
    options = EvalOptions(
        stage=stage,
        eval_sets=eval_sets or [],
        existing=existing,
        judge=judge,
        judge_sample=judge_sample,
        tokenizer=tokenizer,
        max_length=max_length,
    )
    for eval_set in options.eval_sets:
        load_eval_items(eval_set)  # a bad eval set fails before any work
    store = _store(settings) if run else None
    if store is not None and run is not None:
        raw = store.gap_report_json(run)
        if raw is None:
            raise ConfigError(f"--run {run}: no gap report stored for it")
        data.gap_report = GapReport.model_validate_json(raw)
    embedder = Embedder(
        settings.embedding_model,
        cache_dir=settings.data_dir / "cache",
        max_tokens=settings.embedding_max_tokens,
    )
    evaluation = evaluate(data, options, embedder, settings.data_dir)
    write_reports(evaluation, out, data.gaps)
    if store is not None and run is not None:
        store.save_eval_report(run, evaluation.report.model_dump_json())
    report = evaluation.report
    fmt = report.format
    console.print(
        f"{file}: {report.rows} {stage} rows ({fmt['valid']} of {fmt['rows']} valid); "
        f"refusals {report.refusals['share']:.1%}; over {max_length} tokens "
        f"{fmt['over_max_length']}; PII {report.safety['pii_rows']}, unsafe "
        f"{report.safety['unsafe_rows']}; report in {out / 'eval_report.md'}",
        highlight=False,
    )


@app.command("audit")
@user_errors
def audit_command(
    export_dir: Annotated[Path, typer.Argument(help="An export directory (with manifest.json).")],
) -> None:
    """Print an export's stage-audit record, check its file hashes, and name missing fields."""
    record = read_audit(export_dir)
    table = Table(title=f"stage audit of {export_dir}")
    table.add_column("field")
    table.add_column("value")
    for name, value in record.fields.items():
        table.add_row(name, escape(value if value else "[missing]"))
    console.print(table)
    for problem in record.problems:
        console.print(f"[red]{escape(problem)}[/]", highlight=False)
    missing = [name for name, value in record.fields.items() if not value]
    console.print(f"missing: {', '.join(missing) if missing else 'none'}", highlight=False)
    if record.problems:
        raise typer.Exit(1)


# -- review -------------------------------------------------------------------------------------

reviewer_app = typer.Typer(help="Reviewer tokens for the review UI.", no_args_is_help=True)
app.add_typer(reviewer_app, name="reviewer")


@reviewer_app.command("add")
@user_errors
def reviewer_add(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The reviewer's id.")]
) -> None:
    """Create a reviewer token (printed once; only its hash is stored)."""
    settings = _settings(ctx)
    token = reviewers.add(settings.data_dir, name)
    console.print(f"reviewer {name!r}: token {token}", highlight=False)
    console.print("Give it to the reviewer; it is not shown again.", highlight=False)


@app.command()
@user_errors
def ui(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 for all).")] = "127.0.0.1",
    local: Annotated[
        bool, typer.Option(help="Single-user mode: decisions carry the OS user name.")
    ] = False,
    oidc: Annotated[
        bool, typer.Option(help="Sign in with st.login (an [auth] section in secrets.toml).")
    ] = False,
) -> None:
    """Start the Streamlit review UI against the configured store."""
    settings = _settings(ctx)
    url = redis_url(settings)  # starts the bundled server first when no REDIS_URL is set
    connect(url).ping()
    mode = "local" if local else "oidc" if oidc else "tokens"
    if mode == "tokens" and not reviewers.load(settings.data_dir):
        raise ConfigError("no reviewers yet: run gapfill reviewer add NAME (or use --local)")
    env = {
        **os.environ,
        "GAPFILL_UI_AUTH": mode,
        "GAPFILL_REDIS_URL": url,
        "GAPFILL_DATA_DIR": str(settings.data_dir),
        "GAPFILL_KEY_PREFIX": settings.key_prefix,
        "GAPFILL_LEASE_SECONDS": str(settings.lease_seconds),
    }
    app_path = Path(__file__).resolve().parents[1] / "review_ui" / "app.py"
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.port", str(port), "--server.address", host, "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    console.print(f"review UI on http://{host}:{port} ({mode} sign-in)", highlight=False)
    raise typer.Exit(subprocess.call(command, env=env))


@app.command("requeue-failed")
@user_errors
def requeue_failed(ctx: typer.Context) -> None:
    """Put every failed generation and scoring job back on its queue."""
    settings = _settings(ctx)
    store = _store(settings)
    work = WorkQueue(
        store, connect(redis_url(settings), decode_responses=False), settings.queue_settings()
    )
    console.print(f"requeued {work.requeue_failed()} failed jobs", highlight=False)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return app(args=argv if argv is not None else sys.argv[1:], prog_name="gapfill")


if __name__ == "__main__":
    main()
