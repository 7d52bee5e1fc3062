"""Each row of an export made ready to write, in one pass: for an approved item, its row, its
structure problem, whether its length surely fits, its data line, its provenance record and the
origin the manifest counts it by.

All of it is done while the item is fresh from the store. A pass per step over 100,000 items
cost about a second more: every pass walks all the items' objects again, scattered over memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from generator.export import manifest as record
from generator.export.checks import LengthCheck, structure_problem
from generator.export.rows import Row, row_bytes, row_for
from generator.export.selection import Approved
from generator.schema import CandidateKind

_NEWLINE = orjson.OPT_APPEND_NEWLINE


@dataclass(slots=True)
class Prepared:
    """A row as the writer takes it (an approved item's, or a merged existing row's)."""

    key: str  # sort and split key: item id, or "existing:<line>"
    row: Row
    problem: str | None  # why the row is no well-formed conversation, or None
    surely_fits: bool  # short enough by byte count; else its tokens are counted
    data: bytes  # its line in a JSONL data file (b"" for parquet)
    provenance: bytes  # its provenance record (JSON and a newline), less item id, split and row
    approved: Approved | None = None  # None for a merged existing row
    origin: record.Origin | None = None
    scores: dict[str, Any] | None = None  # filter scores, for the pass rates
    line: int | None = None  # a merged existing row's line in its file


def approved_row(
    approved: Approved, kind: CandidateKind, lengths: LengthCheck, jsonl: bool
) -> Prepared:
    """Raises ``RowRefused`` for an item that cannot be a row of ``kind``."""
    row = row_for(approved.item, approved.decisions, kind)
    return Prepared(
        key=approved.id,
        row=row,
        problem=structure_problem(row),
        surely_fits=lengths.surely_fits(row),
        data=row_bytes(row) if jsonl else b"",
        provenance=orjson.dumps(record.provenance_record(approved), option=_NEWLINE),
        approved=approved,
        origin=record.Origin.of(approved.item),
        scores=approved.item.get("scores") or {},
    )


def existing_row(row: Row, line: int, source: Path, lengths: LengthCheck, jsonl: bool) -> Prepared:
    made = {"source": "existing", "source_file": str(source), "source_line": line}
    return Prepared(
        key=f"existing:{line:09d}",
        row=row,
        problem=structure_problem(row),
        surely_fits=lengths.surely_fits(row),
        data=row_bytes(row) if jsonl else b"",
        provenance=orjson.dumps(made, option=_NEWLINE),
        line=line,
    )
