"""Malformed output: unparseable, truncated, empty, leaking chat-template tokens, binary junk."""

from __future__ import annotations

import re

from generator.schema import Candidate, Score

# Special tokens of common chat templates (ChatML, Llama 2/3, Mistral, Gemma, Phi, GPT-2).
TEMPLATE_TOKENS = re.compile(
    r"<\|im_start\|>|<\|im_end\|>|\[/?INST\]|<\|eot_id\|>|<\|start_header_id\|>"
    r"|<\|end_header_id\|>|<\|begin_of_text\|>|<\|endoftext\|>|<start_of_turn>|<end_of_turn>"
    r"|<\|user\|>|<\|assistant\|>|<\|system\|>|<\|end\|>|</?s>"
)
# Control characters other than tab/newline/carriage return: a sign of binary or broken decoding.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
MAX_CHARS = 100_000


class MalformedFilter:
    name = "malformed"
    hard = True
    cost = 0

    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        self.max_chars = max_chars

    def score(self, candidates: list[Candidate]) -> list[Score]:
        return [self._one(candidate) for candidate in candidates]

    def _one(self, candidate: Candidate) -> Score:
        problem, evidence = self._problem(candidate)
        if problem:
            return Score(
                filter=self.name, value=0.0, passed=False, reason=problem, evidence=evidence
            )
        return Score(filter=self.name, value=1.0, passed=True, reason="well-formed")

    def _problem(self, candidate: Candidate) -> tuple[str, dict[str, str]]:
        if candidate.provenance.error:
            return f"no output: {candidate.provenance.error}", {}
        if candidate.payload is None:
            raw = candidate.raw or ""
            return "unparseable output (expected JSON)", {"raw": raw[:2000]}
        if candidate.provenance.finish_reason == "length":
            return "truncated: the generation hit max_tokens", {}
        texts = [m.text for m in candidate.payload.turns()]
        total = sum(len(t) for t in texts)
        if total > self.max_chars:
            return f"too long: {total} characters (limit {self.max_chars})", {}
        for text in texts:
            if match := TEMPLATE_TOKENS.search(text):
                return "chat-template token in the content", {"match": match.group(0)}
            controls = len(CONTROL.findall(text))
            if controls > max(2, len(text) // 100):
                return f"binary or garbled text: {controls} control characters", {}
        return "", {}
