"""Fenced code blocks in candidate text, apart from the prose around them: what the review UI
draws as code and what the execution check runs. Pure functions over strings."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A fence opens a line with three or more backticks or tildes; the same run closes it.
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_LANGUAGE = re.compile(r"^[A-Za-z0-9_+#.-]{1,24}$")
PYTHON_NAMES = {"python", "py", "python3"}
# What counts as code stating its own tests: an assert, a unittest case, a pytest-style test.
_TESTS = re.compile(r"^\s*(assert\b|def test_|class \w+\(.*TestCase\))", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """Prose (``language`` None) or a code block (``language`` "" when none is named)."""

    text: str
    language: str | None = None

    @property
    def is_code(self) -> bool:
        return self.language is not None


def blocks(text: str) -> list[Block]:
    """``text`` cut into prose and fenced code blocks, in order. An unclosed fence (a truncated
    answer) runs to the end. The info string names a language only when it looks like one: it
    is model output, passed on to the highlighter only as a plain name."""
    found: list[Block] = []
    prose: list[str] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        opened = _FENCE.match(lines[index])
        if opened is None:
            prose.append(lines[index])
            index += 1
            continue
        fence = opened.group("fence")
        info = opened.group("info").strip().split(" ")[0]
        code: list[str] = []
        index += 1
        while index < len(lines):
            closing = _FENCE.match(lines[index])
            if (
                closing
                and closing.group("fence")[0] == fence[0]
                and len(closing.group("fence")) >= len(fence)
                and not closing.group("info").strip()
            ):
                index += 1
                break
            code.append(lines[index])
            index += 1
        _flush(prose, found)
        found.append(Block("\n".join(code), info if _LANGUAGE.match(info) else ""))
    _flush(prose, found)
    return found


def _flush(prose: list[str], found: list[Block]) -> None:
    text = "\n".join(prose).strip("\n")
    if text.strip():
        found.append(Block(text))
    prose.clear()


def python_code(text: str) -> list[str]:
    """The Python blocks of ``text``: those marked python (or py, python3), or unmarked ones
    when no block names another language."""
    code = [b for b in blocks(text) if b.is_code]
    named = [b.text for b in code if (b.language or "").lower() in PYTHON_NAMES]
    if named:
        return named
    return [b.text for b in code if not b.language]


def states_tests(code: str) -> bool:
    """Whether ``code`` holds tests of its own (asserts, test functions, a TestCase)."""
    return _TESTS.search(code) is not None
