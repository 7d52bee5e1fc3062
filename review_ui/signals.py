"""The filters' verdicts on one item, ordered for a reviewer: what failed first, then what
passed only narrowly (borderline), then one line for everything that passed clearly.

Borderline is measured against the run's own thresholds (its ``FilterSettings``): a pass this
close to the line is worth a reviewer's second look, and nothing is hidden by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from generator.filters.settings import FilterSettings
from generator.schema import Score

State = Literal["flagged", "borderline", "passed"]
ORDER: dict[State, int] = {"flagged": 0, "borderline": 1, "passed": 2}
SIMILARITY_MARGIN = 0.05  # cosine: within this of a duplicate, contamination or topic line
JACCARD_MARGIN = 0.1
JUDGE_MARGIN = 0.5  # of a 1-5 score
# Filters that are scores, not checks: never a flag, shown only in their own places.
NOT_CHECKS = {"diversity"}


@dataclass(frozen=True)
class Signal:
    name: str
    state: State
    reason: str
    score: Score


def borderline(score: Score, settings: FilterSettings) -> str:
    """Why a passing ``score`` is close to failing, or "" when it is not."""
    value, name = score.value, score.filter
    if name == "semantic_duplicate":
        line = settings.semantic_duplicate_threshold
        if value >= line - SIMILARITY_MARGIN:
            return f"close to a duplicate: cosine {value:.2f} (flagged at {line:.2f})"
    if name == "near_duplicate":
        line = settings.near_duplicate_threshold
        if value >= line - JACCARD_MARGIN:
            return f"word overlap {value:.2f} with another item (flagged at {line:.2f})"
    if name == "contamination":
        line = settings.contamination_similarity
        if value >= line - SIMILARITY_MARGIN:
            return f"close to an eval item: cosine {value:.2f} (flagged at {line:.2f})"
    if name == "off_topic" and "similarity" in score.evidence:
        line = settings.off_topic_similarity
        if value < line + SIMILARITY_MARGIN:
            return f"barely on the gap's topic: cosine {value:.2f} (flagged below {line:.2f})"
    if name == "judge" and _judge_narrow(score, settings):
        return score.reason
    return ""


def _judge_narrow(score: Score, settings: FilterSettings) -> bool:
    if "orders" in score.evidence:  # a pair: chosen won in one order of two (position bias)
        return score.value < 1.0
    criteria = [k for k in ("helpfulness", "correctness", "safety") if k in score.evidence]
    return bool(criteria) and score.value < settings.judge_min_score + JUDGE_MARGIN


def signals(scores: dict[str, Score], settings: FilterSettings) -> list[Signal]:
    """Every check's signal, flagged first, then borderline, then passed (each by name)."""
    found = []
    for name, score in scores.items():
        if name in NOT_CHECKS:
            continue
        if not score.passed:
            found.append(Signal(name, "flagged", score.reason, score))
            continue
        narrow = borderline(score, settings)
        state: State = "borderline" if narrow else "passed"
        found.append(Signal(name, state, narrow or score.reason, score))
    return sorted(found, key=lambda s: (ORDER[s.state], s.name))


def passed_line(found: list[Signal]) -> str:
    """One line for every check that passed clearly."""
    names = [s.name.replace("_", " ") for s in found if s.state == "passed"]
    return f"passed: {', '.join(names)}" if names else ""
