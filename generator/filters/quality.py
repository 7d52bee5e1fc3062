"""Cheap quality heuristics on the answer: length, repetition, boilerplate, lexical diversity,
and answers that merely restate the question. Soft by default: they inform review priority and
the reviewer, and a run's config can make them hard."""

from __future__ import annotations

import re
from collections import Counter

from generator.filters.base import prompt_text, response_texts
from generator.filters.text import jaccard, shingles, words
from generator.schema import Candidate, Score

BOILERPLATE = re.compile(
    r"as an ai(?: language)? model|i(?:'m| am) (?:just )?an ai\b|i (?:cannot|can't|am unable to) "
    r"(?:help|assist|provide|do that)|i(?:'m| am) sorry, but i|as a large language model",
    re.IGNORECASE,
)


def repeated_ngram_ratio(tokens: list[str], size: int = 3) -> float:
    """Share of word n-grams that are repeats of an earlier one (0 = none, near 1 = looping)."""
    grams = [tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values()) / len(grams)


class QualityFilter:
    name = "quality"
    hard = False
    cost = 1

    def __init__(
        self,
        *,
        min_words: int = 2,
        max_words: int = 4000,
        max_repetition: float = 0.3,
        min_distinct: float = 0.3,
        max_restatement: float = 0.8,
        refusals_allowed: bool = False,
    ) -> None:
        self.min_words, self.max_words = min_words, max_words
        self.max_repetition, self.min_distinct = max_repetition, min_distinct
        self.max_restatement = max_restatement
        self.refusals_allowed = refusals_allowed

    def problems(self, candidate: Candidate) -> list[str]:
        found = []
        question = shingles(prompt_text(candidate), 2)
        for answer in response_texts(candidate):
            tokens = words(answer)
            if len(tokens) < self.min_words:
                found.append(f"too short ({len(tokens)} words)")
            elif len(tokens) > self.max_words:
                found.append(f"too long ({len(tokens)} words)")
            repetition = repeated_ngram_ratio(tokens)
            if repetition > self.max_repetition:
                found.append(f"repetitive ({repetition:.0%} repeated 3-grams)")
            if len(tokens) >= 50 and len(set(tokens)) / len(tokens) < self.min_distinct:
                found.append(f"low lexical diversity ({len(set(tokens)) / len(tokens):.2f})")
            if not self.refusals_allowed and (match := BOILERPLATE.search(answer)):
                found.append(f"boilerplate: {match.group(0)!r}")
            if question and jaccard(question, shingles(answer, 2)) >= self.max_restatement:
                found.append("restates the question")
        return found

    def score(self, candidates: list[Candidate]) -> list[Score]:
        scores = []
        for candidate in candidates:
            problems = self.problems(candidate)
            reason = "; ".join(problems) if problems else "no quality problem found"
            scores.append(
                Score(
                    filter=self.name, value=float(len(problems)), passed=not problems, reason=reason
                )
            )
        return scores
