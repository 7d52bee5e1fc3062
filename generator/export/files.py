"""The export's files in its staging directory: data, provenance, exclusions; their hashes; and
the rename that puts the finished export in place."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from generator.export import manifest as record
from generator.export.options import ExportOptions
from generator.export.prepare import Prepared
from generator.export.rows import row_bytes
from generator.store import Store


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


def place(staging: Path, out: Path) -> None:
    """Rename the finished export into place; an old one is removed only after that."""
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
    return rows_per_file


@dataclass
class Identity:
    files: dict[str, dict[str, Any]]  # the data files' manifest entries
    export_id: str  # a hash of the data files' hashes: the same data, the same id
    previous_marks: list[str | None]  # of the exported items, before this export marked them


def identify_and_mark(
    store: Store, staging: Path, rows_per_file: dict[str, int], exported_ids: list[str]
) -> Identity:
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
    return Identity(files, export_id, store.mark_exported(export_id, exported_ids))


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
