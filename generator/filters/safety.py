"""Unsafe or disallowed content in answers: a fast offline first pass.

Two signals, both shipped on PyPI with no download: alt-profanity-check's linear model (profane
or abusive language) and per-category lexicons (violence, weapons, self-harm, illegal activity,
hate, sexual content) that count only when the answer complies rather than refuses: a refusal
that names the topic is not unsafe. The run's policy chooses the disallowed categories; gaps that
are *about* refusals or safety discussions can allow categories.

Measured on the 2,304 valid Anthropic HH harmless pairs: the score prefers ``chosen`` over
``rejected`` 55% of the time (profanity alone: 54%). These signals catch explicit content, not
subtle harm, so the filter is soft by default. Subtle harm is the LLM judge's job, with a safety
rubric.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from generator.filters.base import response_texts
from generator.schema import Candidate, Score

CATEGORIES: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "violence": r"\b(?:kill|murder|stab|strangle|torture)\w*\b|\bbeat (?:him|her|them) up\b",
        "weapons": r"\b(?:bomb|explosive|grenade|molotov|pipe bomb|ghost gun|silencer)s?\b",
        "self_harm": r"\b(?:suicide|kill (?:yourself|myself)|self[- ]harm|"
        r"cut (?:yourself|myself)|overdose)\b",
        "illegal_activity": r"\b(?:shoplift\w*|hotwire|launder\w*|counterfeit\w*|smuggl\w*|"
        r"hack into|fake id|break into (?:a|the|his|her|their) (?:house|car|home))\b",
        "hate": r"\b(?:n[i1]gg\w*|fagg?ots?|kikes?|spics?|chinks?|wetbacks?|trann(?:y|ies))\b",
        "sexual": r"\b(?:porn\w*|blowjob\w*|orgasm\w*|genitals?)\b",
    }.items()
}
REFUSAL = re.compile(
    r"\b(?:i (?:can(?:no|')t|won't|will not|am not able to|do not|don't) (?:help|assist|provide|"
    r"do|recommend|support|condone)|i'?m sorry|i am sorry|that(?:'s| is) (?:illegal|not "
    r"(?:ok|okay|appropriate|legal))|please don't|you shouldn't|it'?s (?:wrong|illegal|dangerous))",
    re.IGNORECASE,
)


class SafetyFilter:
    name = "unsafe"
    hard = False
    cost = 2

    def __init__(
        self,
        disallowed: Sequence[str] = tuple(CATEGORIES),
        *,
        profanity_threshold: float = 0.8,
    ) -> None:
        unknown = sorted(set(disallowed) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown safety categories {unknown}; known: {sorted(CATEGORIES)}")
        self.disallowed = list(disallowed)
        self.profanity_threshold = profanity_threshold

    def assess(self, texts: list[str]) -> list[tuple[float, list[str]]]:
        """Per text: a score (profanity probability + 1 per complied-with category) and why."""
        from profanity_check import predict_prob

        profanity = predict_prob(texts) if texts else []
        results = []
        for text, probability in zip(texts, profanity, strict=True):
            refuses = bool(REFUSAL.search(text))
            categories = [c for c in self.disallowed if CATEGORIES[c].search(text)]
            reasons = [] if refuses else [f"{c.replace('_', ' ')}" for c in categories]
            if probability >= self.profanity_threshold:
                reasons.insert(0, f"profanity ({probability:.2f})")
            score = float(probability) + (0.0 if refuses else float(len(categories)))
            results.append((score, reasons))
        return results

    def score(self, candidates: list[Candidate]) -> list[Score]:
        answers = [response_texts(c) for c in candidates]
        flat = self.assess([text for texts in answers for text in texts])
        scores, position = [], 0
        for texts in answers:
            parts = flat[position : position + len(texts)]
            position += len(texts)
            worst = max(parts, key=lambda p: p[0]) if parts else (0.0, [])
            reasons = sorted({r for _, rs in parts for r in rs})
            if reasons:
                reason = "unsafe: " + ", ".join(reasons)
                scores.append(
                    Score(
                        filter=self.name,
                        value=round(worst[0], 4),
                        passed=False,
                        reason=reason,
                        evidence={"categories": reasons},
                    )
                )
            else:
                scores.append(
                    Score(
                        filter=self.name,
                        value=round(worst[0], 4),
                        passed=True,
                        reason="no unsafe content found",
                    )
                )
        return scores
