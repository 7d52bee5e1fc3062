"""Semantic duplicates through the vector index, and language identification, on real text; and
what the duplicate and contamination filters leave as evidence: other items' ids and scores, never
their text (evidence is exported with the item, in provenance.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generator.dataset_reader import load_examples
from generator.embeddings import Embedder
from generator.export.writer import ExportOptions, export
from generator.filters.base import full_text
from generator.filters.contamination import ContaminationFilter
from generator.filters.duplicates import ExactDuplicateFilter, NearDuplicateFilter
from generator.filters.language import LanguageFilter
from generator.filters.semantic import SemanticDuplicateFilter
from generator.filters.vectors import VectorIndex
from generator.schema import Candidate, CandidateKind, CandidateStatus, SFTExample
from generator.screening import screen_all
from generator.store import Store
from tests.conftest import REAL_DATA
from tests.factories import sft, wrap


@pytest.fixture(scope="module")
def seed_vectors(embedder: Embedder) -> np.ndarray:
    texts = [
        e.prompt_text() for e in load_examples(REAL_DATA / "self-instruct" / "seed_tasks.jsonl")
    ]
    return embedder.embed(texts)


def test_the_ann_index_finds_what_exact_search_finds(seed_vectors: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    # Real vectors, each copied with small noise: a corpus shaped like real data, 3,500 strong.
    copies = seed_vectors[rng.integers(0, len(seed_vectors), 3500)]
    corpus = copies + rng.normal(0, 0.02, copies.shape).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    exact, approximate = VectorIndex(corpus.shape[1]), VectorIndex(corpus.shape[1], ann_above=100)
    exact.add(corpus)
    approximate.add(corpus[:2000])
    approximate.add(corpus[2000:])  # incremental adds keep their keys
    assert approximate.approximate and not exact.approximate and len(approximate) == 3500
    queries = corpus[rng.integers(0, len(corpus), 300)] + rng.normal(
        0, 0.01, (300, corpus.shape[1])
    ).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)  # the index works on unit vectors
    exact_keys, exact_sims = exact.search(queries, 3)
    ann_keys, ann_sims = approximate.search(queries, 3)
    recall = float((ann_keys[:, 0] == exact_keys[:, 0]).mean())
    assert recall >= 0.95
    same = ann_keys[:, 0] == exact_keys[:, 0]  # where HNSW found the same neighbour
    assert np.allclose(ann_sims[same, 0], exact_sims[same, 0], atol=1e-4)
    assert (exact_sims[:, 0] >= exact_sims[:, 1]).all()


@pytest.mark.slow
def test_paraphrases_of_existing_examples_are_semantic_duplicates(embedder: Embedder) -> None:
    examples = load_examples(REAL_DATA / "self-instruct" / "seed_tasks.jsonl")
    existing = [
        (f"seed:{i}", "\n".join(m.content for m in e.turns())) for i, e in enumerate(examples)
    ]
    original = examples[0]
    assert isinstance(original, SFTExample)
    same = sft(original.prompt_text(), original.response_text())
    distinct = sft(
        "Translate 'good morning' into Japanese.", "Ohayou gozaimasu (おはようございます)."
    )
    semantic = SemanticDuplicateFilter(embedder, existing)
    scores = semantic.score([wrap(same, 0), wrap(distinct, 1), wrap(distinct, 2)])
    assert not scores[0].passed and scores[0].evidence["nearest"][0]["id"] == "seed:0"
    assert scores[1].passed and 0 < scores[1].evidence["novelty"] <= 1
    assert len(scores[1].evidence["nearest"]) == 3, "the nearest neighbours are kept for review"
    assert not scores[2].passed and scores[2].evidence["nearest"][0]["id"] == "c1", (
        "within the batch"
    )


@pytest.mark.parametrize(
    ("answer", "passed"),
    [
        ("Paris is the capital of France and its largest city.", True),
        ("Paris est la capitale de la France et sa plus grande ville.", False),
        ("Paris ist die Hauptstadt Frankreichs und ihre größte Stadt.", False),
        ("Oui.", True),  # too short to tell: not judged
    ],
)
def test_answers_in_an_unexpected_language_are_flagged(answer: str, passed: bool) -> None:
    [score] = LanguageFilter(["en"]).score([wrap(sft("What is the capital of France?", answer))])
    assert score.passed is passed


def test_an_index_saved_to_disk_comes_back(tmp_path: Path, seed_vectors: np.ndarray) -> None:
    index = VectorIndex(seed_vectors.shape[1])
    index.add(seed_vectors)
    index.save(tmp_path / "index.usearch")
    loaded = VectorIndex.load(tmp_path / "index.usearch", seed_vectors.shape[1])
    keys, sims = loaded.search(seed_vectors[:10], 1)
    assert list(keys[:, 0]) == list(range(10)) and (sims[:, 0] > 0.999).all()


@pytest.mark.slow
def test_near_duplicates_in_the_t0_corpus_against_labelled_pairs(embedder: Embedder) -> None:
    """Pairs of T0 prompts labelled by an independent measure (character-level difflib ratio:
    >= 0.9 duplicate, < 0.5 distinct): consecutive rows share a template, rows 1,500 apart do not.
    The floors below; bench/duplicate_recall.py measures the figures the README quotes
    (embeddings are for paraphrases; templated near-duplicates are the shingles' job)."""
    import difflib

    from generator.dataset_reader import convert, iter_records
    from generator.filters.duplicates import NearDuplicateFilter

    rows: list[str] = []
    for _, record in iter_records(REAL_DATA / "t0" / "t0_train_first_2000.jsonl.gz"):
        rows.append(convert(record, "prompt_completion").prompt_text())
        if len(rows) == 1800:
            break
    pairs = [(rows[i], rows[i + 1]) for i in range(0, 600, 2)] + [
        (rows[i], rows[i + 1500]) for i in range(150)
    ]
    labelled = []
    for a, b in pairs:
        ratio = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
        if ratio >= 0.9 or ratio < 0.5:
            labelled.append((a, b, ratio >= 0.9))
    assert sum(d for *_, d in labelled) > 100 and sum(not d for *_, d in labelled) > 100

    def precision_recall(predicted: list[bool]) -> tuple[float, float]:
        truth = [d for *_, d in labelled]
        tp = sum(p and t for p, t in zip(predicted, truth, strict=True))
        fp = sum(p and not t for p, t in zip(predicted, truth, strict=True))
        fn = sum(t and not p for p, t in zip(predicted, truth, strict=True))
        return tp / max(tp + fp, 1), tp / max(tp + fn, 1)

    near = [
        not NearDuplicateFilter([("a", a)]).score([wrap(sft(b, "x"), 1)])[0].passed
        for a, b, _ in labelled
    ]
    precision, recall = precision_recall(near)
    assert precision >= 0.97 and recall >= 0.9, (precision, recall)
    left = embedder.embed([a for a, _, _ in labelled])
    right = embedder.embed([b for _, b, _ in labelled])
    semantic = list((left * right).sum(axis=1) >= 0.92)
    precision, recall = precision_recall(semantic)
    assert precision >= 0.97 and recall >= 0.5, (precision, recall)


# -- evidence names other items by id and score, not by their text ------------------------------

OTHER_ANSWER = "Feed the starter twice a day, then bake the loaf in a covered pot at 250 C."
FLAGGED_ANSWER = "Use a mature levain and give the dough a long cold proof."


def _item(question: str, answer: str) -> Candidate:
    return Candidate(
        kind=CandidateKind.SFT,
        payload=sft(question, answer),
        run_id="run-1",
        gap_id="gap-a",
        status=CandidateStatus.PENDING,
    )


@pytest.mark.slow
def test_the_export_names_a_semantic_duplicate_by_id_and_score_not_by_its_text(
    store: Store, embedder: Embedder, model_dir: Path, tmp_path: Path
) -> None:
    other = _item("How do I bake sourdough bread at home?", OTHER_ANSWER)
    flagged = _item("How can I bake sourdough bread at home?", FLAGGED_ANSWER)
    semantic = SemanticDuplicateFilter(embedder, threshold=0.5)
    passed, duplicate = semantic.score([other, flagged])
    assert passed.passed and not duplicate.passed
    flagged = flagged.model_copy(update={"scores": {semantic.name: duplicate}})
    store.put_many(screen_all([other, flagged]))
    while (lease := store.claim("alice", "run-1")) is not None:
        store.decide(lease.item_id, "alice", "accept", lease.version)
    options = ExportOptions(
        runs=["run-1"], kind=CandidateKind.SFT, out=tmp_path / "export", tokenizer=str(model_dir)
    )
    export(store, options, tmp_path / "data")
    lines = (tmp_path / "export" / "provenance.jsonl").read_text().splitlines()
    line = next(text for text in lines if json.loads(text)["item_id"] == flagged.id)
    evidence = json.loads(line)["scores"][semantic.name]["evidence"]
    assert evidence["nearest"] == [
        {"id": other.id, "similarity": pytest.approx(duplicate.value, abs=1e-4)}
    ]
    assert OTHER_ANSWER not in line and "Feed the starter" not in line


def test_exact_and_near_duplicates_are_named_by_id_and_score() -> None:
    first = wrap(sft("Name three primary colours, please.", "Red, yellow and blue."), 0)
    again = wrap(sft("NAME three primary colours,  please.", "Red, yellow and blue."), 1)
    exact = ExactDuplicateFilter().score([first, again])[1]
    near = NearDuplicateFilter(threshold=0.5).score([first, again])[1]
    assert exact.evidence == {"match": "c0"}
    assert near.evidence == {"match": "c0", "jaccard": near.value}


def test_contamination_names_the_eval_item_by_id_without_its_words() -> None:
    eval_text = (
        "Write a function that returns the longest palindromic substring of a given string "
        "using dynamic programming over all pairs of start and end positions"
    )
    leaked = wrap(sft(f"Please solve this: {eval_text}.", "def longest(s): ..."), 0)
    score = ContaminationFilter([("HumanEval/42", eval_text)]).score([leaked])[0]
    assert not score.passed
    assert set(score.evidence) == {"eval_item", "ngrams", "coverage"}
    assert score.evidence["eval_item"] == "HumanEval/42"
    assert "palindromic" not in json.dumps(score.evidence) and "palindromic" in full_text(leaked)
