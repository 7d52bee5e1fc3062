"""Secret detectors for the key formats that leak today: each kind is found when planted in
realistic text, and nothing is found in near misses or in the 175 real seed tasks."""

from __future__ import annotations

import json
import time
from random import Random

import pytest

from generator.dataset_reader import load_examples
from generator.filters.pii import PIIFilter
from generator.filters.secrets import FAMILIES, RULES, jwt_header_valid, random_enough
from generator.schema import SFTExample
from tests.conftest import REAL_DATA
from tests.factories import sft, wrap
from tests.secret_samples import NEAR_MISSES, PLANTED, Planted

SEED_TASKS = REAL_DATA / "self-instruct" / "seed_tasks.jsonl"
# Several fakes of each format: a detector that only fires on some draws (detect-secrets'
# OpenAI rule needs 20 letters or digits in a row on both sides of the marker) shows here.
DRAWS = 20


@pytest.fixture(scope="module")
def detector() -> PIIFilter:
    return PIIFilter()


@pytest.mark.parametrize("planted", PLANTED, ids=[p.name for p in PLANTED])
def test_each_planted_key_is_found_as_its_kind_and_shown_masked(
    planted: Planted, detector: PIIFilter
) -> None:
    rng = Random(planted.name)
    for _ in range(DRAWS):
        text, secret = planted.make(rng)
        kinds = [f.kind for f in detector.secrets(text)]
        assert planted.kind in kinds, f"{planted.name} missed in {text!r}: {kinds}"
        [score] = detector.score([wrap(sft("Summarise this note.", text))])
        assert not score.passed and planted.kind in score.reason
        assert secret not in json.dumps(score.evidence), "evidence never repeats the secret"


@pytest.mark.parametrize("text", NEAR_MISSES.values(), ids=list(NEAR_MISSES))
def test_a_near_miss_is_not_reported_as_a_secret(text: str, detector: PIIFilter) -> None:
    assert detector.secrets(text) == []


def test_every_kind_of_key_the_issue_names_has_planted_samples() -> None:
    families = {p.family for p in PLANTED}
    assert families == {
        "cloud",
        "code hosting",
        "payments",
        "LLM API",
        "model hub",
        "chat",
        "JWT",
        "private key",
    }
    assert families == set(FAMILIES.values())
    assert {r.kind for r in RULES} <= {p.kind for p in PLANTED}, "every rule has a planted key"


def test_openai_project_keys_were_missed_before_the_current_format_rules() -> None:
    """Finding 10: detect-secrets alone misses most sk-proj- keys (their '-' and '_')."""
    baseline = PIIFilter(current_formats=False)
    [project] = [p for p in PLANTED if p.name == "OpenAI project key (sk-proj-)"]
    rng = Random(10)
    texts = [project.make(rng)[0] for _ in range(DRAWS)]
    assert sum(bool(baseline.secrets(t)) for t in texts) < DRAWS / 2
    assert all(PIIFilter().secrets(t) for t in texts)


def test_placeholders_and_random_keys_are_told_apart_by_entropy() -> None:
    assert not random_enough("sk_live_xxxxxxxxxxxxxxxxxxxxxxxx")
    assert not random_enough("AKIAXXXXXXXXXXXXXXXX")
    assert random_enough("ASIA" + "Q7WZ3KXMB2RTYP5N")


def test_a_jwt_header_must_be_json_naming_its_algorithm() -> None:
    assert jwt_header_valid("eyJhbGciOiJIUzI1NiJ9.e30.sig")  # {"alg":"HS256"}
    assert not jwt_header_valid("eyJ0eXAiOiJKV1QifQ.e30.sig")  # {"typ":"JWT"}: no alg
    assert not jwt_header_valid("eyJub3QganNvbg.e30.sig")  # not JSON


def test_the_175_seed_tasks_hold_no_secrets() -> None:
    seeds: list[SFTExample] = load_examples(SEED_TASKS)  # type: ignore[assignment]
    assert len(seeds) == 175
    detector = PIIFilter()
    flagged = {
        i: detector.secrets("\n".join(m.content for m in e.turns())) for i, e in enumerate(seeds)
    }
    assert {i: f for i, f in flagged.items() if f} == {}


HOSTILE_LINES = {
    "slack digit groups": "xoxb-" + "1-" * 50_000,
    "e-mail local part with no @ after it": "a@" + "a-" * 50_000 + "!",
    "openai prefix repeated": "sk-" * 33_000,
    "jwt prefix repeated": "eyJ" * 33_000,
    "project key prefix repeated": "sk-proj-" * 12_500,
}


@pytest.mark.parametrize("text", HOSTILE_LINES.values(), ids=HOSTILE_LINES.keys())
def test_a_hostile_100_kb_line_is_screened_in_linear_time(text: str) -> None:
    # Each of these took 5 to 58 s before the rules were bounded and detect-secrets' long
    # lines were windowed; a linear scan of 100 KB takes well under a second.
    started = time.perf_counter()
    PIIFilter().findings(text)
    assert time.perf_counter() - started < 5.0
