"""`gapfill audit DIR`: an export's stage-audit record, its file hashes checked, gaps named.

The record answers, for a model candidate trained on this export: which base model, which
continued-pretraining data, which SFT and preference datasets (by content hash), which chat
template, which eval and safety reports, and which earlier export to roll back to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from generator.errors import ExportError

FIELDS = (
    "base_model",
    "continued_pretraining_data",
    "sft_dataset",
    "preference_dataset",
    "chat_template",
    "eval_report",
    "safety_report",
    "rollback_artifacts",
)


@dataclass
class AuditRecord:
    fields: dict[str, str]  # field -> a one-line description ("" when missing)
    problems: list[str] = field(default_factory=list)  # hash mismatches, missing files


def _describe(name: str, value: Any) -> str:
    if value in (None, "", [], {}):
        return ""
    if name == "rollback_artifacts":
        previous = value.get("previous_manifest_sha256")
        return f"previous manifest {previous}" if previous else ""
    if name == "chat_template":
        digest, limit = value["sha256"][:16], value["max_length"]
        return f"{value['tokenizer']} (template sha256 {digest}, max {limit} tokens)"
    if isinstance(value, dict):
        return ", ".join(
            f"{k} {str(v)[:16]}" if isinstance(v, str) else f"{k} {v}" for k, v in value.items()
        )
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _check_files(directory: Path, files: dict[str, Any]) -> list[str]:
    problems = []
    for name, expected in files.items():
        digest = expected["sha256"] if isinstance(expected, dict) else expected
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: content differs from the manifest's sha256")
    return problems


def read_audit(directory: Path) -> AuditRecord:
    path = directory / "manifest.json"
    if not path.is_file():
        raise ExportError(f"{directory}: no manifest.json (not a gapfill export)")
    try:
        manifest = orjson.loads(path.read_bytes())
        audit = manifest["stage_audit"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: not a gapfill manifest ({exc})") from exc
    record = AuditRecord({name: _describe(name, audit.get(name)) for name in FIELDS})
    record.problems = _check_files(directory, manifest.get("files", {}))
    for name in ("eval_report", "safety_report"):
        linked = audit.get(name)
        if isinstance(linked, dict) and "file" in linked:
            record.problems += _check_files(directory, {linked["file"]: linked["sha256"]})
    return record
