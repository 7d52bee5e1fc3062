"""The existing data's indexes (built once, cached on disk), off-topic, diversity ranking, the LLM
judge, and a stored run's pipeline: its existing data, eval sets and kept items."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from generator.backends.base import ChatRequest, ChatResult, Completion
from generator.embeddings import Embedder
from generator.filters.diversity import DiversityFilter
from generator.filters.duplicates import ExactDuplicateFilter, NearDuplicateFilter
from generator.filters.judge import JudgeFilter, parse_json_object
from generator.filters.reference import (
    IndexOptions,
    ReferenceIndexes,
    ReferenceItem,
    item_vectors,
)
from generator.filters.semantic import SemanticDuplicateFilter
from generator.filters.settings import FilterSettings
from generator.filters.stored_run import RunPipelines, reference_items
from generator.filters.topic import OffTopicFilter
from generator.schema import (
    Candidate,
    CandidateStatus,
    Gap,
    RunConfig,
    SFTExample,
)
from generator.store import Store
from tests.conftest import REAL_DATA
from tests.factories import pair, sft, wrap

SEED_TASKS = REAL_DATA / "self-instruct" / "seed_tasks.jsonl"
HUMANEVAL = REAL_DATA / "humaneval" / "HumanEval.jsonl.gz"


@pytest.fixture(scope="module")
def seed_items() -> list[ReferenceItem]:
    return reference_items(SEED_TASKS)


def test_the_existing_data_is_indexed_once_then_loaded_from_disk(
    tmp_path: Path, seed_items: list[ReferenceItem], embedder: Embedder
) -> None:
    options = IndexOptions()
    built = ReferenceIndexes.cached(seed_items, options, embedder, tmp_path)
    assert not built.loaded_from_cache and built.size == 175
    computed = embedder.computed
    loaded = ReferenceIndexes.cached(seed_items, options, embedder, tmp_path)
    assert loaded.loaded_from_cache and embedder.computed == computed, "nothing re-embedded"
    original = seed_items[7]
    copy = wrap(sft(original.turns[0], original.turns[1]))
    for indexes in (built, loaded):
        assert not ExactDuplicateFilter(shared=indexes.exact).score([copy])[0].passed
        assert not NearDuplicateFilter(shared=indexes.shingles).score([copy])[0].passed
        [semantic] = SemanticDuplicateFilter(embedder, shared=indexes.vectors).score([copy])
        assert not semantic.passed and semantic.evidence["nearest"][0]["id"] == original.id
    other = ReferenceIndexes.cached(seed_items[:-1], options, embedder, tmp_path)
    assert not other.loaded_from_cache, "different items, different cache entry"


def test_a_damaged_index_cache_is_rebuilt_not_trusted(
    tmp_path: Path, seed_items: list[ReferenceItem], embedder: Embedder
) -> None:
    options = IndexOptions(semantic=False)
    ReferenceIndexes.cached(seed_items, options, None, tmp_path)
    [directory] = [p for p in tmp_path.iterdir() if p.is_dir()]
    (directory / "minhashes.npy").write_bytes(b"garbage")
    again = ReferenceIndexes.cached(seed_items, options, None, tmp_path)
    assert not again.loaded_from_cache and again.size == 175


def test_a_shared_reference_is_never_changed_by_scoring(
    seed_items: list[ReferenceItem], embedder: Embedder
) -> None:
    shared = ReferenceIndexes.build(seed_items, IndexOptions(), embedder)
    fresh = wrap(sft("Name three rivers in Peru.", "The Amazon, the Ucayali and the Marañón."))
    for _ in range(2):  # a second job sees the same reference, not the first job's batch
        [score] = ExactDuplicateFilter(shared=shared.exact).score([fresh])
        assert score.passed
    assert shared.vectors is not None and len(shared.vectors) == 175


def test_answers_far_from_their_gap_are_flagged_off_topic(embedder: Embedder) -> None:
    """User-oriented instructions grouped by app: an answer is checked against its own app's
    centroid (leave-one-out) and against a foreign app's (measured: 9% vs 71% below 0.15)."""
    rows = [
        json.loads(line)
        for line in (REAL_DATA / "self-instruct" / "user_oriented_instructions.jsonl").open()
    ]
    answers = [
        json.loads(line)
        for line in (REAL_DATA / "self-instruct" / "predictions" / "text-davinci-003.jsonl").open()
    ]
    prompts = [r["instruction"] for r in rows]
    vectors = embedder.embed(prompts)
    groups: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        groups[row["motivation_app"]].append(index)
    apps = sorted(a for a, members in groups.items() if len(members) >= 4)
    own, foreign = [], []
    for number, app in enumerate(apps):
        gap = f"app-{number}"
        members = groups[app]
        held_out, rest = members[0], members[1:]
        centroid = vectors[rest].mean(axis=0)
        centroid /= np.linalg.norm(centroid)
        candidate = wrap(
            sft(answers[held_out]["prompt"], answers[held_out]["response"] or "-"), gap=gap
        )
        stranger_index = groups[apps[(number + len(apps) // 2) % len(apps)]][0]
        stranger = wrap(
            sft(answers[stranger_index]["prompt"], answers[stranger_index]["response"] or "-"),
            1,
            gap=gap,
        )
        own_score, foreign_score = OffTopicFilter(embedder, {gap: centroid.tolist()}).score(
            [candidate, stranger]
        )
        own.append(own_score.passed)
        foreign.append(not foreign_score.passed)
        assert own_score.evidence["gap"] == gap
    assert len(apps) >= 20
    assert np.mean(own) >= 0.8, "answers to their own gap's prompts are on topic"
    assert np.mean(foreign) >= 0.5, "answers to another gap's prompts are mostly caught"


def test_diversity_ranks_a_near_repeat_behind_something_new(embedder: Embedder) -> None:
    batch = [
        wrap(sft("How do I boil an egg?", "Put it in boiling water for nine minutes."), 0),
        wrap(sft("How do I boil an egg?", "Put it in boiling water for about nine minutes."), 1),
        wrap(sft("What is a prime number?", "A number with exactly two divisors."), 2),
    ]
    ranks = [s.evidence["mmr_rank"] for s in DiversityFilter(embedder).score(batch)]
    assert ranks[1] == 2, "the near repeat of the first item goes last"
    assert all(s.passed for s in DiversityFilter(embedder).score(batch)), "never rejects"


class ScriptedJudge:
    """A stand-in backend for the verdict logic only (the real model is tested below)."""

    name, model = "scripted", "scripted"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.requests: list[ChatRequest] = []

    def load(self) -> None: ...

    def close(self) -> None: ...

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        self.requests += requests
        return [
            ChatResult(
                request_id=r.id,
                completions=[Completion(text=self.answers[r.id], finish_reason="stop", tokens=5)],
                prompt_tokens=10,
                seconds=0.0,
            )
            for r in requests
        ]


def test_pairwise_judging_asks_both_orders_and_reports_position_bias() -> None:
    judge = ScriptedJudge(
        {
            "0:0": '{"better": "A", "reason": "x"}',  # chosen shown first, wins
            "0:1": '{"better": "B", "reason": "x"}',  # chosen shown second, wins
            "1:0": 'Sure! {"better": "A"}',  # always the first position: bias
            "1:1": '{"better": "A"}',
            "2:0": '{"better": "B"}',  # rejected wins both orders
            "2:1": '{"better": "A"}',
        }
    )
    scores = JudgeFilter(judge).score(  # type: ignore[arg-type]
        [wrap(pair("q", "good", "bad"), i) for i in range(3)]
    )
    assert [s.value for s in scores] == [1.0, 0.5, 0.0]
    assert [s.passed for s in scores] == [True, True, False]
    assert scores[1].evidence["position_bias"] and not scores[0].evidence["position_bias"]
    shown = [r.messages[0].content for r in judge.requests[:2]]
    assert shown[0].index("good") < shown[0].index("bad") and shown[1].index("bad") < shown[
        1
    ].index("good")
    assert all(r.json_schema is not None for r in judge.requests), "structured output is asked"


def test_a_judge_output_that_is_not_the_schema_gives_no_verdict() -> None:
    judge = ScriptedJudge(
        {
            "0:0": "I think it is great",
            "1:0": '{"helpfulness": 2, "correctness": 1, "safety": 5, "reason": "wrong"}',
        }
    )
    unusable, low = JudgeFilter(judge).score(  # type: ignore[arg-type]
        [wrap(sft("q", "a"), 0), wrap(sft("q", "a"), 1)]
    )
    assert unusable.passed and "no usable verdict" in unusable.reason
    assert not low.passed and low.value == pytest.approx(8 / 3, abs=1e-3)
    assert parse_json_object('```json\n{"a": 1}\n```') == {"a": 1}


def test_the_real_bundled_model_judges_through_the_local_backend(local_backend: object) -> None:
    items = [
        wrap(sft("What is the capital of France?", "The capital of France is Paris."), 0),
        wrap(pair("What is 2 + 2?", "2 + 2 = 4.", "2 + 2 = 5."), 1),
    ]
    scores = JudgeFilter(local_backend, max_tokens=48).score(items)  # type: ignore[arg-type]
    assert len(scores) == 2 and all(s.filter == "judge" and s.reason for s in scores)
    assert scores[0].evidence["judge_model"] and 0.0 <= scores[1].value <= 1.0


def test_a_stored_run_scores_against_its_existing_data_eval_sets_and_kept_items(
    store: Store, embedder: Embedder, tmp_path: Path, seed_items: list[ReferenceItem]
) -> None:
    from tests.factories import candidate

    store.save_run(
        RunConfig(run_id="run-1", existing=[str(SEED_TASKS)], eval_sets=[str(HUMANEVAL)])
    )
    store.save_gaps("run-1", [Gap(id="g", run_id="run-1", label="g", target=10)], "{}")
    kept = candidate(1, gap="g", status=CandidateStatus.PENDING)
    store.put(kept)
    humaneval_prompt = json.loads(__import__("gzip").open(HUMANEVAL, "rt").readline())["prompt"]
    original = seed_items[3]

    def generated(index: int, example: SFTExample) -> Candidate:
        item = candidate(index, gap="g", status=CandidateStatus.GENERATED)
        item = item.model_copy(update={"payload": example})
        return item.model_copy(update={"id": item.compute_id()})

    assert kept.payload is not None and isinstance(kept.payload, SFTExample)
    batch = [
        generated(10, sft(original.turns[0], original.turns[1])),
        generated(11, sft(f"Please solve this:\n{humaneval_prompt}", "def f(): pass")),
        generated(12, sft(kept.payload.prompt_text().upper(), kept.payload.response_text())),
        generated(
            13, sft("Name three rivers in Peru.", "The Amazon, the Ucayali and the Marañón.")
        ),
    ]
    store.put_many(batch)
    pipelines = RunPipelines(embedder, tmp_path / "indexes")
    ids = [c.id for c in batch]
    routed = pipelines.for_run(store, "run-1", ids).score_and_route(store, ids)
    assert (routed.reviewed, routed.auto_rejected) == (1, 3)
    after = {c.id: c for c in store.get_many(ids)}
    assert not after[batch[0].id].scores["exact_duplicate"].passed
    assert after[batch[0].id].scores["exact_duplicate"].evidence["match"] == original.id
    assert after[batch[1].id].scores["contamination"].evidence["eval_item"] == "HumanEval/0"
    assert after[batch[2].id].scores["exact_duplicate"].evidence["match"] == kept.id
    assert after[batch[3].id].status is CandidateStatus.PENDING
    assert "diversity" in after[batch[3].id].scores
    assert any((tmp_path / "indexes").iterdir()), "the existing data's indexes are on disk"


def test_turn_vectors_are_averaged_into_one_unit_vector(embedder: Embedder) -> None:
    vectors = item_vectors(embedder, [("a cat", "a dog"), ("a cat",), ()])
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0) and not vectors[2].any()
    assert np.allclose(vectors[1], embedder.embed(["a cat"])[0], atol=1e-6)


def test_filter_settings_reach_the_run_config() -> None:
    config = RunConfig(run_id="r", filters=FilterSettings(off_topic_similarity=0.3))
    assert (
        RunConfig.model_validate_json(config.model_dump_json()).filters.off_topic_similarity == 0.3
    )
