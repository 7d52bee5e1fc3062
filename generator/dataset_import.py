"""Importing a dataset file into the store as candidates for review.

Used for human-written data that should go through the same review and export path as generated
data (e.g. preference pairs collected elsewhere). The whole file is read and validated first; only
then is everything written in one transaction, so a bad row leaves the store untouched, unless
the caller asks to skip invalid rows: then the valid ones are stored and each invalid one is
reported with its line and reason (real data has them: 8 of the 2,312 HH pairs have an empty
answer or two assistant turns in a row).

Every row is screened for personal data and secrets before it is stored (``generator.screening``):
imported text is as untrusted as generated text, and the export takes only items whose screen is
current and passed, or cleared by a reviewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from generator.dataset_reader import Format, read_examples
from generator.errors import InvalidRowError
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    PreferenceExample,
    Provenance,
    check_identifier,
)
from generator.screening import screen_all
from generator.store import Store


@dataclass(frozen=True)
class IngestResult:
    rows: int
    stored: int
    already_present: int
    format: str
    skipped: list[InvalidRowError] = field(default_factory=list)


def ingest_file(
    store: Store,
    path: str | Path,
    run_id: str,
    *,
    row_format: Format | None = None,
    gap_id: str = "imported",
    status: CandidateStatus = CandidateStatus.PENDING,
    skip_invalid: bool = False,
) -> IngestResult:
    """Read ``path`` and store every row; the first bad row raises ``InvalidRowError`` (nothing
    stored) unless ``skip_invalid``."""
    check_identifier(run_id, "run")
    check_identifier(gap_id, "gap")
    report = read_examples(path, row_format, collect_errors=skip_invalid)
    candidates = [
        Candidate(
            kind=(
                CandidateKind.PREFERENCE
                if isinstance(row.example, PreferenceExample)
                else CandidateKind.SFT
            ),
            payload=row.example,
            run_id=run_id,
            gap_id=gap_id,
            status=status,
            provenance=Provenance(
                source="imported", run_id=run_id, source_file=str(path), source_line=row.line
            ),
        )
        for row in report.examples
    ]
    stored = store.put_many(screen_all(candidates))
    return IngestResult(
        rows=report.rows,
        stored=stored,
        already_present=len(candidates) - stored,
        format=report.format or "unknown",
        skipped=report.errors,
    )
