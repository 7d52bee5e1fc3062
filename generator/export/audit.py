"""`gapfill audit DIR`: an export's stage-audit record, its file hashes checked, gaps named.

The record answers, for a model candidate trained on this export: which base model, which
continued-pretraining data, which SFT and preference datasets (by content hash), which chat
template, which eval and safety reports, and which earlier export to roll back to. What it must
answer depends on the export: an SFT export holds no preference dataset, a first export has nothing
to roll back to, and neither stage is continued pretraining; so only the fields the export's kind
and place require are ``missing`` when empty, and the others say why they are not required.
Each listed file is checked once, however many times (and under whichever spelling) the manifest
lists it, so each problem is one line.

The manifest is untrusted input: whoever could write the export could write it. So it is
validated (a malformed one is one ``FILE: field: reason`` error), and a file it lists is read only
if it lies inside the export directory: an absolute path, a ``..`` or a symlink out of the
directory is a problem of its own, never hashed (hashing ``/etc/shadow`` or ``/dev/zero`` on an
auditor's behalf would leak or hang).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from generator.errors import ExportError, one_line

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

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Open(BaseModel):
    """A manifest part: the fields the audit reads are checked, others are left alone (a newer
    gapfill may add some)."""

    model_config = ConfigDict(extra="allow")


class _Listed(_Open):
    sha256: Sha256


class _Linked(_Listed):
    file: str


class _ChatTemplate(_Open):
    tokenizer: str
    sha256: Sha256
    max_length: int


class _Rollback(_Open):
    previous_manifest_sha256: Sha256 | None = None
    previous_export_id: str | None = None


class _StageAudit(_Open):
    base_model: str | None = None
    continued_pretraining_data: list[str] | None = None
    sft_dataset: dict[str, Sha256] | None = None
    preference_dataset: dict[str, Sha256] | None = None
    chat_template: _ChatTemplate | None = None
    eval_report: _Linked | None = None
    safety_report: _Linked | None = None
    rollback_artifacts: _Rollback | None = None


class _Manifest(_Open):
    kind: str | None = None  # "sft" or "preference"; None: written before kinds were recorded
    files: dict[str, _Listed] = {}
    stage_audit: _StageAudit


@dataclass
class AuditRecord:
    fields: dict[str, str]  # field -> a one-line description ("" when empty)
    missing: list[str] = field(default_factory=list)  # required fields that are empty
    not_required: dict[str, str] = field(default_factory=dict)  # empty, not required: why
    problems: list[str] = field(default_factory=list)  # hash mismatches, missing files


# The dataset field each training stage's export fills; the other stays empty by design.
STAGE_DATASET = {"sft": "sft_dataset", "preference": "preference_dataset"}


def _why_not_required(name: str, kind: str | None, first: bool) -> str | None:
    """Why an export of ``kind`` needs no ``name`` (None: it is required). A kind this gapfill
    does not know (a newer one's, or none recorded) requires every field: nothing is excused on a
    guess."""
    if kind not in STAGE_DATASET:
        return None
    if name == "rollback_artifacts" and first:
        return "no earlier export of this kind and these runs recorded (--previous names one)"
    if name == "continued_pretraining_data":
        return f"{kind} export, not continued pretraining"
    if name in STAGE_DATASET.values() and name != STAGE_DATASET[kind]:
        return f"{kind} export (its data is {STAGE_DATASET[kind]})"
    return None


def _describe(name: str, value: Any) -> str:
    if value in (None, "", [], {}):
        return ""
    if isinstance(value, _Rollback):
        previous = value.previous_manifest_sha256
        return f"previous manifest {previous}" if previous else ""
    if isinstance(value, _ChatTemplate):
        digest, limit = value.sha256[:16], value.max_length
        return f"{value.tokenizer} (template sha256 {digest}, max {limit} tokens)"
    if isinstance(value, _Linked):
        return f"file {value.file}, sha256 {value.sha256[:16]}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v[:16]}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def _inside(directory: Path, name: str) -> Path | None:
    """The listed file's path if it lies inside ``directory`` (symlinks resolved), else None."""
    relative = PurePosixPath(name)
    if not name or "\0" in name or relative.is_absolute() or ".." in relative.parts:
        return None
    path = directory / relative
    return path if path.resolve().is_relative_to(directory.resolve()) else None


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check_file(directory: Path, name: str, digest: str) -> str | None:
    """What is wrong with one listed file (None: it is there, with that hash)."""
    shown = one_line(name)
    path = _inside(directory, name)
    if path is None:
        return f"{shown}: outside the export directory; refused, not read"
    if not path.is_file():
        return f"{shown}: listed in the manifest but missing"
    try:
        actual = _sha256(path)
    except OSError as exc:
        return f"{shown}: cannot be read ({exc.strerror})"
    return None if actual == digest else f"{shown}: content differs from the manifest's sha256"


def _read_manifest(directory: Path) -> _Manifest:
    path = directory / "manifest.json"
    if not path.is_file():
        raise ExportError(f"{directory}: no manifest.json (not a gapfill export)")
    if _inside(directory, "manifest.json") is None:
        raise ExportError(f"{path}: a symlink out of the export directory; refused, not read")
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ExportError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object, not {type(data).__name__}")
    try:
        return _Manifest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = one_line(".".join(str(part) for part in error["loc"]))
        raise ExportError(f"{path}: {where}: {error['msg']}") from None


def _same_file(name: str) -> str:
    """One spelling per file: ``./a.json`` and ``a.json`` (or ``a//b``) name the same one."""
    return str(PurePosixPath(name)) if name else name


def _listed_once(manifest: _Manifest) -> dict[str, tuple[str, set[str]]]:
    """Every file the manifest lists (its files and the reports the stage audit links), once:
    file -> (the name as first listed, every sha256 it is listed with)."""
    audit = manifest.stage_audit
    listed = [(name, entry.sha256) for name, entry in manifest.files.items()]
    listed += [(r.file, r.sha256) for r in (audit.eval_report, audit.safety_report) if r]
    files: dict[str, tuple[str, set[str]]] = {}
    for name, digest in listed:
        files.setdefault(_same_file(name), (name, set()))[1].add(digest)
    return files


def _check_listing(directory: Path, name: str, digests: set[str]) -> str | None:
    """One file's problem: the first listing's, or a second hash the file does not have."""
    problems = (_check_file(directory, name, digest) for digest in sorted(digests))
    return next((problem for problem in problems if problem is not None), None)


def read_audit(directory: Path) -> AuditRecord:
    manifest = _read_manifest(directory)
    audit = manifest.stage_audit
    record = AuditRecord({name: _describe(name, getattr(audit, name)) for name in FIELDS})
    rollback = audit.rollback_artifacts
    # A first export says so (no previous id, no previous hash); a record without the field
    # says nothing, so its rollback stays required.
    first = rollback is not None and not (
        rollback.previous_export_id or rollback.previous_manifest_sha256
    )
    for name in (name for name, value in record.fields.items() if not value):
        why = _why_not_required(name, manifest.kind, first)
        if why is None:
            record.missing.append(name)
        else:
            record.not_required[name] = why
    checked = (_check_listing(directory, *listing) for listing in _listed_once(manifest).values())
    record.problems = [problem for problem in checked if problem is not None]
    return record
