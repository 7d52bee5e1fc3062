"""Tool calls checked against the tools the conversation lists: a call to a tool it does not
list, or arguments that break the tool's JSON Schema, fail. Flagged, never fixed: a model that
calls tools wrongly is what a reviewer needs to see, and a silently repaired call would teach
the model calls it never made."""

from __future__ import annotations

from generator.schema import Candidate, Score, SFTExample
from generator.tools import call_problems


class ToolCallFilter:
    """Hard by default: a schema-invalid call would train the model to make it. A reviewer
    can still overturn it (the reason names each bad call)."""

    name = "tool_calls"
    hard = True
    cost = 1

    def score(self, candidates: list[Candidate]) -> list[Score]:
        return [self._one(candidate) for candidate in candidates]

    def _one(self, candidate: Candidate) -> Score:
        example = candidate.payload
        if not isinstance(example, SFTExample) or not example.calls():
            return Score(filter=self.name, value=1.0, passed=True, reason="no tool calls")
        problems = call_problems(example)
        calls = len(example.calls())
        if not problems:
            return Score(
                filter=self.name,
                value=1.0,
                passed=True,
                reason=f"{calls} tool call(s), each fits its tool's schema",
            )
        return Score(
            filter=self.name,
            value=1.0 - len(problems) / calls,
            passed=False,
            reason="; ".join(problems)[:1000],
            evidence={"problems": problems[:20], "calls": calls},
        )
