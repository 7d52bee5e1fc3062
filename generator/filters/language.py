"""Off-language output: the answer's language (py3langid, which ships its model) against the
languages the run expects. Very short answers are not judged: identification needs some text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from generator.filters.base import response_texts
from generator.schema import Candidate, Score


class LanguageFilter:
    name = "language"
    hard = False
    cost = 1

    def __init__(self, expected: Sequence[str] = ("en",), min_chars: int = 20) -> None:
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        model = Path(MODEL_DIR) / MODEL_FILE  # MODEL_FILE is relative to the package
        self.identifier = LanguageIdentifier.from_modelpath(model, norm_probs=True)
        self.expected = {code.lower() for code in expected}
        self.min_chars = min_chars

    def detect(self, text: str) -> tuple[str, float]:
        language, probability = self.identifier.classify(text)
        return str(language), float(probability)

    def score(self, candidates: list[Candidate]) -> list[Score]:
        scores = []
        for candidate in candidates:
            found = [
                self.detect(text)
                for text in response_texts(candidate)
                if len(text.strip()) >= self.min_chars
            ]
            off = [(lang, p) for lang, p in found if lang not in self.expected and p >= 0.9]
            if off:
                lang, probability = off[0]
                expected = ", ".join(sorted(self.expected))
                scores.append(
                    Score(
                        filter=self.name,
                        value=probability,
                        passed=False,
                        reason=f"answer is in {lang!r}, expected {expected}",
                        evidence={"language": lang},
                    )
                )
            else:
                languages = sorted({lang for lang, _ in found}) or ["(too short to tell)"]
                scores.append(
                    Score(
                        filter=self.name,
                        value=0.0,
                        passed=True,
                        reason="language: " + ", ".join(languages),
                    )
                )
        return scores
