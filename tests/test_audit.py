"""`gapfill audit` treats the manifest as untrusted: it reads no file outside the export directory
(each such path is one refused line, and the audit exits 1), and a malformed manifest is one
``FILE: field: reason`` error, never a traceback. What it calls missing is what the export's kind
and place require, each problem is one line, and every name is printed in full at any width.

The untrusted-manifest tests write an export by hand (a manifest and the files it lists), since the
audit reads nothing else; the others audit real exports (SFT, preference, and a later SFT export
of the same run), written once for the module.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import redis
from typer.testing import CliRunner, Result

from cli.app import app
from generator.errors import ExportError
from generator.export.audit import AuditRecord, read_audit
from generator.export.writer import ExportOptions, export
from generator.schema import Candidate, CandidateKind
from generator.screening import screen_all
from generator.store import Store
from tests.factories import candidate, cli_env, preference, run_cli


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(files: dict[str, str], **audit: Any) -> dict[str, Any]:
    """A manifest as the export writes it, listing ``files`` (name -> sha256)."""
    return {
        "export_id": "e1",
        "kind": "sft",
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


# Real exports, and what the audit requires of each.


def _accepted(store: Store, items: list[Candidate]) -> None:
    """Store the items screened (the export refuses unscreened ones) and accept them all."""
    store.put_many(screen_all(items))
    for run in {item.run_id for item in items}:
        while (lease := store.claim("alice", run)) is not None:
            store.decide(lease.item_id, "alice", "accept", lease.version)


@pytest.fixture(scope="module")
def exports(
    valkey_url: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    """A first SFT export, a first preference export, and a second SFT export of the same run
    (which the store records as following the first), written once; tests audit copies."""
    root = tmp_path_factory.mktemp("exports")
    client = redis.Redis.from_url(valkey_url, decode_responses=True)
    store = Store(client, prefix=f"gapfill-test-{uuid.uuid4().hex[:12]}")
    _accepted(store, [candidate(i, run="run-sft") for i in range(3)])
    _accepted(store, [preference(i, run="run-pref") for i in range(3)])
    plan = {
        "sft": ("run-sft", CandidateKind.SFT),
        "preference": ("run-pref", CandidateKind.PREFERENCE),
        "later sft": ("run-sft", CandidateKind.SFT),
    }
    for name, (run, kind) in plan.items():
        options = ExportOptions(
            runs=[run],
            kind=kind,
            out=root / name.replace(" ", "-"),
            tokenizer=str(model_dir),
            base_model="HuggingFaceTB/SmolLM2-135M",
        )
        export(store, options, root / "data")
    yield {name: root / name.replace(" ", "-") for name in plan}
    store.delete_prefix()
    client.close()


@pytest.fixture
def copy_of(exports: dict[str, Path], tmp_path: Path) -> Any:
    """A copy of one of the real exports, to edit or break."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(exports[name], tmp_path / name.replace(" ", "-")))

    return copy


def edit_manifest(out: Path, **audit: Any) -> None:
    """Change fields of a real export's stage audit (and nothing else)."""
    data = json.loads((out / "manifest.json").read_text())
    data["stage_audit"].update(audit)
    write(out, data)


def test_a_first_sft_export_lacks_nothing_it_needs(exports: dict[str, Path]) -> None:
    record = read_audit(exports["sft"])
    assert record.problems == [] and record.missing == []
    assert record.not_required == {
        "continued_pretraining_data": "sft export, not continued pretraining",
        "preference_dataset": "sft export (its data is sft_dataset)",
        "rollback_artifacts": (
            "no earlier export of this kind and these runs recorded (--previous names one)"
        ),
    }
    done = run_cli(cli_env(), "audit", str(exports["sft"]), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "missing: none"


def test_a_first_preference_export_needs_no_sft_dataset(exports: dict[str, Path]) -> None:
    record = read_audit(exports["preference"])
    assert record.problems == [] and record.missing == []
    assert set(record.not_required) == {
        "continued_pretraining_data",
        "sft_dataset",
        "rollback_artifacts",
    }
    assert record.fields["preference_dataset"].startswith("train.jsonl ")


def test_a_later_export_needs_what_it_rolls_back_to(exports: dict[str, Path], copy_of: Any) -> None:
    record = read_audit(exports["later sft"])
    assert record.missing == [] and "rollback_artifacts" not in record.not_required
    assert record.fields["rollback_artifacts"].startswith("previous manifest ")
    out = copy_of("later sft")
    rollback = json.loads((out / "manifest.json").read_text())["stage_audit"]["rollback_artifacts"]
    assert rollback["previous_export_id"], "the store knows the first export"
    edit_manifest(out, rollback_artifacts={**rollback, "previous_manifest_sha256": None})
    assert read_audit(out).missing == ["rollback_artifacts"]


def test_what_an_export_names_no_value_for_is_missing_when_required(copy_of: Any) -> None:
    out = copy_of("sft")
    edit_manifest(out, base_model=None, chat_template=None)
    assert read_audit(out).missing == ["base_model", "chat_template"]
    done = run_cli(cli_env(), "audit", str(out), timeout=120)
    assert done.stdout.splitlines()[-1] == "missing: base_model, chat_template"


def test_an_export_of_a_kind_this_gapfill_does_not_know_requires_every_field(
    export_dir: Path,
) -> None:
    write(export_dir, {**manifest({}), "kind": "pretraining"})
    record = read_audit(export_dir)
    assert record.not_required == {}
    assert record.missing == [
        "continued_pretraining_data",
        "preference_dataset",
        "eval_report",
        "safety_report",
        "rollback_artifacts",
    ]


# However the manifest lists a file (in files, and linked from the stage audit; with another
# spelling of its name, or another hash), it is one file and its problem is one line.
LISTED_TWICE = {
    "the same way": {},
    "as ./eval_report.json": {"file": "./eval_report.json"},
    "with another hash": {"sha256": "0" * 64},
}


@pytest.mark.parametrize("listing", sorted(LISTED_TWICE))
def test_a_missing_file_is_one_problem_however_often_it_is_listed(
    copy_of: Any, listing: str
) -> None:
    out = copy_of("sft")
    linked = json.loads((out / "manifest.json").read_text())["stage_audit"]["eval_report"]
    edit_manifest(out, eval_report={**linked, **LISTED_TWICE[listing]})
    (out / "eval_report.json").unlink()
    # Named as the manifest's files list it, the first listing.
    assert read_audit(out).problems == ["eval_report.json: listed in the manifest but missing"]
    done = run_cli(cli_env(), "audit", str(out), timeout=120)
    assert done.returncode == 1
    assert [line for line in done.stdout.splitlines() if "eval_report.json:" in line] == [
        "eval_report.json: listed in the manifest but missing"
    ]


def test_a_file_listed_with_two_hashes_differs_from_one_of_them(copy_of: Any) -> None:
    out = copy_of("sft")
    linked = json.loads((out / "manifest.json").read_text())["stage_audit"]["eval_report"]
    edit_manifest(out, eval_report={**linked, "sha256": "0" * 64})
    assert read_audit(out).problems == [
        "eval_report.json: content differs from the manifest's sha256"
    ]


def _columns(output: str) -> tuple[str, list[str], list[str]]:
    """The title above the table, and the text of each column's cells, top to bottom."""
    lines = output.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    cells = [line.split("│")[1:3] for line in lines[top:] if line.startswith("│")]
    return " ".join(lines[:top]), [c[0] for c in cells], [c[1] for c in cells]


def _unbroken(text: str) -> str:
    """Text with every space and line break gone: a value wrapped over lines reads the same."""
    return "".join(text.split())


def _shown(record: AuditRecord) -> list[str]:
    """What the value column says of each field: its value, why it is not required, or that it
    is missing."""
    why = record.not_required
    return [
        value or (f"not required: {why[name]}" if name in why else "[missing]")
        for name, value in record.fields.items()
    ]


@pytest.mark.parametrize("width", [80, 60, 40])
def test_every_name_and_value_is_printed_in_full_at_any_width(
    exports: dict[str, Path], width: int
) -> None:
    out = exports["sft"]
    done = run_cli(cli_env(COLUMNS=str(width)), "audit", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout, "nothing is cut short"
    assert all(len(line) <= width for line in done.stdout.splitlines()[:-1])
    title, fields, values = _columns(done.stdout)
    assert _unbroken(f"stage audit of {out}") == _unbroken(title)
    record = read_audit(out)
    assert _unbroken("".join(fields)) == _unbroken("".join(record.fields))
    assert _unbroken("".join(values)) == _unbroken("".join(_shown(record)))
