"""Every YAML file a user hands gapfill (config, campaign, taxonomy, filter settings) fails as
one line naming the file, however it is broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.campaign import load_campaign
from generator.config import load_settings
from generator.coverage import load_taxonomy
from generator.errors import ConfigError, DataFileError, GapfillError
from generator.filters.settings import load_filter_settings
from generator.yaml_file import read_yaml


def _deep(tmp_path: Path) -> Path:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 50_000 + "]" * 50_000, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"a: [1, 2", "not valid YAML"),
        (b"a: \xff\xfe", "not UTF-8 text"),
    ],
)
def test_a_broken_file_is_one_error_naming_it(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        read_yaml(path, ConfigError)
    message = str(caught.value)
    assert message.startswith(f"{path}: {reason}") and "\n" not in message


def test_a_missing_file_or_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        read_yaml(tmp_path / "absent.yaml", DataFileError)
    with pytest.raises(DataFileError, match="is a directory"):
        read_yaml(tmp_path, DataFileError)


@pytest.mark.parametrize(
    "load",
    [
        lambda path: load_settings(path),
        lambda path: load_campaign(path),
        lambda path: load_taxonomy(path),
        lambda path: load_filter_settings(path),
    ],
    ids=["settings", "campaign", "taxonomy", "filter settings"],
)
def test_yaml_nested_fifty_thousand_deep_is_a_user_error_not_a_recursion_error(
    tmp_path: Path, load: object
) -> None:
    path = _deep(tmp_path)
    with pytest.raises(GapfillError, match="nested too deeply"):
        load(path)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "filters:\n  malformed: true\n  near_duplicat_threshold: 0.7\n",
            "filters.yaml:3: filters.near_duplicat_threshold: unknown key; "
            "did you mean 'near_duplicate_threshold'?",
        ),
        (
            "near_duplicate: true\nnear_duplicate_threshold: 7\n",
            "filters.yaml:2: near_duplicate_threshold: Input should be less than or equal to 1",
        ),
        ("filters:\n  color: red\n", "filters.yaml:2: filters.color: unknown key; `gapfill run"),
    ],
    ids=["typo in the section", "bad value in a bare file", "unknown key, nothing close"],
)
def test_a_filter_settings_file_error_names_the_line_and_key_with_a_hint(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "filters.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_filter_settings(path)
    assert str(caught.value).startswith(f"{tmp_path}/{expected}"), str(caught.value)
