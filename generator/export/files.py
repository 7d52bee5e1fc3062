"""The export's files in its staging directory: data, provenance, exclusions; their hashes; the
marks on the exported items (and the ledger that puts them back on failure); and the rename that
puts the finished export in place."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from generator.export import manifest as record
from generator.export.options import ExportOptions
from generator.export.prepare import Prepared
from generator.export.rows import row_bytes
from generator.export.target import check_target
from generator.store import Store
from generator.store.exports import Marks


def write_rows(path: Path, part: list[Prepared], fmt: str) -> None:
    if fmt == "jsonl":
        with path.open("wb") as handle:
            handle.writelines(row_bytes(entry.row) for entry in part)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([entry.row for entry in part]), path, compression="zstd")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def set_mode(staging: Path, mode: int) -> None:
    """Give the finished export its configured permissions: the folder ``mode``, its files the
    same without execute bits. Everything was made under the CLI's private umask (0600 files):
    without this, teammates in a shared group directory could not read an export."""
    for path in staging.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(mode & 0o666)
    staging.chmod(mode)


def place(staging: Path, out: Path, *, overwrite: bool) -> None:
    """Rename the finished export into place; an old export is removed only after that.

    The target is checked again here, just before anything is renamed: it may have changed
    since the export began, and only an earlier export (or an empty folder) may be replaced.
    """
    check_target(out, overwrite=overwrite)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
    else:
        staging.rename(out)


def write_data(
    options: ExportOptions, staging: Path, splits: dict[str, list[Prepared]]
) -> dict[str, int]:
    """The data files; their names and rows."""
    suffix = "jsonl" if options.format == "jsonl" else "parquet"
    rows_per_file = {}
    for name, part in splits.items():
        if part:
            write_rows(staging / f"{name}.{suffix}", part, options.format)
            rows_per_file[f"{name}.{suffix}"] = len(part)
        else:  # written again with fewer rows: a split now empty has no file
            (staging / f"{name}.{suffix}").unlink(missing_ok=True)
    return rows_per_file


@dataclass
class Identity:
    files: dict[str, dict[str, Any]]  # the data files' manifest entries
    export_id: str  # a hash of the data files' hashes: the same data, the same id


def identify(staging: Path, rows_per_file: dict[str, int]) -> Identity:
    files = {
        name: {
            "rows": rows,
            "bytes": (staging / name).stat().st_size,
            "sha256": sha256(staging / name),
        }
        for name, rows in rows_per_file.items()
    }
    export_id = hashlib.sha256(
        "".join(f"{n}:{f['sha256']}" for n, f in sorted(files.items())).encode()
    ).hexdigest()
    return Identity(files, export_id)


@dataclass
class Ledger:
    """The marks an export has made: what a failure puts back.

    ``previous``: each item's mark from before the export (as its first marking found it);
    ``export_ids``: every id the export has marked under (a rewrite marks under a new one).
    Putting back restores, under each of those ids, the marks that are still the export's own.
    """

    previous: dict[str, str | None] = field(default_factory=dict)
    export_ids: list[str] = field(default_factory=list)

    def mark(self, store: Store, export_id: str, versions: dict[str, int]) -> Marks:
        replacing = self.export_ids[-1] if self.export_ids else None
        self.export_ids.append(export_id)
        marks = Marks()
        try:
            store.mark_exported(export_id, versions, replacing=replacing, into=marks)
        finally:  # what was marked before a failure is put back too
            if replacing is None:
                self.previous = marks.previous
        return marks

    def put_back(self, store: Store) -> None:
        for export_id in self.export_ids:
            store.unmark_exported(export_id, self.previous)


def identify_and_mark(
    store: Store,
    staging: Path,
    rows_per_file: dict[str, int],
    versions: dict[str, int],
    ledger: Ledger,
) -> tuple[Identity, Marks]:
    """The data files' identity, and the items marked exported under it: each only if it is
    still accepted at the version read (``Marks.refused`` names the others)."""
    identity = identify(staging, rows_per_file)
    return identity, ledger.mark(store, identity.export_id, versions)


def write_provenance(
    options: ExportOptions, staging: Path, splits: dict[str, list[Prepared]]
) -> None:
    def line(entry: Prepared, split: str, index: int) -> bytes:
        if entry.approved is not None:
            made = record.provenance_record(entry.approved, split, index)
        else:
            made = {
                "item_id": None,
                "split": split,
                "row": index,
                "source": "existing",
                "source_file": str(options.merge),
                "source_line": entry.line,
            }
        return orjson.dumps(made, option=orjson.OPT_APPEND_NEWLINE)

    with (staging / "provenance.jsonl").open("wb") as handle:
        for name, part in splits.items():
            handle.writelines(line(entry, name, index) for index, entry in enumerate(part))


def write_excluded(staging: Path, excluded: list[tuple[str, str]]) -> None:
    with (staging / "excluded.jsonl").open("wb") as handle:
        for item_id, reason in excluded:
            handle.write(orjson.dumps({"item": item_id, "reason": reason}) + b"\n")
