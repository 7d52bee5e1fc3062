"""Tables and summary lines more than one command prints.

A table fits the terminal without cutting anything it shows: figures and short words (a gap's
kind) always get their full width; an id gets its full width where the row has room, else it
folds across lines (it is never cut with an ellipsis); prose wraps at word boundaries only, and a
prose column that would get less than a readable width is left out, with a line saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from rich.cells import cell_len
from rich.table import Table

from cli.common import console, err_console, styled
from generator.cascade import BORDERLINE_BAND
from generator.coverage import GapReport
from generator.queueing import WorkQueue
from generator.schema import Gap
from generator.store import Store

READABLE = 12  # the narrowest a prose column is worth showing: two short words a line
ID_LEAST = 8  # an id folded narrower than this is hard to read back as one
EXAMPLE_CHARACTERS = 70  # the first example is a hint, not the whole prompt


class Fit(Enum):
    """How a column fits a narrow terminal."""

    WHOLE = "whole"  # figures and one-word names: always their widest value
    FOLD = "fold"  # ids: whole where the row has room (before any prose), else folded
    PROSE = "prose"  # wraps at word boundaries; left out below a readable width


@dataclass(frozen=True)
class Column:
    header: str
    cells: Sequence[str]
    fit: Fit
    justify: Literal["left", "right"] = "left"

    @property
    def natural(self) -> int:
        return max(cell_len(text) for text in [self.header, *self.cells])

    @property
    def least(self) -> int:
        """The narrowest it may get: a prose column's longest word must fit (no word breaks)."""
        if self.fit is Fit.WHOLE:
            return self.natural
        if self.fit is Fit.FOLD:
            return cell_len(self.header)
        words = [w for text in [self.header, *self.cells] for w in text.split()]
        return min(self.natural, max([READABLE, *(cell_len(w) for w in words)]))


def _overhead(count: int) -> int:
    return 3 * count + 1  # a border left of each column, one at the end, a space each side


def _needs(columns: Sequence[Column]) -> int:
    """Width with every id whole and every prose column at its least."""
    whole = sum(c.least if c.fit is Fit.PROSE else c.natural for c in columns)
    return _overhead(len(columns)) + whole


def choose(layouts: Sequence[Sequence[Column]], width: int) -> int:
    """The first layout that fits ``width`` with its ids whole; else the last (its ids fold)."""
    return next((i for i, cs in enumerate(layouts) if _needs(cs) <= width), len(layouts) - 1)


def widths(columns: Sequence[Column], width: int) -> list[int]:
    """Each column's width: its least, then room to ids up to whole, then to prose up to its
    natural width (the table is no wider than its content)."""
    sizes = [c.least for c in columns]
    for fit in (Fit.FOLD, Fit.PROSE):
        members = [i for i, c in enumerate(columns) if c.fit is fit]
        room = width - _overhead(len(columns)) - sum(sizes)
        for i, extra in zip(
            members, _share([columns[i].natural - sizes[i] for i in members], room), strict=True
        ):
            sizes[i] += extra
    return sizes


def cramped(columns: Sequence[Column], width: int) -> bool:
    """Whether ``width`` is too narrow for a table of ``columns``: an id would fold into pieces
    under ``ID_LEAST`` characters, or the figures alone overflow it."""
    sizes = widths(columns, width)
    pieces = (
        s < min(c.natural, ID_LEAST)
        for c, s in zip(columns, sizes, strict=True)
        if c.fit is Fit.FOLD
    )
    return _overhead(len(columns)) + sum(sizes) > width or any(pieces)


def _share(wants: list[int], room: int) -> list[int]:
    """``room`` split fairly: the smallest wants are met first, the rest share what is left."""
    given = [0] * len(wants)
    left = max(room, 0)
    order = sorted(range(len(wants)), key=lambda i: wants[i])
    for rank, i in enumerate(order):
        given[i] = min(wants[i], left // (len(order) - rank))
        left -= given[i]
    return given


def fitted_table(columns: Sequence[Column], title: str | None = None) -> Table:
    """A table of ``columns`` (headers only: the caller adds the rows) at widths that fit."""
    table = Table(title=title)
    for column, size in zip(columns, widths(columns, console.width), strict=True):
        # fold: only an id ever needs it (a prose column is at least its longest word wide)
        table.add_column(column.header, justify=column.justify, width=size, overflow="fold")
    return table


def print_report(report: GapReport, after: dict[str, int] | None = None) -> None:
    """The gap report as a table (with an ``after`` column when counts after review are given)."""
    gaps = report.gaps
    deficits = [max(g.target - after[g.id], 0) if after else g.deficit for g in gaps]
    figures = [
        Column("have", [str(g.have) for g in gaps], Fit.WHOLE, "right"),
        *([Column("after", [str(after[g.id]) for g in gaps], Fit.WHOLE, "right")] if after else []),
        Column("target", [str(g.target) for g in gaps], Fit.WHOLE, "right"),
        Column("deficit", [str(d) for d in deficits], Fit.WHOLE, "right"),
    ]
    names = [
        Column("gap", [g.id for g in gaps], Fit.FOLD),
        Column("kind", [g.kind for g in gaps], Fit.WHOLE),
    ]
    label = Column("label", [_label(g) for g in gaps], Fit.PROSE)
    examples = Column("examples", [_example(g) for g in gaps], Fit.PROSE)
    prose = [c for c in (label, examples) if any(c.cells)]  # a taxonomy's labels are its ids
    # As the terminal narrows, the examples are left out first, then the labels.
    kept = [prose[: len(prose) - dropped] for dropped in range(len(prose) + 1)]
    layouts = [
        [*names, *(c for c in k if c is label), *figures, *(c for c in k if c is examples)]
        for k in kept
    ]
    chosen = choose(layouts, console.width)
    columns = layouts[chosen]
    table = fitted_table(columns, title=f"gaps of {report.data} ({report.data_rows} examples)")
    for row in zip(*(c.cells for c in columns), strict=True):
        table.add_row(*row)
    console.print(table, soft_wrap=False)  # soft wrap would keep a long title on one line
    if chosen:
        left_out = " and ".join(f"{c.header}s" if c is label else c.header for c in prose[-chosen:])
        # Wrapped at word boundaries like the table, not by the terminal.
        console.print(
            f"({left_out} left out at {console.width} columns: widen the terminal, or write the "
            "whole report with gapfill gaps --json OUT)",
            soft_wrap=False,
        )
    if report.taxonomy:
        console.print(f"unassigned examples (no cell close enough): {report.unassigned}")
    if report.covered_share is not None:
        uncovered = sum(not r.covered for r in report.reference_coverage)
        console.print(
            f"reference prompts covered: {report.covered_share:.0%} "
            f"({uncovered} of {len(report.reference_coverage)} uncovered, "
            f"similarity < {report.reference_threshold})"
        )
        borderline = sum(r.borderline for r in report.reference_coverage)
        if borderline:
            console.print(
                f"{borderline} of them borderline: the cascade's best row is within "
                f"{BORDERLINE_BAND} of the threshold, and a row it did not confirm may cover them "
                "(embedding_tier: full decides them exactly)"
            )


def _label(gap: Gap) -> str:
    return "" if gap.label == gap.id else " ".join(gap.label.split())


def _example(gap: Gap) -> str:
    """The gap's first example on one line, cut at a word boundary if it is long."""
    words = gap.examples[0].split() if gap.examples else []
    kept: list[str] = []
    for word in words:
        if kept and len(" ".join([*kept, word])) > EXAMPLE_CHARACTERS:
            return " ".join(kept) + " …"
        kept.append(word)
    return " ".join(kept)


def truncated_so_far(store: Store, run_id: str) -> int:
    """The run's outputs cut off at max_tokens up to now (a stat every finished task adds to):
    read before a command generates, so that its outcome counts only its own."""
    return int(store.run_stats(run_id).get("truncated", 0))


def print_outcome(store: Store, work: WorkQueue, run_id: str, *, truncated_before: int) -> None:
    """A run's tasks done, candidates and tokens, the outputs generated during this command that
    were cut off, then its failed jobs (on stderr)."""
    done, total = store.task_counts(run_id)
    stats = store.run_stats(run_id)
    console.print(
        f"run {run_id!r}: {done}/{total} tasks done, {int(stats.get('candidates', 0))} candidates, "
        f"{int(stats.get('completion_tokens', 0))} tokens generated",
    )
    truncated = int(stats.get("truncated", 0)) - truncated_before
    if truncated:
        console.print(
            f"run {run_id!r}: {truncated} outputs generated during this command were cut off at "
            "max_tokens (the malformed filter rejects them as truncated); raise the campaign's "
            "max_tokens key, or max_tokens in prompts/defaults.yaml, to let them finish"
        )
    for queue, job_id, error in work.failed_jobs():
        err_console.print(styled("failed job", "red", f" {job_id} on {queue}: {error}"))
