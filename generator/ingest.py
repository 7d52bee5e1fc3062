"""Importing a dataset file into the store as candidates for review.

Used for human-written data that should go through the same review and export path as generated
data (e.g. preference pairs collected elsewhere). The whole file is read and validated first; only
then is everything written in one transaction, so a bad row leaves the store untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.importers import Format, read_examples
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    PreferenceExample,
    Provenance,
)
from generator.store import Store


@dataclass(frozen=True)
class IngestResult:
    rows: int
    stored: int
    already_present: int
    format: str


def ingest_file(
    store: Store,
    path: str | Path,
    run_id: str,
    *,
    row_format: Format | None = None,
    gap_id: str = "imported",
    status: CandidateStatus = CandidateStatus.PENDING,
) -> IngestResult:
    """Read ``path`` (raising ``InvalidRowError`` on the first bad row) and store every row."""
    report = read_examples(path, row_format)
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
    stored = store.put_many(candidates)
    return IngestResult(
        rows=report.rows,
        stored=stored,
        already_present=len(candidates) - stored,
        format=report.format or "unknown",
    )
