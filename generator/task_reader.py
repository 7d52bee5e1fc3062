"""Reading generation tasks from a JSONL (or Parquet, JSON array) file for ``gapfill generate``.

One task per row: the fields of ``GenerationTask`` (``run_id`` comes from the command line), or
the shorthand ``{"prompt": "...", "gap_id": ...}`` for a single user turn. Every row is checked
before anything is stored; a bad row is one ``FILE:LINE: field: reason`` error.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from generator.dataset_reader import RowError, describe, iter_records
from generator.errors import DataFileError, InvalidRowError
from generator.schema import GenerationTask, check_identifier


def read_tasks(path: str | Path, run_id: str) -> list[GenerationTask]:
    check_identifier(run_id, "run id")
    tasks = []
    for line, record in iter_records(Path(path)):
        if isinstance(record, RowError):
            raise InvalidRowError(str(path), line, str(record))
        if not isinstance(record, dict):
            raise InvalidRowError(str(path), line, "expected a JSON object")
        row = dict(record)
        if "prompt" in row:
            prompt = row.pop("prompt")
            if not isinstance(prompt, str):
                raise InvalidRowError(str(path), line, "prompt: must be a string")
            row.setdefault("messages", [{"role": "user", "content": prompt}])
        if row.get("run_id", run_id) != run_id:
            raise InvalidRowError(str(path), line, f"run_id: {row['run_id']!r} is not {run_id!r}")
        row["run_id"] = run_id
        try:
            tasks.append(GenerationTask.model_validate(row))
        except ValidationError as exc:
            raise InvalidRowError(str(path), line, describe(exc)) from exc
    if not tasks:
        raise DataFileError(f"{path}: no tasks")
    return tasks
