"""The filters' verdicts ordered for a reviewer (review_ui/signals.py): flagged first, then
borderline by the run's own thresholds, then one line for the clear passes."""

from __future__ import annotations

from generator.filters.settings import FilterSettings
from generator.schema import Score
from review_ui.signals import passed_line, signals


def score(name: str, value: float, passed: bool, **evidence: object) -> Score:
    return Score(
        filter=name, value=value, passed=passed, reason=f"{name} says so", evidence=evidence
    )


def test_flagged_then_borderline_then_passed() -> None:
    scores = {
        "malformed": score("malformed", 1.0, True),
        "semantic_duplicate": score("semantic_duplicate", 0.9, True),
        "quality": score("quality", 2.0, False),
        "diversity": score("diversity", 0.3, True),
        "pii": score("pii", 0.0, True),
    }
    found = signals(scores, FilterSettings())
    assert [(s.name, s.state) for s in found] == [
        ("quality", "flagged"),
        ("semantic_duplicate", "borderline"),
        ("malformed", "passed"),
        ("pii", "passed"),
    ], "diversity is a score, not a check"
    assert "0.90" in found[1].reason and "0.92" in found[1].reason
    assert passed_line(found) == "passed: malformed, pii"


def test_borderline_follows_the_runs_thresholds() -> None:
    near = {"semantic_duplicate": score("semantic_duplicate", 0.9, True)}
    assert signals(near, FilterSettings(semantic_duplicate_threshold=0.99))[0].state == "passed"
    topic = {"off_topic": score("off_topic", 0.17, True, similarity=0.17)}
    assert signals(topic, FilterSettings())[0].state == "borderline"
    assert signals(topic, FilterSettings(off_topic_similarity=0.05))[0].state == "passed"


def test_a_judge_near_its_line_or_split_between_orders_is_borderline() -> None:
    low = score("judge", 3.2, True, helpfulness=3, correctness=3, safety=4)
    high = score("judge", 4.7, True, helpfulness=5, correctness=4, safety=5)
    split = score("judge", 0.5, True, orders=["A", "A"], position_bias=True)
    assert signals({"judge": low}, FilterSettings())[0].state == "borderline"
    assert signals({"judge": high}, FilterSettings())[0].state == "passed"
    assert signals({"judge": split}, FilterSettings())[0].state == "borderline"
