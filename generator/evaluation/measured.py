"""What each run's gaps were measured on, and whether an export's merged file is that dataset.

Coverage counts an export's reviewed rows as gains over each gap's ``have`` and leaves the merged
existing rows out. That reads as "the export holds ``after`` rows in the gap" only when the merged
file is the dataset the gaps were measured on, so it is checked, not assumed: by content hash
where the gap report recorded one (``data_sha256``), else (a report from before the field) as the
same file by path, not modified since, with as many rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from generator.coverage import GapReport, file_sha256
from generator.dataset_reader import read_examples
from generator.evaluation.report import MeasuredOn


def measured_on(
    run: str, report: GapReport, recorded: Sequence[str], merged: Path | None
) -> MeasuredOn:
    """Run ``run``'s measured dataset (``recorded``: the paths its RunConfig names as its existing
    data) next to ``merged``, the file merged into the export (None: nothing merged)."""
    at = report.created_at.isoformat(timespec="seconds")
    measured = f"run {run}'s gaps were measured on {report.data} ({report.data_rows} rows, {at})"
    base = MeasuredOn(
        run=run,
        data=report.data,
        data_rows=report.data_rows,
        measured_at=at,
        merged=None if merged is None else str(merged),
        merged_is_measured=None,
        note=f"{measured}: 'have' is that dataset's count.",
    )
    if merged is None:
        return base
    why = _differs(report, recorded, merged)
    if why is None:
        same = "the same content" if report.data_sha256 else "the same file, not modified since"
        note = (
            f"{measured}; the merged file is that dataset ({same}, {report.data_rows} rows): "
            "'have' counts its rows, so they are not counted again as added."
        )
    else:
        note = (
            f"{measured}; the merged file {merged} {why}, so it is not known to be the dataset "
            "these gaps were measured on: 'have' (and so 'after') counts that dataset's rows, "
            "not this export's."
        )
    return base.model_copy(update={"merged_is_measured": why is None, "note": note})


def _differs(report: GapReport, recorded: Sequence[str], merged: Path) -> str | None:
    """Why ``merged`` is not (or cannot be shown to be) the measured dataset; None when it is."""
    if report.data_sha256 is not None:
        if not merged.is_file():
            return "cannot be read"
        digest = file_sha256(merged)
        if digest != report.data_sha256:
            return f"has other content (sha256 {digest[:12]}, measured {report.data_sha256[:12]})"
        return None
    # A relative path was relative to wherever `gapfill gaps` ran: it cannot be compared.
    paths = {Path(p).resolve() for p in (*recorded, report.data) if Path(p).is_absolute()}
    if not paths:
        return "cannot be compared with it (the gap report recorded a relative path)"
    if merged.resolve() not in paths:
        return "is not that file"
    if not merged.is_file():
        return "cannot be read"
    modified = datetime.fromtimestamp(merged.stat().st_mtime, UTC)
    at = report.created_at
    if modified > (at if at.tzinfo else at.replace(tzinfo=UTC)):
        return f"was modified after the gaps were measured ({modified.isoformat('T', 'seconds')})"
    rows = len(read_examples(merged).examples)
    if rows != report.data_rows:
        return f"has {rows} rows, not {report.data_rows}"
    return None
