"""What `gapfill` prints is the text it means: paths, data and help strings with rich markup
(`[auth]`) or emoji codes (`:100:`) in them print as they are, and tables fit 80 columns
without breaking a word."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from generator.store import Store
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


LONG_ID = "general_approach_to_subject_matter_questions_long"  # 51 characters, as in issue 19
LONG_TAXONOMY = f"""\
cells:
  - id: {LONG_ID}
    description: "General approach to subject matter questions"
    examples: ["Generally, how should I approach subject matter questions in an interview?"]
    target: 40
  - id: writing_help
    description: "Help with writing polite e-mails"
    examples: ["Rewrite this e-mail so it sounds polite."]
    target: 4
"""
# Uncovered reference prompts: gaps labelled with these labels, the prompts as their examples.
REFERENCE = [
    *(
        {
            "prompt": f"Explain how photosynthesis works in desert plants that bloom at night, {i}",
            "label": "botany: how photosynthesis works in desert plants",
        }
        for i in range(6)
    ),
    *(
        {
            "prompt": f"What is the capital city of country number {i} in Europe, and its river?",
            "label": "european geography questions about capital cities",
        }
        for i in range(6)
    ),
]


@pytest.mark.parametrize("columns", [80, 120, 200])
def test_the_gap_table_fits_the_terminal_and_shows_ids_and_figures_in_full(
    store: Store, valkey_url: str, tmp_path: Path, columns: int
) -> None:
    (tmp_path / "taxonomy.yaml").write_text(LONG_TAXONOMY)
    data = tmp_path / "data.jsonl"
    data.write_text(
        json.dumps(
            {"instruction": "Rewrite my e-mail politely.", "input": "", "output": "Dear Sam"}
        )
    )
    (tmp_path / "reference.jsonl").write_text("".join(json.dumps(r) + "\n" for r in REFERENCE))
    env = cli_env(store, valkey_url, COLUMNS=str(columns))
    result = run_cli(
        env,
        *("gaps", "--data", str(data), "--taxonomy", str(tmp_path / "taxonomy.yaml")),
        *("--reference", str(tmp_path / "reference.jsonl"), "--run", "r1"),
        *("--json", str(tmp_path / "report.json")),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    gaps = json.loads((tmp_path / "report.json").read_text())["gaps"]
    assert {g["kind"] for g in gaps} == {"taxonomy", "reference"}, gaps
    shown = assert_gap_table(result.stdout, columns, gaps)
    # The ids come whole where they fit (a 51-character id does not in 80 columns).
    assert shown["gap"].folded == (columns < 100), result.stdout
    compare = run_cli(env, "gaps", "--compare", "r1", timeout=300)
    assert compare.returncode == 0, compare.stderr
    assert_gap_table(compare.stdout, columns, [{**g, "after": g["have"]} for g in gaps])


PROSE = {"labels": "label", "examples": "examples"}  # as the line under the table names them


@dataclass
class Shown:
    """A column as the table showed it: each row's text, its pieces joined; whether any folded."""

    texts: list[str]
    folded: bool


def assert_gap_table(stdout: str, width: int, gaps: list[dict[str, Any]]) -> dict[str, Shown]:
    """The table in ``stdout`` is within ``width`` with both borders on every line, and shows
    every gap's id and figures in full, its label and first example without a broken word; a
    prose column it leaves out is named under it. Returns the columns as shown."""
    lines = stdout.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("└"))
    table = lines[top : bottom + 1]
    assert all(len(line) <= width for line in table), stdout
    assert all(line[-1] in "┓┃┩│┘" for line in table), stdout  # the right border: nothing cut
    headers = [cell.strip() for cell in table[1].split("┃")[1:-1]]
    rows: list[list[list[str]]] = []  # per gap, per column, its pieces (one per line)
    for line in table[3:-1]:
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells[headers.index("have")]:  # a row's first line; the others continue it
            rows.append([[] for _ in headers])
        for pieces, cell in zip(rows[-1], cells, strict=True):
            pieces.extend([cell] if cell else [])
    shown = {
        header: Shown(
            texts=[("" if header == "gap" else " ").join(row[i]) for row in rows],
            folded=any(len(row[i]) > 1 for row in rows),
        )
        for i, header in enumerate(headers)
    }
    assert shown["gap"].texts == [g["id"] for g in gaps], stdout
    figures = ["have", *(["after"] if "after" in gaps[0] else []), "target", "deficit"]
    for figure in figures:
        assert shown[figure].texts == [str(g[figure]) for g in gaps], stdout
        assert not shown[figure].folded, stdout
    if "label" in shown:
        labels = [g["label"] if g["label"] != g["id"] else "" for g in gaps]
        assert shown["label"].texts == labels, stdout  # wrapped at spaces, so rejoined whole
    if "examples" in shown:
        for text, gap in zip(shown["examples"].texts, gaps, strict=True):
            words = text.removesuffix(" …").split()
            assert words == gap["examples"][0].split()[: len(words)], stdout
    left_out = [name for name, header in PROSE.items() if header not in shown]
    under = " ".join(lines[bottom + 1 :])
    if left_out:
        assert f"({' and '.join(left_out)} left out at {width} columns: " in under, stdout
    else:
        assert "left out" not in under, stdout
    return shown


def test_the_gap_table_prints_example_text_as_it_is(tmp_path: Path) -> None:
    table = "\n".join(gaps_table(tmp_path, 200))
    assert "[auth] A train goes 60 km/h for 2 hours :100: how far does it go?" in table, table
