"""LLM-as-judge through the generation backends, with rubric templates from ``prompts/``.

SFT items: ``judge.jinja`` asks for helpfulness, correctness and safety from 1 to 5 in a fixed JSON
schema (sent as structured output where the backend supports it, parsed leniently where not);
``value`` is their mean and an item below ``min_score`` is flagged. Preference items:
``judge_pairwise.jinja`` is asked in both orders (chosen as A, then as B), which cancels position
bias; ``value`` is the chosen answer's win rate over the two orders, a pair whose rejected answer
wins both is flagged, and a pair the judge split (each order won by the first/second position)
is reported as position-biased in the evidence. An output that is not the asked-for JSON gives
no verdict (passed, with the reason): a broken judge must not reject data.
"""

from __future__ import annotations

import json
import re
from typing import Any

from generator.backends.base import Backend, ChatRequest
from generator.prompts import JUDGE_TEMPLATE, PAIRWISE_TEMPLATE, PromptTemplates
from generator.schema import (
    Candidate,
    Message,
    PreferenceExample,
    SamplingParams,
    Score,
    TemplateUse,
)

CRITERIA = ("helpfulness", "correctness", "safety")
# Bounded, so that under constrained decoding a verdict always ends within the judge's max_tokens.
_REASON: dict[str, Any] = {"type": "string", "maxLength": 200}
POINTWISE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{c: {"type": "integer", "minimum": 1, "maximum": 5} for c in CRITERIA},
        "reason": _REASON,
    },
    "required": [*CRITERIA, "reason"],
    "additionalProperties": False,
}
PAIRWISE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"better": {"type": "string", "enum": ["A", "B"]}, "reason": _REASON},
    "required": ["better", "reason"],
    "additionalProperties": False,
}
_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (models wrap JSON in prose or code fences)."""
    for match in _OBJECT.finditer(text):
        try:
            value = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def pointwise_verdict(data: dict[str, Any] | None) -> tuple[float, str] | None:
    """(mean score, reason) when every criterion is an integer in 1..5."""
    if data is None:
        return None
    values = [data.get(c) for c in CRITERIA]
    if not all(isinstance(v, int) and 1 <= v <= 5 for v in values):
        return None
    return sum(values) / len(values), str(data.get("reason", ""))  # type: ignore[arg-type]


def pairwise_winner(data: dict[str, Any] | None) -> str | None:
    better = data.get("better") if data else None
    return better.strip().upper() if isinstance(better, str) and better.strip() in "ABab" else None


class JudgeFilter:
    name = "judge"
    hard = False
    cost = 10

    def __init__(
        self,
        backend: Backend,
        *,
        templates: PromptTemplates | None = None,
        rubric: str = "",
        min_score: float = 3.0,
        max_tokens: int = 128,
    ) -> None:
        self.backend = backend
        self.templates = templates or PromptTemplates()
        self.rubric = rubric
        self.min_score = min_score
        # Greedy and seeded: a judge's verdict must be reproducible.
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0)

    def _request(
        self, request_id: str, template: str, schema: dict[str, Any], **values: str
    ) -> ChatRequest:
        text = self.templates.render(template, gap=None, rubric=self.rubric, **values)
        return ChatRequest(
            id=request_id,
            messages=[Message(role="user", content=text)],
            sampling=self.sampling,
            json_schema=schema,
        )

    def _template_uses(self, requests: list[ChatRequest]) -> dict[str, list[dict[str, Any]]]:
        """Per candidate index: the judge templates it was shown through, with what they
        rendered to, for its provenance (a verdict reproduces only with its exact prompt)."""
        hashes = {name: self.templates.hash(name) for name in (JUDGE_TEMPLATE, PAIRWISE_TEMPLATE)}
        uses: dict[str, list[dict[str, Any]]] = {}
        for request in requests:
            index, _ = request.id.split(":")
            name = PAIRWISE_TEMPLATE if request.json_schema == PAIRWISE_SCHEMA else JUDGE_TEMPLATE
            use = TemplateUse(
                step="pairwise" if name == PAIRWISE_TEMPLATE else "judge",
                name=name,
                hash=hashes[name],
                messages=request.messages,
            )
            uses.setdefault(index, []).append(use.model_dump(mode="json"))
        return uses

    def score(self, candidates: list[Candidate]) -> list[Score]:
        requests: list[ChatRequest] = []
        for index, candidate in enumerate(candidates):
            payload = candidate.payload
            if payload is None:
                continue
            prompt = payload.prompt_text()
            if isinstance(payload, PreferenceExample):
                chosen, rejected = payload.chosen[-1].content, payload.rejected[-1].content
                for order, (a, b) in enumerate(((chosen, rejected), (rejected, chosen))):
                    requests.append(
                        self._request(
                            f"{index}:{order}",
                            PAIRWISE_TEMPLATE,
                            PAIRWISE_SCHEMA,
                            prompt=prompt,
                            answer_a=a,
                            answer_b=b,
                        )
                    )
            else:
                requests.append(
                    self._request(
                        f"{index}:0",
                        JUDGE_TEMPLATE,
                        POINTWISE_SCHEMA,
                        prompt=prompt,
                        answer=payload.response_text(),
                    )
                )
        outputs: dict[str, str] = {}
        if requests:
            for result in self.backend.generate(requests):
                if result.completions:
                    outputs[result.request_id] = result.completions[0].text
        uses = self._template_uses(requests)
        scores = [self._verdict(i, c, outputs) for i, c in enumerate(candidates)]
        for index, score in enumerate(scores):
            if str(index) in uses:
                score.evidence["templates"] = uses[str(index)]
        return scores

    def _verdict(self, index: int, candidate: Candidate, outputs: dict[str, str]) -> Score:
        model = {"judge_model": self.backend.model}
        if candidate.payload is None:
            return Score(filter=self.name, value=0.0, passed=True, reason="nothing to judge")
        if isinstance(candidate.payload, PreferenceExample):
            first = pairwise_winner(parse_json_object(outputs.get(f"{index}:0", "")))
            second = pairwise_winner(parse_json_object(outputs.get(f"{index}:1", "")))
            if first is None or second is None:
                return Score(
                    filter=self.name,
                    value=0.5,
                    passed=True,
                    reason="judge gave no usable verdict",
                    evidence=model,
                )
            # Order 0 shows chosen as A; order 1 shows chosen as B.
            wins = (first == "A") + (second == "B")
            evidence = {**model, "orders": [first, second], "position_bias": first == second}
            return Score(
                filter=self.name,
                value=wins / 2,
                passed=wins > 0,
                reason=f"judge prefers chosen in {wins} of 2 orders",
                evidence=evidence,
            )
        raw = outputs.get(f"{index}:0", "")
        parsed = parse_json_object(raw)
        verdict = pointwise_verdict(parsed)
        if verdict is None:
            return Score(
                filter=self.name,
                value=0.0,
                passed=True,
                reason="judge gave no usable verdict",
                evidence={**model, "output": raw[:300]},
            )
        mean, why = verdict
        return Score(
            filter=self.name,
            value=round(mean, 3),
            passed=mean >= self.min_score,
            reason=f"judge score {mean:.1f} of 5: {why}"[:300],
            evidence={**model, **{c: parsed[c] for c in CRITERIA}},  # type: ignore[index]
        )
