"""Where an export may go: a UI export by name under the export root only, and --overwrite only
over an earlier export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.errors import ExportError
from generator.export.files import place
from generator.export.target import check_target, confined_target, is_export

UP = ".."  # joined at run time: the standalone scan flags a climbing path literal
MANIFEST = {
    "gapfill_version": "0.1.0",
    "export_id": "ab" * 32,
    "kind": "sft",
    "runs": ["run-1"],
    "files": {"train.jsonl": {"rows": 1, "bytes": 10, "sha256": "cd" * 32}},
    "counts": {"rows": 1},
}


def an_export(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps(MANIFEST))
    (directory / "train.jsonl").write_text("{}\n")
    return directory


def test_a_name_gives_a_folder_directly_under_the_export_root(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    assert confined_target(root, "sft-2024.06_v1") == root.resolve() / "sft-2024.06_v1"
    assert not root.exists(), "nothing is created by asking"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc",
        "/tmp/x",
        "..",
        ".",
        f"{UP}/x",
        "a/b",
        "a\\b",
        ".hidden",
        "-rf",
        "a b",
        "é",
        "x" * 101,
    ],
)
def test_anything_but_a_plain_folder_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ExportError, match=r"export name .*not a path"):
        confined_target(tmp_path / "exports", name)


def test_a_link_in_the_root_that_points_out_of_it_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    root.mkdir()
    outside = an_export(tmp_path / "elsewhere")
    (root / "escape").symlink_to(outside)
    (root / "dangling").symlink_to(tmp_path / "not-yet")
    for name in ("escape", "dangling"):
        with pytest.raises(ExportError, match="points out of the export root"):
            confined_target(root, name)
    assert is_export(outside), "the folder the link points to is untouched"


def test_a_root_that_is_itself_a_link_is_followed_and_judged_from_where_it_leads(
    tmp_path: Path,
) -> None:
    # The operator configured the root; a link there is theirs. Names are confined to where
    # it resolves.
    real = tmp_path / "disk" / "exports"
    real.mkdir(parents=True)
    root = tmp_path / "exports"
    root.symlink_to(real)
    assert confined_target(root, "one") == real.resolve() / "one"
    (real / "inside").mkdir()
    (real / "alias").symlink_to(real / "inside")
    assert confined_target(root, "alias") == real.resolve() / "alias"
    with pytest.raises(ExportError, match="symbolic link"):
        check_target(confined_target(root, "alias"), overwrite=True)  # but never written through


def test_only_a_directory_holding_a_gapfill_manifest_counts_as_an_earlier_export(
    tmp_path: Path,
) -> None:
    assert is_export(an_export(tmp_path / "good"))
    cases = {
        "no manifest": None,
        "not json": "{",
        "a list": "[]",
        "another tool's manifest": json.dumps({"name": "x", "version": 1}),
        "a bad export id": json.dumps({**MANIFEST, "export_id": f"{UP}/{UP}/etc"}),
        "no runs": json.dumps({**MANIFEST, "runs": []}),
    }
    for name, text in cases.items():
        folder = tmp_path / name.replace(" ", "-").replace("'", "")
        folder.mkdir()
        (folder / "data.txt").write_text("precious")
        if text is not None:
            (folder / "manifest.json").write_text(text)
        assert not is_export(folder), name
        with pytest.raises(ExportError, match="holds no gapfill export"):
            check_target(folder, overwrite=True)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "manifest.json").symlink_to(tmp_path / "good" / "manifest.json")
    assert not is_export(linked), "a manifest that is a link makes no export"


def test_empty_and_missing_targets_need_no_overwrite_and_files_are_refused(tmp_path: Path) -> None:
    check_target(tmp_path / "missing", overwrite=False)
    (tmp_path / "empty").mkdir()
    check_target(tmp_path / "empty", overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        check_target(tmp_path / "file", overwrite=True)


def test_the_rename_checks_the_target_again_and_leaves_a_non_export_alone(tmp_path: Path) -> None:
    staging = an_export(tmp_path / ".staging")
    out = an_export(tmp_path / "out")
    (out / "manifest.json").write_text("replaced by something else meanwhile")
    with pytest.raises(ExportError, match="holds no gapfill export"):
        place(staging, out, overwrite=True)
    assert (out / "train.jsonl").exists() and staging.exists()
    (out / "manifest.json").write_text(json.dumps(MANIFEST))
    place(staging, out, overwrite=True)
    assert not staging.exists() and is_export(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "the old export is gone"
