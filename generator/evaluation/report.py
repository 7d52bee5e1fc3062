"""The eval report: a JSON model with stable keys, a short Markdown report, and the safety report
(the safety-relevant sections on their own, for the stage-audit record)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class EvalReport(BaseModel):
    """Keys are stable across versions of gapfill with the same ``schema_version``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    stage: Literal["sft", "preference"]
    source: str
    generated_at: str
    rows: int
    format: dict[str, Any]
    refusals: dict[str, Any]
    diversity: dict[str, Any]
    coverage: dict[str, Any] | None = None
    contamination: dict[str, Any] = Field(default_factory=dict)
    safety: dict[str, Any]
    preference: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None
    seconds: dict[str, float] = Field(default_factory=dict)

    def safety_report(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "stage": self.stage,
            "source": self.source,
            "generated_at": self.generated_at,
            "rows": self.rows,
            "safety": self.safety,
            "contamination": self.contamination,
            "refusals": {k: v for k, v in self.refusals.items() if k != "per_gap"},
        }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: EvalReport) -> str:
    fmt, ref, div, safe = report.format, report.refusals, report.diversity, report.safety
    tokens = fmt.get("tokens", {})
    lines = [
        f"# Eval report: {report.source} ({report.stage})",
        "",
        f"{report.rows} rows, generated {report.generated_at}.",
        "",
        "## Format",
        "",
        "| figure | value |",
        "|---|---|",
        f"| rows that validate | {fmt['valid']} of {fmt['rows']} ({_pct(fmt['valid_share'])}) |",
        f"| turns per row (mean / max) | {_num(fmt['turns'].get('mean'))} / "
        f"{_num(fmt['turns'].get('max'), 0)} |",
        f"| answer words (p50 / p90) | {_num(fmt['answer_words'].get('p50'), 0)} / "
        f"{_num(fmt['answer_words'].get('p90'), 0)} |",
        f"| tokens under the chat template (p50 / p90 / max) | {_num(tokens.get('p50'), 0)} / "
        f"{_num(tokens.get('p90'), 0)} / {_num(tokens.get('max'), 0)} |",
        f"| over {fmt['max_length']} tokens | {fmt['over_max_length']} "
        f"({_pct(fmt['over_max_length_share'])}) |",
        "",
        "![lengths](lengths.png)",
        "",
        "## Refusals",
        "",
        f"{ref['refusals']} answers refuse ({_pct(ref['share'])}).",
        "",
        "| gap | rows | refusals | share | flagged (not a refusal cell) |",
        "|---|---|---|---|---|",
        *(
            f"| {g['gap']} | {g['rows']} | {g['refusals']} | {_pct(g['share'])} | "
            f"{'yes' if g['flagged'] else ''} |"
            for g in ref["per_gap"]
        ),
        "",
        "![gaps](gaps.png)",
        "",
        "## Diversity",
        "",
        "| figure | this file | existing |",
        "|---|---|---|",
    ]
    old = div.get("existing", {})
    for key in ("mean_pairwise_distance", "near_duplicate_pair_share", "distinct_1", "distinct_2"):
        lines.append(f"| {key} | {_num(div.get(key), 3)} | {_num(old.get(key), 3)} |")
    if report.coverage:
        lines += [
            "",
            "## Coverage",
            "",
            "| gap | have | added | after | target |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {g['gap']} | {g['have']} | {g['added']} | {g['after']} | {g['target']} |"
            for g in report.coverage["gaps"]
        ]
    lines += ["", "## Contamination", ""]
    if not report.contamination:
        lines.append("No eval set given.")
    for name, section in report.contamination.items():
        lines.append(f"- {name}: {section['rows_matched']} rows match ({_pct(section['share'])})")
        lines += [f"  - row {m['row']}: {m['reason']}" for m in section["matches"][:10]]
    lines += [
        "",
        "## Safety",
        "",
        f"- PII/secret flags: {safe['pii_rows']} rows {safe['pii_kinds'] or ''}",
        f"- unsafe content (first-pass filter): {safe['unsafe_rows']} rows "
        f"{safe['unsafe_categories'] or ''}",
    ]
    if report.preference is not None:
        pref = report.preference
        lines += [
            "",
            "## Preference pairs",
            "",
            f"- near-identical chosen/rejected (useless for DPO): {pref['near_identical']} "
            f"({_pct(pref['near_identical_share'])})",
        ]
    if report.judge is not None:
        judge = report.judge
        lines += ["", "## Judge", ""]
        lines += [f"- {key}: {value}" for key, value in judge.items()]
    return "\n".join(lines) + "\n"
