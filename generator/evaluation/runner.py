"""Run the evaluation: a dataset file (or an export's rows) in, the report files out."""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from generator.charts import bar_chart, histogram_chart
from generator.coverage import GapReport, gaps_of
from generator.dataset_reader import read_examples
from generator.embeddings import Embedder
from generator.errors import ConfigError, DataFileError
from generator.evaluation import metrics
from generator.evaluation.measured import measured_on
from generator.evaluation.report import (
    CoverageSection,
    EvalReport,
    GapCoverage,
    MeasuredOn,
    PreferenceJudge,
    PreferenceSection,
    Seconds,
    SFTJudge,
    markdown,
)
from generator.export.checks import DEFAULT_MAX_LENGTH, LengthCheck, load_tokenizer
from generator.filters.contamination import ContaminationFilter, load_eval_items
from generator.schema import PreferenceExample, SFTExample

Stage = Literal["sft", "preference"]
STAGES = ("sft", "preference")
REPORT_FILES = (
    "eval_report.json",
    "eval_report.md",
    "safety_report.json",
    "lengths.png",
    "gaps.png",
)


class EvalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Stage
    eval_sets: list[Path] = Field(default_factory=list)
    existing: Path | None = None
    judge: str | None = Field(default=None, description="BACKEND/MODEL, e.g. local/bundled")
    judge_sample: int = Field(default=50, ge=1)
    tokenizer: str | None = None
    max_length: int = Field(default=DEFAULT_MAX_LENGTH, ge=16)


@dataclass(kw_only=True)
class EvalInput:
    source: str
    rows: int
    examples: list[metrics.Example]
    invalid: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # per example; UNKNOWN_GAP when unknown
    labels: dict[str, str] = field(default_factory=dict)
    human_reviewed: set[int] = field(default_factory=set)
    # Coverage: the gap report of each run, and per example the run whose gaps it counts into
    # (None: a merged existing row, not counted: existing data, not added; a run without a gap
    # report: not counted either). Without ``row_runs`` every row counts into every report.
    gap_reports: dict[str, GapReport] = field(default_factory=dict)
    row_runs: list[str | None] | None = None
    counted: str = "every row"
    # Per run, what its gaps were measured on next to what was merged (default: nothing merged).
    measured_on: dict[str, MeasuredOn] = field(default_factory=dict)


UNKNOWN_GAP = "none"  # a row of a dataset file, whose gap nobody recorded
NO_GAP = "no gap"  # a row that counts into none of the run's gaps


@dataclass
class Evaluation:
    report: EvalReport
    token_counts: list[int]


def read_input(path: Path, stage: Stage) -> EvalInput:
    """Every row of a dataset file; rows of the other kind count as invalid."""
    if stage not in STAGES:
        raise ConfigError(f"--stage: {stage!r} is not sft or preference")
    report = read_examples(path, collect_errors=True)
    wanted = SFTExample if stage == "sft" else PreferenceExample
    examples = [r.example for r in report.examples if isinstance(r.example, wanted)]
    if not examples:
        held = "no valid rows" if not report.examples else "only other rows"
        other = "preference" if stage == "sft" else "sft"
        if report.examples:
            held = f"{other} rows, not {stage} rows"
        raise DataFileError(f"{path}: {held} for --stage {stage}")
    invalid = [str(e) for e in report.errors]
    invalid += [
        f"{path}:{r.line}: a {type(r.example).__name__} row in a {stage} evaluation"
        for r in report.examples
        if not isinstance(r.example, wanted)
    ]
    return EvalInput(
        source=str(path),
        rows=report.rows,
        examples=examples,
        invalid=invalid,
        gaps=[UNKNOWN_GAP] * len(examples),
    )


def _conversations(example: metrics.Example) -> list[list[dict[str, str]]]:
    if isinstance(example, SFTExample):
        return [[m.model_dump() for m in example.messages]]
    prompt = [m.model_dump() for m in example.prompt]
    return [
        prompt + [m.model_dump() for m in example.chosen],
        prompt + [m.model_dump() for m in example.rejected],
    ]


def _token_counts(examples: list[metrics.Example], lengths: LengthCheck) -> list[int]:
    """Per row, its longest conversation in tokens (a pair trains on both of its)."""
    spans, flat = [], []
    for example in examples:
        conversations = _conversations(example)
        spans.append(len(conversations))
        flat.extend(conversations)
    counts = lengths.count(flat)
    out, position = [], 0
    for span in spans:
        out.append(max(counts[position : position + span]))
        position += span
    return out


def judge_backend(spec: str, data_dir: Path) -> Any:
    from generator.backends import BackendOptions, create_backend
    from generator.bundled_model import is_bundled

    name, _, model = spec.partition("/")
    if not name or not model:
        raise ConfigError(f"--judge {spec!r}: expected BACKEND/MODEL, e.g. local/bundled")
    backend = create_backend(
        name,
        None if is_bundled(model) else model,
        BackendOptions(),
        data_dir=data_dir,
    )
    backend.load()
    return backend


def _judge(
    data: EvalInput, candidates: list[Any], options: EvalOptions, backend: Any
) -> SFTJudge | PreferenceJudge:
    from generator.filters.judge import JudgeFilter

    n = len(candidates)
    step = max(n // options.judge_sample, 1)
    rows = list(range(0, n, step))[: options.judge_sample]
    scores = JudgeFilter(backend).score([candidates[i] for i in rows])
    if options.stage == "sft":
        usable = [s.value for s in scores if "judge score" in s.reason]
        return SFTJudge(
            model=backend.model,
            sample=len(rows),
            judged=len(usable),
            mean_score=sum(usable) / len(usable) if usable else None,
        )
    judged = []
    for row, score in zip(rows, scores, strict=True):
        orders = score.evidence.get("orders")
        if orders is None:
            judged.append((row, -1.0, False))
        else:
            judged.append((row, score.value, bool(score.evidence.get("position_bias"))))
    return metrics.judge_section(judged, data.human_reviewed, len(rows), model=backend.model)


def _existing(path: Path, stage: Stage, embedder: Embedder) -> tuple[list[metrics.Example], Any]:
    wanted = SFTExample if stage == "sft" else PreferenceExample
    rows = [r.example for r in read_examples(path).examples if isinstance(r.example, wanted)]
    sample = rows[:: max(len(rows) // 2000, 1)][:2000]  # a fixed, spread sample
    return sample, metrics.item_matrix(embedder, sample)


def evaluate(
    data: EvalInput,
    options: EvalOptions,
    embedder: Embedder,
    data_dir: Path,
    backend: Any = None,
) -> Evaluation:
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    examples = data.examples
    memberships = _memberships(data, embedder)
    if memberships and data.row_runs is None and all(g == UNKNOWN_GAP for g in data.gaps):
        # A dataset file's rows carry no gap: each goes under the gap it counts into.
        data.gaps = _row_gaps(data, memberships)
        data.labels = {g.id: g.label for r in data.gap_reports.values() for g in r.gaps}
    lengths = LengthCheck(load_tokenizer(options.tokenizer, data_dir), options.max_length)
    tokens = _token_counts(examples, lengths)
    fmt = metrics.format_section(examples, data.rows, data.invalid, tokens, options.max_length)
    lap("format")
    refusals = metrics.refusal_section(examples, data.gaps, data.labels)
    lap("refusals")
    vectors = metrics.item_matrix(embedder, examples)
    existing = _existing(options.existing, options.stage, embedder) if options.existing else None
    diversity = metrics.diversity_section(examples, vectors, existing)
    lap("diversity")
    candidates = metrics.as_candidates(examples)
    checks = {
        path.name: ContaminationFilter(load_eval_items(path), embedder=embedder)
        for path in options.eval_sets
    }
    contamination = metrics.contamination_section(candidates, checks)
    lap("contamination")
    safety = metrics.safety_section(candidates)
    lap("safety")
    coverage = _coverage(data, memberships) if data.gap_reports else None
    preference = None
    if options.stage == "preference":
        near = metrics.near_identical_pairs(examples)
        preference = PreferenceSection(
            near_identical=len(near),
            near_identical_share=len(near) / len(examples),
            near_identical_rows=near[:100],
        )
    if backend is None and options.judge:
        backend = judge_backend(options.judge, data_dir)
    judge = _judge(data, candidates, options, backend) if backend is not None else None
    lap("judge")
    report = EvalReport(
        stage=options.stage,
        source=data.source,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        rows=len(examples),
        format=fmt,
        refusals=refusals,
        diversity=diversity,
        coverage=coverage,
        contamination=contamination,
        safety=safety,
        preference=preference,
        judge=judge,
        seconds=Seconds.model_validate(seconds),
    )
    return Evaluation(report, tokens)


def _counted_rows(data: EvalInput, run: str) -> list[int]:
    if data.row_runs is None:
        return list(range(len(data.examples)))
    return [i for i, row_run in enumerate(data.row_runs) if row_run == run]


def _memberships(data: EvalInput, embedder: Embedder) -> dict[str, list[list[str]]]:
    """Per run, the gaps each of its counted rows falls into (rows in ``_counted_rows`` order)."""
    found = {}
    for run, report in data.gap_reports.items():
        prompts = [data.examples[i].prompt_text() for i in _counted_rows(data, run)]
        found[run] = gaps_of(report, prompts, embedder)
    return found


def _row_gaps(data: EvalInput, memberships: dict[str, list[list[str]]]) -> list[str]:
    """Per row of a file (every report counts every row): the first gap a report counts it
    into, or NO_GAP."""
    return [
        next((gap for run in memberships for gap in memberships[run][i]), NO_GAP)
        for i in range(len(data.examples))
    ]


def _coverage(data: EvalInput, memberships: dict[str, list[list[str]]]) -> CoverageSection:
    gaps = []
    counted: set[int] = set()
    for run, report in data.gap_reports.items():
        counted.update(_counted_rows(data, run))
        gained = Counter(g for row in memberships[run] for g in row)
        gaps += [
            GapCoverage(
                run=run,
                gap=g.id,
                label=g.label,
                have=g.have,
                added=gained[g.id],
                after=g.have + gained[g.id],
                target=g.target,
            )
            for g in report.gaps
        ]
    row_runs = data.row_runs or []
    without = sorted({r for r in row_runs if r is not None and r not in data.gap_reports})
    merged = sum(r is None for r in row_runs)
    return CoverageSection(
        runs=list(data.gap_reports),
        runs_without_gap_report=without,
        counted=data.counted,
        counted_rows=len(counted),
        not_counted_rows=len(data.examples) - len(counted),
        not_counted={
            "merged_existing": merged,
            "no_gap_report": len(data.examples) - len(counted) - merged,
        },
        measured_on=[
            data.measured_on.get(run) or measured_on(run, report, [], None)
            for run, report in data.gap_reports.items()
        ],
        gaps=gaps,
    )


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    temporary.replace(path)


def write_reports(evaluation: Evaluation, out: Path, gaps: list[str]) -> dict[str, str]:
    """The report files in ``out``; returns each file's sha256."""
    out.mkdir(parents=True, exist_ok=True)
    report = evaluation.report
    _atomic_write(
        out / "eval_report.json",
        orjson.dumps(report.model_dump(), option=orjson.OPT_INDENT_2) + b"\n",
    )
    _atomic_write(out / "eval_report.md", markdown(report).encode())
    _atomic_write(
        out / "safety_report.json",
        orjson.dumps(report.safety_report().model_dump(), option=orjson.OPT_INDENT_2) + b"\n",
    )
    histogram_chart(
        evaluation.token_counts,
        out / "lengths.png",
        f"{report.source}: tokens under the chat template",
        report.format.max_length,
    )
    per_gap: dict[str, dict[str, int]] = {}
    counts = Counter(gaps)
    refused = {g.gap: g.refusals for g in report.refusals.per_gap}
    for gap, rows in sorted(counts.items()):
        per_gap[gap] = {"rows": rows, "refusals": refused.get(gap, 0)}
    bar_chart(per_gap, out / "gaps.png", f"{report.source}: rows and refusals per gap")
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in REPORT_FILES}
