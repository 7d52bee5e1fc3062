"""Scoring a dataset file with the filter pipeline, outside any store or run.

One output line per input row, in input order: ``{"index", "line", "route", "scores"}``, where
``route`` is ``rejected`` (a hard filter failed) or ``review``. An unreadable row is not an
error here: it is reported as ``rejected`` by the malformed filter with the reason, so an audit
of a large file never stops at its first bad row. The output is written to a temporary file and
renamed, so a failed run leaves no partial output.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from generator.dataset_reader import read_examples
from generator.embeddings import Embedder
from generator.filters.contamination import load_eval_items
from generator.filters.pipeline import FilterPipeline
from generator.filters.settings import FilterSettings
from generator.filters.stored_run import existing_indexes
from generator.schema import Candidate, CandidateKind, PreferenceExample


@dataclass
class ScoreSummary:
    rows: int = 0
    review: int = 0
    rejected: int = 0
    failures: Counter[str] = field(default_factory=Counter)


def score_file(
    path: Path,
    out: Path,
    *,
    settings: FilterSettings,
    existing: Path | None = None,
    evals: list[Path] | None = None,
    embedder: Embedder | None = None,
    index_cache: Path | None = None,
) -> ScoreSummary:
    """``index_cache``: where the existing data's indexes are cached (default: beside ``out``)."""
    eval_items = [item for file in evals or [] for item in load_eval_items(file)]
    shared = (
        existing_indexes([existing], settings, embedder, index_cache or out.parent / ".indexes")
        if existing is not None
        else None
    )
    pipeline = FilterPipeline.build(
        settings, eval_items=eval_items, embedder=embedder, shared=shared
    )
    report = read_examples(path, collect_errors=True)
    candidates = [
        Candidate(
            id=f"row-{row.line}",  # rows, not content: two equal rows are a duplicate pair
            kind=CandidateKind.PREFERENCE
            if isinstance(row.example, PreferenceExample)
            else CandidateKind.SFT,
            payload=row.example,
            run_id="score",
        )
        for row in report.examples
    ]
    scored = {int(c.id.removeprefix("row-")): c for c in pipeline.score(candidates)}
    invalid = {error.line: error.reason for error in report.errors}
    summary = ScoreSummary()
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            for index, line in enumerate(sorted([*scored, *invalid])):
                if line in invalid:
                    route = "rejected"
                    scores = {
                        "malformed": {
                            "value": 0.0,
                            "passed": False,
                            "reason": invalid[line],
                            "evidence": {},
                        }
                    }
                else:
                    candidate = scored[line]
                    route = (
                        "rejected"
                        if pipeline.route(candidate).value == "auto_rejected"
                        else "review"
                    )
                    scores = {
                        name: s.model_dump(exclude={"filter"})
                        for name, s in candidate.scores.items()
                    }
                summary.rows += 1
                summary.review += route == "review"
                summary.rejected += route == "rejected"
                summary.failures.update(name for name, s in scores.items() if not s["passed"])
                record = {"index": index, "line": line, "route": route, "scores": scores}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        temporary.replace(out)
    finally:
        temporary.unlink(missing_ok=True)
    return summary
