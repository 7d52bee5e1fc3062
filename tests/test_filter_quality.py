"""The quality filter: assistant boilerplate and refusals in their paraphrases, repetition in the
request as well as the answer, each named in the reason; legitimate answers pass; the patterns
stay linear on hostile input. Real data: the labelled set bench/quality_recall.py measures on."""

from __future__ import annotations

import gzip
import importlib
import json
import time
import zlib
from pathlib import Path

import pytest

from generator.evaluation.metrics import is_refusal, refusal_section
from generator.filters.quality import BOILERPLATE, QualityFilter, find_boilerplate
from tests.factories import pair, sft, wrap

LABELLED = Path(__file__).resolve().parents[1] / "bench" / "data" / "quality" / "labelled.jsonl.gz"


def reason(question: str, answer: str, quality: QualityFilter | None = None) -> str:
    [score] = (quality or QualityFilter()).score([wrap(sft(question, answer))])
    return score.reason


def test_the_paraphrased_boilerplate_a_user_saw_is_caught_and_quoted() -> None:
    answer = (
        "As a language AI, I'm designed to give information, but I'm not equipped to assist "
        "with writing a product description."
    )
    found = reason("Write a product description for a lamp.", answer)
    assert 'boilerplate: "As a language AI, I\'m designed"' in found
    assert 'refusal: "I\'m not equipped to assist"' in found


def test_a_request_that_repeats_a_phrase_nine_times_is_caught() -> None:
    request = "Write an ad for our charger. " + "here is a product description " * 9
    found = reason(request, "Charge your phone in twenty minutes, wherever you are.")
    assert "repetitive: 'here is a product description' \u00d79 in the request" in found


@pytest.mark.parametrize(
    ("answer", "family"),
    [
        ("As an AI language model, I cannot give an opinion on this.", "boilerplate"),
        ("As a large language model trained by OpenAI, I don't browse.", "boilerplate"),
        ("As an AI assistant, my goal is to be helpful.", "boilerplate"),
        ("I'm just an AI, so I can't taste food.", "boilerplate"),
        ("I am only a computer program, and I really can't do more.", "boilerplate"),
        (
            "I\u2019m a machine, so I\u2019m not good at reading emotions.",
            "boilerplate",
        ),  # HH's apostrophe
        ("I'm designed to answer questions about cooking.", "boilerplate"),
        ("I was programmed to be polite to everyone.", "boilerplate"),
        ("I don't have personal opinions about politics.", "boilerplate"),
        ("I do not have the ability to browse the internet.", "boilerplate"),
        ("I don't have access to real-time stock prices.", "boilerplate"),
        ("I'm not able to help with that request.", "refusal"),
        ("I'm not programmed to assist with legal questions.", "boilerplate"),
        ("I cannot assist with that.", "refusal"),
        ("I can't help you with this one.", "refusal"),
        ("I'm sorry, but I can't.", "refusal"),
        ("I won't be able to provide that information.", "refusal"),
        ("Sorry, I\u2019m not allowed to share his address.", "refusal"),
        ("I must respectfully decline this request.", "refusal"),
        ("That would go against my guidelines.", "refusal"),
        ("I'm not comfortable writing that joke.", "refusal"),
        ("I am unable to provide medical advice.", "refusal"),
    ],
)
def test_each_family_of_phrasings_is_caught(answer: str, family: str) -> None:
    assert family in {found for found, _ in find_boilerplate(answer)}
    assert f"{family}: " in reason("Tell me about it.", answer)


@pytest.mark.parametrize(
    "answer",
    [
        "A language model predicts the next token from the ones before it.",
        "BERT is not trained as a language model in the usual left-to-right sense.",
        "I'm an AI researcher at a university, and my lab studies robot grasping.",
        "I am a machine learning engineer with five years of experience in Python.",
        "I can't help but smile when I think of our trip to Lisbon last summer.",
        "I'm sorry for the short notice, but could you meet me today at three?",
        "This charger is designed to provide fast charging for every Qi phone.",
        "I was trained to use a forklift during my first week at the warehouse.",
        "I'm not able to attend the meeting on Friday; could we move it to Monday?",
        "I can't tell you how happy I am that you came to the wedding.",
        "The AI in the story helps the customer find a phone with a good camera.",
    ],
)
def test_answers_that_only_mention_ai_or_decline_a_meeting_pass(answer: str) -> None:
    assert find_boilerplate(answer) == []
    assert reason("Write a sentence.", answer) == "no quality problem found"


def test_a_refusal_gap_keeps_its_refusals_and_boilerplate_but_not_its_loops() -> None:
    """The filter's policy, kept from before: ``refusals_allowed`` (a gap about refusals) turns
    off both the refusal and the self-description flags, never the repetition ones."""
    allowed = QualityFilter(refusals_allowed=True)
    refusal = "As an AI, I'm not able to help you pick a lock you don't own."
    assert reason("How do I pick a lock?", refusal, allowed) == "no quality problem found"
    assert "refusal" in reason("How do I pick a lock?", refusal)
    looping = "I can't help with that, sorry. " * 5
    assert "repetitive: sentence" in reason("How do I pick a lock?", looping, allowed)


def test_both_answers_of_a_preference_pair_are_checked() -> None:
    example = pair("Tell me a joke.", "Why did the chicken cross the road?", "I'm just an AI.")
    [score] = QualityFilter().score([wrap(example)])
    assert 'boilerplate: "I\'m just an AI"' in score.reason


def test_a_repeated_sentence_is_named_with_its_count() -> None:
    answer = "Preheat the oven. The staff was friendly and helpful today. " * 4
    assert (
        "repetitive: sentence 'the staff was friendly and helpful today' \u00d74 in the answer"
        in (reason("Review the restaurant.", answer))
    )


def test_a_loop_of_one_word_is_reported_as_that_word() -> None:
    assert "repetitive: 'again' \u00d740 in the answer" in reason("Say it.", "again " * 40)


def test_a_list_with_a_repeated_opening_is_not_repetition() -> None:
    """A survey's questions share their first words; what differs is most of the text."""
    questions = [
        "the cleanliness of the room",
        "the comfort of the beds",
        "the quality of the breakfast",
        "the friendliness of the staff",
        "the value for money",
        "the location of the hotel",
    ]
    answer = "\n".join(f"{i}. How would you rate {q}?" for i, q in enumerate(questions, 1))
    assert reason("Write a hotel survey.", answer) == "no quality problem found"


@pytest.mark.parametrize(
    "unit",
    [
        "as an ai ",
        "as a language model xx ",
        "i'm just an ",
        "i can't ",
        "i am not able to ",
        "i ",
        "sorry, but ",
        "i don't have ",
        "xi'm just an ai ",
        ".!?\n",
        "a",
    ],
)
def test_the_patterns_are_linear_on_a_hostile_megabyte(unit: str) -> None:
    """1 MB made of the patterns' own openings, the worst case for a backtracking engine: each
    search finishes well under a second (about 0.4 s of CPU on the 2-core CI machine)."""
    text = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
    started = time.process_time()
    find_boilerplate(text)
    assert time.process_time() - started < 1.0


def test_the_eval_reports_pattern_set_names_what_it_searches_with() -> None:
    section = refusal_section([sft("Why?", "As a language AI, I'm designed to help.")], ["g"], {})
    assert section.refusals == 1
    for name in section.pattern_set.split(" + "):
        module, attribute = name.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), attribute), name
    assert BOILERPLATE.search("AS AN AI LANGUAGE MODEL, I CANNOT")
    assert is_refusal("I\u2019m sorry, but I can\u2019t.") and not is_refusal(
        "A language model is a tool."
    )


def test_the_labelled_sets_rule_labels_follow_its_documented_rule() -> None:
    """bench/data/README.md: 200+ characters, zlib under 0.15 is repetition, 0.15-0.35 unsure,
    else clean; every hand label is one of the documented ones."""
    with gzip.open(LABELLED, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    assert len(rows) == 1880
    for row in rows:
        answer = row["answer"].encode("utf-8")
        ratio = len(zlib.compress(answer, 9)) / len(answer)
        if row["by"] in {"rule", "hand+rule"}:
            short_or_varied = len(row["answer"]) < 200 or ratio >= 0.35
            expected = "clean" if short_or_varied else "repetition" if ratio < 0.15 else "unsure"
            assert row["label"] == expected, row["id"]
        assert row["label"] in {"boilerplate", "refusal", "repetition", "clean", "unsure"}


def test_a_phrase_inside_a_longer_one_of_its_family_is_named_once() -> None:
    answer = "As a language AI, I'm designed to be helpful, but I'm not equipped to assist."
    assert find_boilerplate(answer) == [
        ("boilerplate", "As a language AI, I'm designed"),
        ("refusal", "I'm not equipped to assist"),
    ]
