"""The README's promises that CI relies on."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    block = re.search(
        r"## Two commands.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    assert block, "README.md has no '## Two commands' bash block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_the_readme_has_exactly_two_commands() -> None:
    assert len(readme_commands()) == 2


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


# A benchmark figure: a number with a throughput unit, a p50/p95 latency, or a precision and
# recall pair ("P 0.97 / R 0.75").
_FIGURE = re.compile(
    r"(?<![\w.,])(\d[\d,]*(?:\.\d+)?) ?(tok/s|items/s|q/s|queries/s|examples/s|candidates/s|"
    r"rows/s|texts/s)|\bp(?:50|95) (\d[\d,]*(?:\.\d+)?) ms|\b(P \d\.\d+ / R \d\.\d+)"
)


def figures(text: str) -> set[str]:
    found = _FIGURE.finditer(" ".join(text.split()))
    return {m.group(1) or m.group(3) or m.group(4) for m in found}


def test_every_benchmark_figure_in_the_readme_is_one_of_bench_results() -> None:
    """The README quotes speed figures only from bench/RESULTS.md (which bench/run_all.py
    writes), so a figure from an older run, another size or another machine cannot linger."""
    results = figures((ROOT / "bench" / "RESULTS.md").read_text())
    quoted = figures((ROOT / "README.md").read_text())
    assert quoted, "the pattern finds the README's figures"
    assert not quoted - results, f"README figures not in bench/RESULTS.md: {quoted - results}"


def test_the_figure_check_catches_a_stale_figure() -> None:
    assert figures("the local backend 21.4 tok/s called directly, p95 381 ms") == {"21.4", "381"}
    assert figures("refusals P 0.97 /\n R 0.75") == {"P 0.97 / R 0.75"}


def test_the_readme_has_no_process_wording() -> None:
    """The README describes the tool as it is, not the work that made it."""
    text = " ".join((ROOT / "README.md").read_text().split())
    for phrase in ("the eval issue", "the review issue", "when the UI exists", "its issue"):
        assert phrase not in text, phrase
    # How it changed ("now requires", "now takes") or what it may one day do ("will render").
    changed = re.findall(
        r"\b(?:now (?:requires|needs|takes|has|is|does)|will (?:render|be|add))\b", text
    )
    assert not changed, changed
