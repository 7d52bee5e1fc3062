"""The eval report: a JSON model with stable keys, a short Markdown report, and the safety report
(the safety-relevant sections on their own, for the stage-audit record).

Each section is a model whose fields are the report's documented keys, in the order they are
written; per-row lists (invalid lines, contamination matches, row indexes) stay plain data.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from generator.calibration import Calibration, table_rows

# 2: coverage per run, counting only the rows a dataset adds (not merged existing rows).
# 3: coverage says which rows it did not count and why (``not_counted``,
#    ``runs_without_gap_report``) and what each run's ``have`` was measured on (``measured_on``);
#    in an export of several runs, ``refusals.per_gap`` names each gap "run/gap".
SCHEMA_VERSION = 3


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Quantiles(_Section):
    """mean/p50/p90/p99/max of a figure; written as ``{}`` (no keys) when there were no values."""

    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None

    @model_serializer(mode="wrap")
    def _present_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class FormatSection(_Section):
    rows: int
    valid: int
    valid_share: float
    invalid: list[str]  # FILE:LINE reasons, the first 50
    turns: Quantiles
    with_system_prompt: int
    answer_words: Quantiles
    tokens: Quantiles
    max_length: int
    over_max_length: int
    over_max_length_share: float


class GapRefusals(_Section):
    gap: str
    rows: int
    refusals: int
    share: float
    refusal_cell: bool
    flagged: bool  # refusals in a gap that is not about refusals or safety


class RefusalSummary(_Section):
    """The refusal figures without the per-gap rows (as the safety report carries them)."""

    refusals: int
    share: float
    pattern_set: str


class RefusalSection(RefusalSummary):
    per_gap: list[GapRefusals]


class DiversityFigures(_Section):
    mean_pairwise_distance: float
    near_duplicate_pair_share: float
    rows: int
    distinct_1: float
    distinct_2: float


class DiversitySection(DiversityFigures):
    existing: DiversityFigures | None = None  # with --existing; the key is absent without

    @model_serializer(mode="wrap")
    def _existing_when_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("existing") is None:
            data.pop("existing", None)
        return data


class GapCoverage(_Section):
    run: str
    gap: str
    label: str
    have: int  # the existing dataset's rows in the gap when it was measured
    added: int  # counted rows that fall into the gap, by the rule it was measured with
    after: int
    target: int


class MeasuredOn(_Section):
    """The dataset a run's gaps were measured on (its ``have``), and whether the file merged into
    an export is that dataset: only then are the merged rows the gaps' ``have`` already."""

    run: str
    data: str  # the dataset file, as the gap report recorded it
    data_rows: int
    measured_at: str
    merged: str | None  # the file merged into the export; None: nothing merged
    # True: the same content (by sha256; for an older gap report: the same file, as many rows,
    # not modified since); False: not, or not known to be.
    merged_is_measured: bool | None
    note: str  # all of the above in one sentence


class CoverageSection(_Section):
    """What the counted rows add to each run's gaps. Not counted: an export's merged existing
    rows (existing data, not added by the export) and the rows of runs with no gap report."""

    runs: list[str]  # the runs whose gap reports the rows are counted into
    runs_without_gap_report: list[str]  # runs whose rows are here but have no gaps to count into
    counted: str  # which rows were counted, in words
    counted_rows: int
    not_counted_rows: int
    not_counted: dict[str, int]  # rows per reason: merged_existing, no_gap_report
    measured_on: list[MeasuredOn]  # per run in ``runs``
    gaps: list[GapCoverage]


class ContaminationSet(_Section):
    rows_matched: int
    share: float
    matches: list[dict[str, Any]]  # row, reason and the check's evidence; the first 100


class SafetySection(_Section):
    pii_rows: int
    pii_kinds: dict[str, int]
    pii_row_indexes: list[int]
    unsafe_rows: int
    unsafe_categories: dict[str, int]
    unsafe_row_indexes: list[int]
    rows: int


class PreferenceSection(_Section):
    near_identical: int
    near_identical_share: float
    near_identical_rows: list[int]


class SFTJudge(_Section):
    model: str
    sample: int
    judged: int
    mean_score: float | None


class PreferenceJudge(_Section):
    model: str
    sample: int
    judged: int
    no_verdict: int
    win_rate: float | None
    position_bias_share: float | None
    agreement_with_humans: float | None
    human_reviewed_judged: int


class Seconds(_Section):
    """Time per section (coverage and preference count into judge's)."""

    format: float
    refusals: float
    diversity: float
    contamination: float
    safety: float
    judge: float


class _Header(_Section):
    schema_version: int = SCHEMA_VERSION
    stage: Literal["sft", "preference"]
    source: str
    generated_at: str
    rows: int


class EvalReport(_Header):
    """Keys are stable across versions of gapfill with the same ``schema_version``."""

    format: FormatSection
    refusals: RefusalSection
    diversity: DiversitySection
    coverage: CoverageSection | None = None
    contamination: dict[str, ContaminationSet] = Field(default_factory=dict)
    safety: SafetySection
    preference: PreferenceSection | None = None
    judge: SFTJudge | PreferenceJudge | None = None
    # The run's judge against its reviewers, beside the reviewers' own agreement (an export).
    calibration: list[Calibration] = Field(default_factory=list)
    seconds: Seconds

    def safety_report(self) -> SafetyReport:
        header = {name: getattr(self, name) for name in _Header.model_fields}
        return SafetyReport(
            **header,
            safety=self.safety,
            contamination=self.contamination,
            refusals=RefusalSummary(
                refusals=self.refusals.refusals,
                share=self.refusals.share,
                pattern_set=self.refusals.pattern_set,
            ),
        )


class SafetyReport(_Header):
    """safety_report.json: the eval report's safety-relevant sections."""

    safety: SafetySection
    contamination: dict[str, ContaminationSet]
    refusals: RefusalSummary


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: EvalReport) -> str:
    fmt, ref, div, safe = report.format, report.refusals, report.diversity, report.safety
    lines = [
        f"# Eval report: {report.source} ({report.stage})",
        "",
        f"{report.rows} rows, generated {report.generated_at}.",
        "",
        "## Format",
        "",
        "| figure | value |",
        "|---|---|",
        f"| rows that validate | {fmt.valid} of {fmt.rows} ({_pct(fmt.valid_share)}) |",
        f"| turns per row (mean / max) | {_num(fmt.turns.mean)} / {_num(fmt.turns.max, 0)} |",
        f"| answer words (p50 / p90) | {_num(fmt.answer_words.p50, 0)} / "
        f"{_num(fmt.answer_words.p90, 0)} |",
        f"| tokens under the chat template (p50 / p90 / max) | {_num(fmt.tokens.p50, 0)} / "
        f"{_num(fmt.tokens.p90, 0)} / {_num(fmt.tokens.max, 0)} |",
        f"| over {fmt.max_length} tokens | {fmt.over_max_length} "
        f"({_pct(fmt.over_max_length_share)}) |",
        "",
        "![lengths](lengths.png)",
        "",
        "## Refusals",
        "",
        f"{ref.refusals} answers refuse ({_pct(ref.share)}).",
        "",
        "| gap | rows | refusals | share | flagged (not a refusal cell) |",
        "|---|---|---|---|---|",
        *(
            f"| {g.gap} | {g.rows} | {g.refusals} | {_pct(g.share)} | "
            f"{'yes' if g.flagged else ''} |"
            for g in ref.per_gap
        ),
        "",
        "![gaps](gaps.png)",
        "",
        "## Diversity",
        "",
        "| figure | this file | existing |",
        "|---|---|---|",
    ]
    old = div.existing
    for key in ("mean_pairwise_distance", "near_duplicate_pair_share", "distinct_1", "distinct_2"):
        before = None if old is None else getattr(old, key)
        lines.append(f"| {key} | {_num(getattr(div, key), 3)} | {_num(before, 3)} |")
    if report.coverage:
        lines += _coverage_lines(report.coverage)
    lines += ["", "## Contamination", ""]
    if not report.contamination:
        lines.append("No eval set given.")
    for name, section in report.contamination.items():
        lines.append(f"- {name}: {section.rows_matched} rows match ({_pct(section.share)})")
        lines += [f"  - row {m['row']}: {m['reason']}" for m in section.matches[:10]]
    lines += [
        "",
        "## Safety",
        "",
        f"- PII/secret flags: {safe.pii_rows} rows {safe.pii_kinds or ''}",
        f"- unsafe content (first-pass filter): {safe.unsafe_rows} rows "
        f"{safe.unsafe_categories or ''}",
    ]
    if report.preference is not None:
        pref = report.preference
        lines += [
            "",
            "## Preference pairs",
            "",
            f"- near-identical chosen/rejected (useless for DPO): {pref.near_identical} "
            f"({_pct(pref.near_identical_share)})",
        ]
    if report.judge is not None:
        lines += ["", "## Judge", ""]
        lines += [f"- {key}: {value}" for key, value in report.judge.model_dump().items()]
    if report.calibration:
        lines += [
            "",
            "## Judge against the reviewers",
            "",
            "Each reviewer's vote against the majority of the other votes on the item (the "
            "humans' own agreement), and the judge against the majority of all votes.",
            "",
            "| scope | who | comparisons | agreement | no tie | kappa [95% CI] |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            "| " + " | ".join(_cell(cell) for cell in row) + " |"
            for result in report.calibration
            for row in table_rows(result)
        ]
    return "\n".join(lines) + "\n"


def _rows(n: int, what: str = "row") -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def not_counted_words(coverage: CoverageSection) -> str:
    """Which rows coverage left out and why, in words ("none" when it counted every row)."""
    parts = []
    if merged := coverage.not_counted.get("merged_existing", 0):
        parts.append(f"{_rows(merged, 'merged existing row')} (existing data, not added here)")
    if uncovered := coverage.not_counted.get("no_gap_report", 0):
        runs = coverage.runs_without_gap_report
        which = (
            f"run {runs[0]}, which has" if len(runs) == 1 else f"runs {', '.join(runs)}, which have"
        )
        parts.append(f"{_rows(uncovered)} of {which} no gap report to count them into")
    return "; ".join(parts) or "none"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a label's own '|' or line break would break the row."""
    return " ".join(text.split()).replace("|", "\\|")


def _coverage_lines(coverage: CoverageSection) -> list[str]:
    notes = [f"- {m.note}" for m in coverage.measured_on]
    return [
        "",
        "## Coverage",
        "",
        f"Counted: {coverage.counted} ({_rows(coverage.counted_rows)}). "
        f"Not counted: {not_counted_words(coverage)}.",
        "",
        *([*notes, ""] if notes else []),
        "| run | gap | label | have | added | after | target |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {g.run} | {g.gap} | {_cell(g.label)} | {g.have} | {g.added} | {g.after} | "
            f"{g.target} |"
            for g in coverage.gaps
        ),
    ]
