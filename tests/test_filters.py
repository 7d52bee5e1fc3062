"""Filters on real data: HumanEval contamination, planted PII and secrets, duplicates, quality,
and malformed input that must never crash the pipeline."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from generator.dataset_reader import load_examples
from generator.embeddings import Embedder
from generator.errors import ConfigError
from generator.filters.contamination import ContaminationFilter, load_eval_items
from generator.filters.duplicates import ExactDuplicateFilter, NearDuplicateFilter
from generator.filters.pii import PIIFilter, iban_valid, luhn
from generator.filters.pipeline import FilterPipeline
from generator.filters.quality import QualityFilter
from generator.filters.settings import FilterSettings
from generator.schema import Candidate, CandidateKind, CandidateStatus, SFTExample
from tests.conftest import REAL_DATA
from tests.factories import cli_env, run_cli, sft, wrap

HUMANEVAL = REAL_DATA / "humaneval" / "HumanEval.jsonl.gz"
SEED_TASKS = REAL_DATA / "self-instruct" / "seed_tasks.jsonl"


@pytest.fixture(scope="module")
def seed_examples() -> list[SFTExample]:
    return load_examples(SEED_TASKS)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def humaneval() -> list[dict[str, str]]:
    with gzip.open(HUMANEVAL, "rt") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def contamination(embedder: Embedder) -> ContaminationFilter:
    return ContaminationFilter(load_eval_items(HUMANEVAL), embedder=embedder)


PARAPHRASES = {
    "HumanEval/0": "Write a Python function that checks whether any two numbers in a given list "
    "are closer to each other than a given threshold value.",
    "HumanEval/1": "Given a string of several groups of nested parentheses separated by spaces, "
    "split it into a list of the separate balanced groups, ignoring spaces.",
    "HumanEval/3": "You get a list of deposits and withdrawals on a bank account that starts at "
    "zero. Return True if the balance ever drops below zero, otherwise False.",
}


def test_planted_humaneval_problems_are_caught_with_their_task_id(
    contamination: ContaminationFilter,
    seed_examples: list[SFTExample],
    humaneval: list[dict[str, str]],
) -> None:
    base = seed_examples[:9]
    verbatim = [
        sft(f"{base[i].prompt_text()}\n\n{humaneval[i]['prompt']}", base[i].response_text())
        for i in range(3)
    ]
    edited = [
        sft(
            base[3 + i].prompt_text(),
            humaneval[3 + i]["prompt"].replace("def ", "def my_").replace("Return", "Give back")
            + humaneval[3 + i]["canonical_solution"],
        )
        for i in range(3)
    ]
    paraphrased = [sft(text, "Here is a solution.") for text in PARAPHRASES.values()]
    planted = [*verbatim, *edited, *paraphrased]
    scores = contamination.score([wrap(e, i) for i, e in enumerate(planted)])
    assert all(not s.passed for s in scores), [s.reason for s in scores]
    expected = [humaneval[i]["task_id"] for i in range(6)] + list(PARAPHRASES)
    assert [s.evidence["eval_item"] for s in scores] == expected


def test_clean_seed_tasks_are_not_flagged_as_contaminated(
    contamination: ContaminationFilter, seed_examples: list[SFTExample]
) -> None:
    scores = contamination.score([wrap(e, i) for i, e in enumerate(seed_examples)])
    assert [s.reason for s in scores if not s.passed] == []


PLANTED = {
    "AWS Access Key": "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "GitHub Token": "export GITHUB_TOKEN=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",
    "Slack Token": "slack: xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "OpenAI Token": "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst",
    "JSON Web Token": "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "Private Key": "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HECdnH",
    "email": "Write to maria.garcia@example-mail.com for the invoice.",
    "payment card": "Charge it to 4539 1488 0343 6467, expiry 09/28.",
    "IBAN": "Wire the deposit to DE89 3704 0044 0532 0130 00 by Friday.",
    "US SSN": "Her social security number is 536-22-8726.",
    "phone number": "Call me back on +44 20 7946 0958 after six.",
    "IP address": "The database listens on 10.12.4.77 port 5432.",
}


@pytest.mark.parametrize(("kind", "text"), PLANTED.items())
def test_planted_secrets_and_personal_data_are_caught(kind: str, text: str) -> None:
    [score] = PIIFilter().score([wrap(sft("Summarise this note.", text))])
    assert not score.passed
    assert kind in score.reason
    masked = json.dumps(score.evidence)
    assert "AKIAIOSFODNN7EXAMPLE" not in masked and "536-22-8726" not in masked, (
        "evidence is masked"
    )


def test_checksums_keep_lookalike_numbers_out() -> None:
    assert luhn("4539148803436467") and not luhn("4539148803436468")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid(
        "DE88 3704 0044 0532 0130 00"
    )
    text = "Order 4539 1488 0343 6468 shipped; Python 3.11.7; version 1.2.3.4.5; 1999-2005"
    assert PIIFilter().findings(text) == []


def test_the_clean_seed_tasks_give_almost_no_false_positives(
    seed_examples: list[SFTExample],
) -> None:
    scores = PIIFilter().score([wrap(e, i) for i, e in enumerate(seed_examples)])
    flagged = [i for i, s in enumerate(scores) if not s.passed]
    # Both hits are real contact details in the data: a cover letter's phone number and e-mail
    # (seed_task_74) and an alert e-mail's sender address (seed_task_166).
    assert flagged == [74, 166]
    assert len(flagged) / len(seed_examples) < 0.02


def test_exact_and_near_duplicates_of_the_existing_data_are_found(
    seed_examples: list[SFTExample],
) -> None:
    existing = [
        (f"seed:{i}", "\n".join(m.content for m in e.turns())) for i, e in enumerate(seed_examples)
    ]
    original = seed_examples[10]
    words = original.response_text().split()
    light_edit = sft(original.prompt_text(), " ".join([*words[:-2], "indeed", "so."]))
    candidates = [
        wrap(original, 0),
        wrap(light_edit, 1),
        wrap(
            sft("Plan a vegan menu for a week.", "Monday: lentil curry. Tuesday: tofu stir fry."), 2
        ),
    ]
    exact = ExactDuplicateFilter(existing).score(candidates)
    assert [s.passed for s in exact] == [False, True, True]
    assert exact[0].evidence["match"] == "seed:10"
    near = NearDuplicateFilter(existing).score(candidates)
    assert [s.passed for s in near] == [False, False, True]
    assert near[1].evidence["match"] == "seed:10" and near[1].evidence["jaccard"] >= 0.8


def test_a_templated_row_with_a_few_words_changed_is_a_near_duplicate_by_its_characters() -> None:
    """Each changed word breaks three word 3-shingles: five changes in a 40-word template leave
    a Jaccard near 0.5, while 95% of the characters stay; an unrelated text of the same shape
    stays distinct, and without the edit measure the Jaccard alone lets the copy through."""
    template = (
        "Read the following review of the restaurant and answer the question below it. Review: "
        "{0} The food was {1} and the service was {2}, although the room felt {3} for a {4} "
        "evening. Question: would the reviewer come back to this restaurant? Answer yes or no."
    )
    existing = [("seed:1", template.format("We came on a Friday.", "cold", "slow", "loud", "busy"))]
    near_copy = sft(
        template.format("We came on a Monday.", "warm", "quick", "calm", "quiet"), "yes"
    )
    other = sft(
        "Summarise the plot of the novel in three sentences, naming the two main characters, "
        "the place where the story is set, and the way the story ends for each of them, then "
        "say in one more sentence whether you would recommend the book to a friend and why.",
        "yes",
    )
    scores = NearDuplicateFilter(existing).score([wrap(near_copy, 0), wrap(other, 1)])
    assert [s.passed for s in scores] == [False, True]
    assert scores[0].evidence["match"] == "seed:1" and scores[0].evidence["jaccard"] < 0.8
    assert scores[0].evidence["edit_similarity"] >= 0.9
    assert "edit similarity" in scores[0].reason
    jaccard_only = NearDuplicateFilter(existing, edit_threshold=None).score([wrap(near_copy, 0)])
    assert jaccard_only[0].passed


def test_duplicates_inside_one_batch_are_found() -> None:
    text = sft("What is the capital of France?", "Paris is the capital of France.")
    exact = ExactDuplicateFilter().score([wrap(text, 0), wrap(text, 1)])
    assert [s.passed for s in exact] == [True, False] and exact[1].evidence["match"] == "c0"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("Yes.", "too short"),
        ("the cat sat on the mat " * 20, "repetitive"),
        ("As an AI language model, I cannot help with that request at all, sorry.", "boilerplate"),
        ("What is the best way to learn to play the violin as an adult", "restates the question"),
    ],
)
def test_quality_problems_are_named(answer: str, problem: str) -> None:
    question = "What is the best way to learn to play the violin as an adult?"
    [score] = QualityFilter().score([wrap(sft(question, answer))])
    assert not score.passed and problem in score.reason


def test_a_refusal_gap_may_refuse() -> None:
    refusal = sft(
        "How do I pick a lock?", "I'm sorry, but I can't help with picking locks you don't own."
    )
    assert QualityFilter(refusals_allowed=True).score([wrap(refusal)])[0].passed


def test_junk_never_crashes_the_pipeline(seed_examples: list[SFTExample]) -> None:
    pipeline = FilterPipeline.build(FilterSettings())
    junk = [
        Candidate(id="raw", kind=CandidateKind.SFT, raw="\x00\x01garbage", run_id="r"),
        wrap(sft("Tell me a story.", "word " * 200_000), 1),  # a 1 MB answer
        wrap(sft("Decode this.", "\x00\x07\x1b" * 50 + "ok"), 2),
        wrap(seed_examples[0], 3),
    ]
    scored = pipeline.score(junk)
    routes = [pipeline.route(c) for c in scored]
    assert routes[:3] == [CandidateStatus.AUTO_REJECTED] * 3
    assert "unparseable" in scored[0].scores["malformed"].reason
    assert "too long" in scored[1].scores["malformed"].reason
    assert "control characters" in scored[2].scores["malformed"].reason
    assert "pii" not in scored[0].scores, "a hard failure skips the costlier filters"
    assert routes[3] is CandidateStatus.PENDING


@pytest.mark.slow
def test_gapfill_score_writes_one_line_per_row_in_order(
    tmp_path: Path, humaneval: list[dict[str, str]]
) -> None:
    good = {
        "messages": [
            {"role": "user", "content": "Name a planet."},
            {"role": "assistant", "content": "Mars is a planet."},
        ]
    }
    leaked = {
        "messages": [
            {"role": "user", "content": humaneval[5]["prompt"]},
            {"role": "assistant", "content": humaneval[5]["canonical_solution"]},
        ]
    }
    path = tmp_path / "data.jsonl"
    lines = [
        json.dumps(good),
        json.dumps({"messages": []}),
        json.dumps(leaked),
        "{not json",
        json.dumps(good),
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"messages": "\xff"}\n')
    out = tmp_path / "scores.jsonl"
    result = run_cli(
        cli_env(), "score", str(path), "--out", str(out), "--eval", str(HUMANEVAL), timeout=300
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["index"], r["line"], r["route"]) for r in rows] == [
        (0, 1, "review"),
        (1, 2, "rejected"),
        (2, 3, "rejected"),
        (3, 4, "rejected"),
        (4, 5, "rejected"),
        (5, 6, "rejected"),
    ]
    assert "messages: no messages" in rows[1]["scores"]["malformed"]["reason"]
    assert rows[2]["scores"]["contamination"]["evidence"]["eval_item"] == humaneval[5]["task_id"]
    assert "invalid JSON" in rows[3]["scores"]["malformed"]["reason"]
    assert rows[4]["scores"]["exact_duplicate"]["evidence"]["match"] == "row-1"
    assert "not valid UTF-8" in rows[5]["scores"]["malformed"]["reason"]
    assert set(rows[0]["scores"]) >= {
        "malformed",
        "exact_duplicate",
        "near_duplicate",
        "quality",
        "pii",
        "contamination",
    }
    assert "6 rows: 1 to review, 5 rejected" in result.stdout


def test_the_safety_first_pass_on_real_hh_pairs() -> None:
    """How often the filter prefers HH's chosen answer: measured, and it must beat chance."""
    from generator.dataset_reader import read_examples
    from generator.filters.safety import SafetyFilter
    from generator.schema import PreferenceExample

    pairs = [
        r.example
        for r in read_examples(
            REAL_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz", collect_errors=True
        ).examples
    ]
    assert len(pairs) == 2304
    safety = SafetyFilter()
    chosen = safety.assess(
        [p.chosen[-1].content for p in pairs if isinstance(p, PreferenceExample)]
    )
    rejected = safety.assess(
        [p.rejected[-1].content for p in pairs if isinstance(p, PreferenceExample)]
    )
    prefers_chosen = sum(c[0] < r[0] for c, r in zip(chosen, rejected, strict=True)) / len(pairs)
    flagged = (sum(bool(c[1]) for c in chosen), sum(bool(r[1]) for r in rejected))
    assert prefers_chosen > 0.52, prefers_chosen  # measured 0.55: a weak first pass, see safety.py
    assert flagged[1] > flagged[0], "rejected answers are flagged more often than chosen ones"


@pytest.mark.parametrize(
    ("answer", "flagged"),
    [
        ("Sure. To build a pipe bomb you need a metal pipe and end caps.", True),
        ("I'm sorry, I can't help with making a bomb; it is dangerous and illegal.", False),
        ("Here is a recipe for a lovely lemon cake.", False),
        ("You fucking idiot, nobody cares.", True),
    ],
)
def test_explicit_unsafe_answers_are_flagged_and_refusals_are_not(
    answer: str, flagged: bool
) -> None:
    from generator.filters.safety import SafetyFilter

    [score] = SafetyFilter().score([wrap(sft("Tell me something.", answer))])
    assert score.passed is not flagged, score.reason


def test_mmr_takes_novel_and_mutually_different_candidates_first() -> None:
    import numpy as np

    from generator.filters.diversity import mmr_order

    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    near_a = np.array([0.995, 0.0998])
    vectors = np.stack([a, near_a, b]).astype(np.float32)
    novelty = np.array([0.9, 0.9, 0.5], dtype=np.float32)
    assert mmr_order(vectors, novelty, trade_off=0.5) == [0, 2, 1], "the near copy of a goes last"
    assert mmr_order(vectors, novelty, trade_off=1.0)[:2] == [0, 1], "novelty only ignores overlap"


def test_review_priority_puts_the_largest_gap_first_then_uncertainty(store: object) -> None:
    from generator.schema import Gap
    from generator.store import Store
    from tests.factories import candidate

    assert isinstance(store, Store)
    store.save_gaps(
        "run-1",
        [
            Gap(id="big", run_id="run-1", label="b", target=50),
            Gap(id="small", run_id="run-1", label="s", target=5),
        ],
        "{}",
    )
    flagged = candidate(1, gap="small", status=CandidateStatus.GENERATED).model_copy(
        update={
            "payload": sft(
                "Say hi.", "As an AI language model, I cannot do that, sorry about that."
            )
        }
    )
    flagged = flagged.model_copy(update={"id": flagged.compute_id()})
    items = [
        candidate(2, gap="small", status=CandidateStatus.GENERATED),
        flagged,
        candidate(3, gap="big", status=CandidateStatus.GENERATED),
    ]
    store.put_many(items)
    FilterPipeline.build(FilterSettings()).score_and_route(store, [i.id for i in items])
    order, held = [], []
    while (lease := store.claim("alice", "run-1", holding=held)) is not None:
        held.append(lease.item_id)  # held, not decided: a claim would hand it back first
        order.append(lease.item.gap_id + ("+flag" if lease.item.id == flagged.id else ""))
    assert order == ["big", "small+flag", "small"]


def test_a_run_with_the_judge_on_is_refused_by_a_worker_with_no_llm_saying_how_to_start_one() -> (
    None
):
    with pytest.raises(ConfigError, match="started with --backend or --model"):
        FilterPipeline.build(FilterSettings(judge=True), judge=None)
