"""Each row of an export checked as it is read: for an approved item, its row, its structure
problem, whether its length surely fits by byte count, and the origin the manifest counts it by.

Done while the item is fresh from the store, in the loop that reads it. Serialising the rows and
their provenance waits for the writer, which streams them to disk: holding 100,000 serialised
lines in memory (a GB more at peak) cost more than it saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generator.export import manifest as record
from generator.export.checks import LengthCheck, structure_problem
from generator.export.rows import RankingPairs, Row, rows_for
from generator.export.selection import Approved
from generator.schema import CandidateKind


@dataclass(slots=True)
class Prepared:
    """A row as the writer takes it (an approved item's, or a merged existing row's)."""

    key: str  # sort and split key: item id, or "existing:<line>"
    row: Row
    problem: str | None  # why the row is no well-formed conversation, or None
    surely_fits: bool  # short enough by byte count; else its tokens are counted
    approved: Approved | None = None  # None for a merged existing row
    origin: record.Origin | None = None
    scores: dict[str, Any] | None = None  # filter scores, for the pass rates
    line: int | None = None  # a merged existing row's line in its file


def approved_rows(
    approved: Approved,
    kind: CandidateKind,
    lengths: LengthCheck,
    ranking_pairs: RankingPairs = "all",
) -> list[Prepared]:
    """Raises ``RowRefused`` for an item that cannot be a row of ``kind``. A ranking gives a
    row per pair: keyed ``<item id>#<n>`` after the first, so each is checked and excluded on
    its own, and all of them split with their prompt."""
    rows = rows_for(approved.item, approved.decisions, kind, ranking_pairs)
    return [
        Prepared(
            key=approved.id if index == 0 else f"{approved.id}#{index}",
            row=row,
            problem=structure_problem(row),
            surely_fits=lengths.surely_fits(row),
            approved=approved,
            origin=record.Origin.of(approved.item),
            scores=approved.item.get("scores") or {},
        )
        for index, row in enumerate(rows)
    ]


def existing_row(row: Row, line: int, lengths: LengthCheck) -> Prepared:
    return Prepared(
        key=f"existing:{line:09d}",
        row=row,
        problem=structure_problem(row),
        surely_fits=lengths.surely_fits(row),
        line=line,
    )
