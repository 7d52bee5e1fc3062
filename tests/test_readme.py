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
