"""Tables and summary lines more than one command prints."""

from __future__ import annotations

from rich.table import Table

from cli.common import console, err_console, styled
from generator.coverage import GapReport
from generator.queueing import WorkQueue
from generator.store import Store

WIDE = 100  # columns from which the gap table has room for an example


def print_report(report: GapReport, after: dict[str, int] | None = None) -> None:
    """The gap report as a table (with an ``after`` column when counts after review are given)."""
    table = Table(title=f"gaps of {report.data} ({report.data_rows} examples)")
    columns = ["gap", "kind", "label", "have", *(["after"] if after else []), "target", "deficit"]
    numbers = ("have", "after", "target", "deficit")
    # The first example is a hint; under 100 columns the label needs its room more.
    with_example = console.width >= WIDE
    for column in [*columns, *(["examples"] if with_example else [])]:
        # Fits the terminal by wrapping the prose columns at word boundaries; ids and figures
        # never wrap (a folded "writing_hel/p" reads as two ids). Too narrow: an ellipsis.
        table.add_column(
            column,
            justify="right" if column in numbers else "left",
            no_wrap=column in ("gap", "kind", *numbers),
            overflow="ellipsis",
            min_width=12 if column in ("label", "examples") else None,
            ratio=1 if column in ("label", "examples") else None,
        )
    for gap in report.gaps:
        moved = [str(after[gap.id])] if after else []
        deficit = max(gap.target - after[gap.id], 0) if after else gap.deficit
        example = gap.examples[0][:70] if gap.examples else ""
        table.add_row(
            gap.id,
            gap.kind,
            gap.label,
            str(gap.have),
            *moved,
            str(gap.target),
            str(deficit),
            *([example] if with_example else []),
        )
    console.print(table, soft_wrap=False)  # soft wrap would keep a long title on one line
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


def print_outcome(store: Store, work: WorkQueue, run_id: str) -> None:
    """A run's tasks done, candidates and tokens, then its failed jobs (on stderr)."""
    done, total = store.task_counts(run_id)
    stats = store.run_stats(run_id)
    console.print(
        f"run {run_id!r}: {done}/{total} tasks done, {int(stats.get('candidates', 0))} candidates, "
        f"{int(stats.get('completion_tokens', 0))} tokens generated",
    )
    truncated = int(stats.get("truncated", 0))
    if truncated:
        console.print(
            f"run {run_id!r}: {truncated} outputs were cut off at max_tokens (the malformed "
            "filter rejects them as truncated); raise the campaign's max_tokens key, or "
            "max_tokens in prompts/defaults.yaml, to let them finish"
        )
    for queue, job_id, error in work.failed_jobs():
        err_console.print(styled("failed job", "red", f" {job_id} on {queue}: {error}"))
