"""Where an export may be written, and what ``--overwrite`` may replace.

Two rules keep an export from destroying what it should not:

- ``--overwrite`` replaces only a directory that already holds a gapfill export: one whose
  ``manifest.json`` (a plain file, not a link) parses as a gapfill manifest. Any other directory
  is left alone, however it was named.
- The review UI writes only under a configured export root, into a folder chosen by *name*
  (``confined_target``): never a path, never through a link that leads out of the root. The root
  itself may be a link (the operator configured it; links are judged from where it resolves).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.errors import ExportError
from generator.schema import CandidateKind

MANIFEST = "manifest.json"
# A manifest is a few kB to a few MB (no per-item content); a bigger file is no manifest of ours,
# and is not read into memory to find out.
_MANIFEST_MAX_BYTES = 16 << 20
# A folder name, not a path: no separator, no "." or "..", nothing hidden (the export's own
# staging folders start with a dot), a length every file system takes.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class ManifestHead(BaseModel):
    """The fields every gapfill manifest has; what tells an earlier export from any directory."""

    model_config = ConfigDict(extra="allow")

    gapfill_version: str
    export_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: CandidateKind
    runs: list[str] = Field(min_length=1)
    files: dict[str, dict[str, int | str]]


def export_manifest(directory: Path) -> ManifestHead | None:
    """The manifest of the gapfill export in ``directory``, or None when it holds none."""
    path = directory / MANIFEST
    if path.is_symlink() or not path.is_file() or path.stat().st_size > _MANIFEST_MAX_BYTES:
        return None
    try:
        return ManifestHead.model_validate_json(path.read_bytes())
    except (ValidationError, OSError):
        return None


def is_export(directory: Path) -> bool:
    return export_manifest(directory) is not None


def check_target(out: Path, *, overwrite: bool) -> None:
    """Raises ExportError when ``out`` may not be written (nothing is touched either way)."""
    if out.is_symlink():
        raise ExportError(f"{out}: is a symbolic link; give the directory itself")
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ExportError(f"{out}: exists and is not empty (use --overwrite to replace it)")
    if not is_export(out):
        raise ExportError(
            f"{out}: holds no gapfill export (no {MANIFEST} that reads as one); --overwrite "
            "replaces only an earlier export"
        )


def confined_target(root: Path, name: str) -> Path:
    """The folder ``name`` under the export ``root``; raises ExportError for anything that is
    not a plain folder name, or that a link would lead out of the root."""
    if not _NAME.fullmatch(name):
        raise ExportError(
            f"export name {name!r}: use letters, digits, '_', '.' and '-' (at most 100, not "
            "starting with '.' or '-'); it names a folder under the export root, not a path"
        )
    base = root.expanduser().resolve()
    target = base / name
    if not target.resolve().is_relative_to(base):
        raise ExportError(f"export name {name!r}: a link there points out of the export root")
    return target
