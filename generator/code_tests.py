"""Tests a backend writes for a code answer that states none: what it is asked and what is
taken from its output. The tests go to the candidate's record (``Provenance.code_tests``), and
the code_execution filter runs them after the code; they never enter the example, whose answer
stays as the model wrote it."""

from __future__ import annotations

import json
from typing import Any

from generator.code_blocks import python_code
from generator.schema import Message

MAX_TESTS_CHARS = 3000


def code_of(answer: str) -> str:
    """The answer's Python, its blocks in order."""
    return "\n\n".join(python_code(answer))


def tests_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"tests": {"type": "string", "minLength": 1, "maxLength": MAX_TESTS_CHARS}},
        "required": ["tests"],
        "additionalProperties": False,
    }


def tests_messages(system: str, conversation: list[Message]) -> list[Message]:
    request = next(m.content for m in reversed(conversation) if m.role == "user")
    code = code_of(conversation[-1].content)
    return [
        Message(role="system", content=system),
        Message(
            role="user",
            content=f"Request:\n{request}\n\nCode:\n```python\n{code}\n```\n\nWrite the tests.",
        ),
    ]


def parsed_tests(text: str) -> str | None:
    """The tests from the step's output: the JSON's, a fenced block inside it taken out; None
    when there are none."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    tests = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(tests, str) or not tests.strip():
        return None
    fenced = code_of(tests)
    return (fenced or tests).strip() or None
