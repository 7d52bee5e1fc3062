"""`gapfill audit` treats the manifest as untrusted: it reads no file outside the export directory
(each such path is one refused line, and the audit exits 1), and a malformed manifest is one
``FILE: field: reason`` error, never a traceback.

The exports here are written by hand (a manifest and the files it lists), since the audit reads
nothing else; tests/test_export.py audits a real export.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.app import app
from generator.errors import ExportError
from generator.export.audit import read_audit


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(files: dict[str, str], **audit: Any) -> dict[str, Any]:
    """A manifest as the export writes it, listing ``files`` (name -> sha256)."""
    return {
        "export_id": "e1",
        "files": {name: {"bytes": 1, "sha256": digest} for name, digest in files.items()},
        "stage_audit": {
            "base_model": "SmolLM2-135M",
            "continued_pretraining_data": [],
            "sft_dataset": {"train.jsonl": files.get("train.jsonl", "0" * 64)},
            "preference_dataset": None,
            "chat_template": {"tokenizer": "bundled", "sha256": "a" * 64, "max_length": 2048},
            "eval_report": None,
            "safety_report": None,
            "rollback_artifacts": {"previous_manifest_sha256": None},
            **audit,
        },
    }


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    """An export directory with one data file, its manifest listing it correctly."""
    out = tmp_path / "export"
    out.mkdir()
    (out / "train.jsonl").write_bytes(b'{"messages": []}\n')
    write(out, manifest({"train.jsonl": sha256(b'{"messages": []}\n')}))
    return out


def write(out: Path, data: Any) -> None:
    (out / "manifest.json").write_text(json.dumps(data))


def audit(out: Path) -> Result:
    return CliRunner().invoke(app, ["audit", str(out)])


def test_a_clean_export_audits_without_problems(export_dir: Path) -> None:
    record = read_audit(export_dir)
    assert record.problems == []
    assert (
        record.fields["chat_template"]
        == "bundled (template sha256 aaaaaaaaaaaaaaaa, max 2048 tokens)"
    )
    assert audit(export_dir).exit_code == 0


SECRET = b"not the auditor's to read\n"
UP = PurePosixPath("..")  # (built, not written out: tests/test_standalone.py greps for it)


def _outside(out: Path) -> dict[str, str]:
    """Names that reach a file beside the export (in the test's temporary directory), each with
    that file's true hash, so an audit that read them would find nothing wrong; and a system
    file, which the test itself does not read."""
    secret = out.parent / "secret.txt"
    secret.write_bytes(SECRET)
    (out / "link.jsonl").symlink_to(secret)
    (out / "sub").mkdir()
    names = [str(UP / "secret.txt"), str(secret), "link.jsonl", str("sub" / UP / UP / "secret.txt")]
    return {**{name: sha256(SECRET) for name in names}, "/etc/hostname": "0" * 64}


def test_files_listed_outside_the_export_are_refused_one_line_each(export_dir: Path) -> None:
    outside = _outside(export_dir)
    files = {"train.jsonl": sha256(b'{"messages": []}\n'), **outside}
    write(export_dir, manifest(files))
    assert read_audit(export_dir).problems == [
        f"{name}: outside the export directory; refused, not read" for name in outside
    ]
    result = audit(export_dir)
    assert result.exit_code == 1
    refused = [line for line in result.output.splitlines() if "refused, not read" in line]
    assert len(refused) == len(outside)


def test_a_report_linked_outside_the_export_is_refused_too(export_dir: Path) -> None:
    files = {"train.jsonl": sha256(b'{"messages": []}\n')}
    linked = {"file": "/etc/hostname", "sha256": "0" * 64}
    write(export_dir, manifest(files, eval_report=linked))
    assert read_audit(export_dir).problems == [
        "/etc/hostname: outside the export directory; refused, not read"
    ]


def test_a_symlink_that_stays_inside_the_export_is_read(export_dir: Path) -> None:
    (export_dir / "alias.jsonl").symlink_to(export_dir / "train.jsonl")
    digest = sha256(b'{"messages": []}\n')
    write(export_dir, manifest({"train.jsonl": digest, "alias.jsonl": digest}))
    assert read_audit(export_dir).problems == []


def test_a_manifest_that_is_a_symlink_out_of_the_export_is_refused(
    export_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    (export_dir / "manifest.json").rename(elsewhere)
    (export_dir / "manifest.json").symlink_to(elsewhere)
    with pytest.raises(ExportError, match="a symlink out of the export directory; refused"):
        read_audit(export_dir)


MALFORMED: dict[str, tuple[bytes | Any, str]] = {
    "not JSON": (b'{"files": {', r":1: not JSON: "),
    "not an object": ([1, 2], r": expected a JSON object, not list"),
    "no stage audit": ({"files": {}}, r": stage_audit: Field required"),
    "a file entry without its hash": (
        {**manifest({}), "files": {"train.jsonl": {"bytes": 3}}},
        r": files\.train\.jsonl\.sha256: Field required",
    ),
    "a hash that is not one": (
        manifest({"train.jsonl": "not-a-hash"}),
        r": files\.train\.jsonl\.sha256: String should match pattern",
    ),
    "a chat template of the wrong type": (
        manifest({}, chat_template="bundled"),
        r": stage_audit\.chat_template: Input should be a valid dictionary",
    ),
    "a max length that is not a number": (
        manifest({}, chat_template={"tokenizer": "t", "sha256": "a" * 64, "max_length": "big"}),
        r": stage_audit\.chat_template\.max_length: Input should be a valid integer",
    ),
    "a rollback that is a list": (
        manifest({}, rollback_artifacts=["x"]),
        r": stage_audit\.rollback_artifacts: Input should be a valid dictionary",
    ),
    "a report link without its file": (
        manifest({}, eval_report={"sha256": "b" * 64}),
        r": stage_audit\.eval_report\.file: Field required",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_manifest_is_one_error_naming_the_field(export_dir: Path, case: str) -> None:
    content, reason = MALFORMED[case]
    path = export_dir / "manifest.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(export_dir, content)
    with pytest.raises(ExportError, match=rf"^{path}{reason}"):
        read_audit(export_dir)
    result = audit(export_dir)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"error: {path}") and result.stderr.count("\n") == 1
