"""What `gapfill` prints is the text it means: paths, data and help strings with rich markup
(`[auth]`) or emoji codes (`:100:`) in them print as they are, and tables fit 80 columns
without breaking a word."""

from __future__ import annotations

import json
from pathlib import Path

from tests.factories import cli_env, run_cli


def test_validate_prints_paths_and_line_numbers_as_text(tmp_path: Path) -> None:
    folder = tmp_path / "[auth]"
    folder.mkdir()
    path = folder / "my_sft.jsonl"
    good = {"instruction": "Name a colour.", "input": "", "output": "Blue."}
    rows = [good] * 99 + [{"input": "", "output": "No instruction."}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run_cli(cli_env(), "validate", str(path), "--format", "alpaca", timeout=120)
    assert result.returncode == 1
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{path}:100: "), line  # rich once made ":100:" an emoji
    assert "instruction" in line
    assert f"{path}: format alpaca, 100 rows, 99 valid, 1 invalid" in result.stderr


def test_an_error_naming_a_markup_path_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "[bold]x:100:.jsonl"
    result = run_cli(cli_env(), "validate", str(path), timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {path}: no such file"


def test_help_prints_brackets(tmp_path: Path) -> None:
    result = run_cli(cli_env(), "ui", "--help", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "([auth] in secrets.toml)" in result.stdout


TAXONOMY = """\
cells:
  - id: writing_help
    description: "Help with writing polite e-mails"
    examples: ["Rewrite this e-mail so it sounds polite."]
    target: 4
  - id: arithmetic_word_problems
    description: "Arithmetic word problems with several steps and units"
    examples: ["[auth] A train goes 60 km/h for 2 hours :100: how far does it go?"]
    target: 4
"""


def gaps_table(tmp_path: Path, columns: int) -> list[str]:
    """`gapfill gaps` of a one-row dataset against TAXONOMY, ``columns`` wide: its lines."""
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(TAXONOMY)
    data = tmp_path / "data.jsonl"
    rows = [{"instruction": "Rewrite my e-mail politely.", "input": "", "output": "Dear Sam, ..."}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    env = cli_env(COLUMNS=str(columns))
    result = run_cli(env, "gaps", "--data", str(data), "--taxonomy", str(taxonomy), timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_gap_table_fits_80_columns_and_breaks_no_id(tmp_path: Path) -> None:
    lines = gaps_table(tmp_path, 80)
    table = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80, table
    cells = [cell.strip() for line in lines for cell in line.split("│")]
    assert "writing_help" in cells and "arithmetic_word_problems" in cells, table


def test_the_gap_table_prints_example_text_as_it_is(tmp_path: Path) -> None:
    table = "\n".join(gaps_table(tmp_path, 200))
    assert "[auth] A train goes 60 km/h for 2 hours :100: how far does it go?" in table, table
