"""Judge calibration: the judge against the humans' majority, beside the humans' own agreement."""

from __future__ import annotations

import pytest

from generator.calibration import calibrate, judge_label, kappa, majority


def test_majority_is_the_most_given_label_and_none_on_a_tie() -> None:
    assert majority(["accept", "accept", "reject"]) == "accept"
    assert majority(["accept", "reject"]) is None
    assert majority([]) is None


def test_kappa_matches_the_textbook_example() -> None:
    # 50 items: both yes 20, both no 15, rater A yes/B no 5, A no/B yes 10.
    left = ["yes"] * 25 + ["no"] * 25
    right = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    # observed 0.7; expected 0.5*0.6 + 0.5*0.4 = 0.5; kappa 0.4
    assert kappa(left, right) == pytest.approx(0.4)


def test_kappa_is_undefined_for_one_label_throughout() -> None:
    assert kappa(["accept"] * 4, ["accept"] * 4) is None
    assert kappa([], []) is None


def test_each_human_is_compared_with_the_majority_of_the_others() -> None:
    votes = {
        "i1": {"a": "accept", "b": "accept", "c": "swap"},  # a, b agree with others; c does not
        "i2": {"a": "reject", "b": "accept"},  # each against the other's single vote
        "i3": {"a": "accept"},  # one vote: no yardstick, but the judge can be compared
    }
    result = calibrate(votes, {"i1": "accept", "i2": "accept", "i3": "swap"})
    humans = result.humans
    # i1: a vs {b: accept, c: swap} -> tie, left out; b vs {a, c} -> tie, left out;
    #     c vs {a, b} -> accept: disagrees. i2: a vs accept: no; b vs reject: no.
    assert humans.pairs == 3
    assert humans.agreement == 0.0
    assert humans.confusion == {
        "swap": {"accept": 1},
        "reject": {"accept": 1},
        "accept": {"reject": 1},
    }
    judge = result.judge
    assert judge is not None
    # i1 majority accept (judge accept: agrees); i2 no majority: left out; i3 swap vs accept.
    assert judge.pairs == 2
    assert judge.agreement == 0.5
    assert result.items_with_votes == 3


def test_agreement_where_neither_said_tie_leaves_out_rejects() -> None:
    votes = {f"i{n}": {"a": "accept", "b": "accept", "c": "accept"} for n in range(4)}
    votes["t"] = {"a": "reject", "b": "reject", "c": "reject"}
    judge = {"i0": "accept", "i1": "accept", "i2": "swap", "i3": "accept", "t": "accept"}
    result = calibrate(votes, judge)
    assert result.judge is not None
    assert result.judge.agreement == pytest.approx(3 / 5)
    assert result.judge.decisive_pairs == 4  # "t" has a tie majority
    assert result.judge.decisive_agreement == pytest.approx(3 / 4)


def test_the_bootstrap_interval_holds_the_kappa_and_resamples_items_whole() -> None:
    votes = {}
    judge = {}
    for n in range(60):
        label = "accept" if n % 3 else "reject"
        votes[f"i{n}"] = {"a": label, "b": label, "c": "reject" if n % 5 == 0 else label}
        judge[f"i{n}"] = label if n % 4 else ("reject" if label == "accept" else "accept")
    result = calibrate(votes, judge)
    assert result.judge is not None and result.judge.kappa is not None
    assert result.judge.kappa_low is not None and result.judge.kappa_high is not None
    assert result.judge.kappa_low <= result.judge.kappa <= result.judge.kappa_high
    assert result.judge.kappa_high - result.judge.kappa_low > 0.05  # 60 items: not a point
    assert calibrate(votes, judge).judge == result.judge  # seeded: the same figures each time


def test_a_judge_that_agrees_less_than_the_humans_does_not_meet_them() -> None:
    votes = {f"i{n}": {"a": lab, "b": lab} for n, lab in enumerate(["accept", "reject"] * 10)}
    contrary = {item: ("reject" if by["a"] == "accept" else "accept") for item, by in votes.items()}
    assert not calibrate(votes, contrary).judge_meets_humans
    assert calibrate(votes, {item: by["a"] for item, by in votes.items()}).judge_meets_humans


def test_the_judges_labels_from_its_scores() -> None:
    both_orders = {"judge_model": "m", "orders": ["A", "B"], "position_bias": False}
    assert judge_label(1.0, True, both_orders, pair=True) == "accept"
    assert judge_label(0.0, False, {**both_orders, "orders": ["B", "A"]}, pair=True) == "swap"
    assert judge_label(0.5, True, {**both_orders, "orders": ["A", "A"]}, pair=True) == "reject"
    assert judge_label(0.5, True, {"judge_model": "m"}, pair=True) is None  # no usable verdict
    pointwise = {"judge_model": "m", "helpfulness": 4, "correctness": 2, "safety": 5}
    assert judge_label(3.7, True, pointwise, pair=False) == "accept"
    assert judge_label(2.0, False, pointwise, pair=False) == "reject"
    assert judge_label(0.0, True, {"judge_model": "m", "output": "junk"}, pair=False) is None
    assert judge_label(0.0, False, {"recorded": "swap"}, pair=True) == "swap"


def test_the_judge_in_a_reviewers_place_is_compared_on_the_humans_rows() -> None:
    """Two votes per item: each reviewer against the other's vote, and the judge against the
    same single vote, row for row (against all votes, a 1-1 split would have no majority)."""
    votes = {
        "i1": {"a": "accept", "b": "accept"},
        "i2": {"a": "accept", "b": "reject"},
        "i3": {"a": "reject", "b": "reject"},
    }
    judge = {"i1": "accept", "i2": "accept", "i3": "accept"}
    result = calibrate(votes, judge)
    assert result.judge is not None and result.judge.pairs == 2  # i2 has no majority of all
    place = result.judge_in_place
    assert place is not None and place.pairs == result.humans.pairs == 6
    # i1: accept vs accept twice; i2: vs b's reject (for a) no, vs a's accept (for b) yes;
    # i3: accept vs reject twice.
    assert place.agreement == pytest.approx(3 / 6)
    assert result.humans.agreement == pytest.approx(4 / 6)
    assert not result.judge_meets_humans


def test_auto_decisions_need_an_audit_share() -> None:
    from pydantic import ValidationError

    from generator.schema import PreScreenSettings

    with pytest.raises(ValidationError, match=r"audit_share: at least 0\.01 with auto_decide"):
        PreScreenSettings(auto_decide=True, audit_share=0.0)
    assert PreScreenSettings(auto_decide=False, audit_share=0.0).audit_share == 0.0
