"""The cascade tier: a static model distilled offline from the packaged MiniLM shortlists, the
full model confirms, and every similarity it reports is the full model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator.cascade import (
    BORDERLINE_BAND,
    CascadeIndex,
    Projection,
    best_rows,
    full_item_vectors,
    top_k,
)
from generator.coverage import EXACT_COVERAGE_ROWS, analyse, load_reference
from generator.dataset_reader import load_examples
from generator.embeddings import Embedder
from generator.filters.stored_run import reference_items
from generator.static_embeddings import STATIC_DIMENSIONS, StaticEmbedder
from tests.conftest import REAL_DATA

T0 = REAL_DATA / "t0" / "t0_train_first_2000.jsonl.gz"
REFERENCE = REAL_DATA / "self-instruct" / "user_oriented_instructions.jsonl"
SEED_TASKS = REAL_DATA / "self-instruct" / "seed_tasks.jsonl"


def test_the_static_model_is_distilled_once_into_the_cache_and_loaded_after(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GAPFILL_STATIC_MODELS")  # this test distils into its own directory
    first = Embedder(cache_dir=tmp_path)
    vectors = first.static.embed(["a cat sat on the mat", "a kitten sat on a rug", "tax law"])
    directory = first.static.directory
    assert directory is not None and directory.parent == tmp_path / "static-models"
    assert (directory / "config.json").is_file()
    assert vectors.shape == (3, STATIC_DIMENSIONS) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]

    stamp = (directory / "config.json").stat().st_mtime_ns
    again = StaticEmbedder(first.static.model_path, first.static.fingerprint, tmp_path)
    np.testing.assert_allclose(again.embed(["a cat sat on the mat"])[0], vectors[0], atol=1e-6)
    assert (directory / "config.json").stat().st_mtime_ns == stamp, "loaded, not distilled"


def test_exact_top_k_is_the_brute_force_order() -> None:
    rng = np.random.default_rng(7)
    corpus = rng.standard_normal((70_000, 8)).astype(np.float32)  # more than one chunk
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    keys, scores = top_k(queries, corpus, 4)
    expected = np.argsort(-(queries @ corpus.T), axis=1)[:, :4]
    np.testing.assert_array_equal(keys, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ corpus.T, expected, 1))
    few_keys, few_scores = top_k(queries, corpus[:2], 4)
    assert (few_keys[:, 2:] == -1).all() and np.isneginf(few_scores[:, 2:]).all()


class _Vectors:
    """Pure-logic stand-in for an embedder (each text's vector given): for best_rows' edge
    cases only; the real search is tested on real data below."""

    def __init__(self, table: dict[str, list[float]], dimension: int) -> None:
        self.table, self.dimension = table, dimension
        self.static = self

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = np.array([self.table.get(t, [0.0] * self.dimension) for t in texts], "f4")
        return rows.reshape(len(texts), self.dimension)


def test_the_covering_search_handles_no_rows_no_queries_one_row_and_duplicates() -> None:
    vectors = _Vectors({"a": [1, 0, 0], "b": [0, 1, 0], "q": [0.8, 0.6, 0]}, 3)
    empty = CascadeIndex(vectors)  # type: ignore[arg-type]
    query = vectors.embed(["q"])
    none = best_rows(empty, query, query, 0.5)
    assert none.keys.tolist() == [-1] and np.isneginf(none.similarities).all()
    assert none.projection is None and none.confirmed == 0

    index = CascadeIndex(vectors)  # type: ignore[arg-type]
    index.add([("a",)])
    assert best_rows(index, query[:0], query[:0], 0.5).keys.shape == (0,)
    one = best_rows(index, query, query, 0.5)
    assert one.keys.tolist() == [0] and one.similarities[0] == pytest.approx(0.8)
    assert one.confirmed == 1

    index.add([("b",), ("a",), ("b",)])  # duplicates: each key confirmed once per search
    found = best_rows(index, query, query, 0.9)
    assert int(found.keys[0]) in (0, 2) and found.similarities[0] == pytest.approx(0.8)
    assert found.confirmed <= 4 and index.confirmed == 1 + found.confirmed


def test_a_projection_maps_static_vectors_into_the_full_space_and_scores_their_cosines() -> None:
    rng = np.random.default_rng(3)
    static = rng.standard_normal((400, 6))
    true_map = rng.standard_normal((6, 9))
    projection = Projection(static, static @ true_map, ridge=1e-6)
    np.testing.assert_allclose(projection.matrix, true_map, atol=1e-3)
    rows = static[:50].astype(np.float32)
    queries = rng.standard_normal((3, 9)).astype(np.float32)
    mapped = rows @ projection.matrix
    expected = queries @ (mapped / np.linalg.norm(mapped, axis=1, keepdims=True)).T
    scores = (projection.queries(queries) @ rows.T) * projection.inverse_norms(rows)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    keys, best = top_k(projection.queries(queries), rows, 2, projection.inverse_norms(rows))
    np.testing.assert_array_equal(keys, np.argsort(-expected, axis=1)[:, :2])
    np.testing.assert_allclose(best, -np.sort(-expected, axis=1)[:, :2], rtol=1e-4, atol=1e-5)
    other = static[50:60].astype(np.float32)  # another matrix: its own norms, not the cached
    mapped_other = other @ projection.matrix
    np.testing.assert_allclose(
        1 / projection.inverse_norms(other), np.linalg.norm(mapped_other, axis=1), rtol=1e-4
    )
    with pytest.raises(ValueError, match="pairs"):
        Projection(static[:0], static[:0] @ true_map)


def test_the_cascade_finds_the_full_models_nearest_row_and_reports_its_cosine(
    embedder: Embedder,
) -> None:
    rows = reference_items(T0)
    corpus, queries = rows[:1500], rows[1500:1700]
    index = CascadeIndex(embedder)
    index.add([item.turns for item in corpus])
    query_vectors = full_item_vectors(embedder, [q.turns for q in queries])
    keys, sims = index.search([q.turns for q in queries], query_vectors, 1)

    full = full_item_vectors(embedder, [item.turns for item in corpus])
    exact = query_vectors @ full.T
    np.testing.assert_allclose(sims[:, 0], exact[np.arange(len(queries)), keys[:, 0]], atol=1e-5)
    best = exact.max(axis=1)
    same = np.isclose(sims[:, 0], best, atol=1e-5)
    assert same.mean() >= 0.97, f"the full model's nearest row found for {same.mean():.1%}"
    assert index.confirmed < len(corpus), "only the shortlisted rows were embedded in full"


def test_coverage_searches_large_sets_in_the_cascade_tier_and_it_never_overstates(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = load_examples(SEED_TASKS) + load_examples(T0)[:300]  # type: ignore[operator]
    reference = load_reference(REFERENCE, "motivation_app")
    full = Embedder(cache_dir=tmp_path, tier="full")
    reports = {
        name: analyse("r", SEED_TASKS, examples, e, reference=reference, cascade_rows=cascade)
        for name, e, cascade in (
            ("full", full, None),  # a full-tier embedder: every row embedded in full
            ("exact", embedder, False),  # a cascade-tier embedder, asked for every row
            ("small", embedder, None),  # a cascade-tier embedder, a set small enough for full
            ("cascade", embedder, True),  # a cascade-tier embedder, asked for the cascade
        )
    }
    sims = {n: [c.similarity for c in r.reference_coverage] for n, r in reports.items()}
    assert len(examples) <= EXACT_COVERAGE_ROWS
    assert sims["exact"] == pytest.approx(sims["full"], abs=1e-4) == sims["small"]
    assert sum(c.covered for c in reports["full"].reference_coverage) > 0
    gaps = {n: [(g.label, len(g.examples)) for g in r.gaps] for n, r in reports.items()}
    assert gaps["exact"] == gaps["full"]
    exact = ("full", "exact", "small")
    assert not any(c.borderline for n in exact for c in reports[n].reference_coverage)
    # the cascade confirms a shortlist: what it reports is a similarity the full model gives
    # one row, never more than the best row's
    for low, high in zip(sims["cascade"], sims["full"], strict=True):
        assert low <= high + 1e-4
    for entry in reports["cascade"].reference_coverage:
        edges = (0.5 - BORDERLINE_BAND, 0.5)  # similarities are rounded to 4 places
        if all(abs(entry.similarity - edge) > 1e-3 for edge in edges):
            assert entry.borderline == (0.5 - BORDERLINE_BAND <= entry.similarity < 0.5), entry
    assert any(entry.borderline for entry in reports["cascade"].reference_coverage)

    # with a taxonomy every row is embedded in full anyway: the reference prompts are exact
    from generator.coverage import Taxonomy

    cells = Taxonomy.model_validate({"cells": [{"id": "any", "description": "Any request."}]})
    both = analyse(
        "r", SEED_TASKS, examples, embedder, taxonomy=cells, reference=reference, cascade_rows=True
    )
    assert [c.similarity for c in both.reference_coverage] == pytest.approx(sims["full"], abs=1e-4)
    assert not any(c.borderline for c in both.reference_coverage)

    # past EXACT_COVERAGE_ROWS rows, the default is the cascade
    monkeypatch.setattr("generator.coverage.EXACT_COVERAGE_ROWS", len(examples) - 1)
    large = analyse("r", SEED_TASKS, examples, embedder, reference=reference)
    assert [c.similarity for c in large.reference_coverage] == sims["cascade"]
    labels = {n: [c.covered for c in r.reference_coverage] for n, r in reports.items()}
    agree = np.mean(np.equal(labels["cascade"], labels["full"]))
    assert agree >= 0.97, f"covered/uncovered labels agree on {agree:.1%}"
    # gaps are topics of the reference set: the prompts both tiers leave uncovered are grouped
    # into gaps the same way by both
    topic = {
        n: {c.line: c.gap_id for c in r.reference_coverage if c.gap_id} for n, r in reports.items()
    }
    both = topic["full"].keys() & topic["cascade"].keys()
    assert len(both) > 100
    groups = {
        n: {frozenset(line for line in both if topic[n][line] == g) for g in set(topic[n].values())}
        - {frozenset()}
        for n in ("full", "cascade")
    }
    assert groups["full"] == groups["cascade"]


@pytest.mark.slow  # the exact answer embeds 2,175 rows in full
def test_the_covering_search_confirms_a_fraction_of_the_rows_and_reports_full_cosines(
    embedder: Embedder,
) -> None:
    seeds = [(example.prompt_text(),) for example in load_examples(SEED_TASKS)]
    rows = seeds + [item.turns[:1] for item in reference_items(T0)]  # prompts, as coverage reads
    prompts = [p.text for p in load_reference(REFERENCE)]
    index = CascadeIndex(embedder)
    index.add(rows)
    queries = embedder.embed(prompts)
    search = best_rows(index, index.static_of([(p,) for p in prompts]), queries, 0.5)
    sims, keys, projection = search.similarities, search.keys, search.projection
    assert projection is not None
    exact = queries @ full_item_vectors(embedder, rows).T
    np.testing.assert_allclose(sims, exact[np.arange(len(prompts)), keys], atol=1e-5)
    covered = exact.max(axis=1) >= 0.5
    assert covered.sum() >= 5, "the data has covered prompts to find"
    found = sims >= 0.5
    assert found.sum() >= 0.9 * covered.sum(), f"{found.sum()} of {covered.sum()} covered found"
    assert index.confirmed == search.confirmed < len(rows) / 2
    assert projection.matrix.shape == (embedder.static.dimension, embedder.dimension)


@pytest.mark.parametrize("tier", ["cascade", "full"])
def test_both_tiers_catch_paraphrased_eval_items_and_pass_clean_tasks(
    embedder: Embedder, tmp_path: Path, tier: str
) -> None:
    from generator.filters.contamination import ContaminationFilter, load_eval_items
    from tests.factories import sft, wrap
    from tests.test_filters import HUMANEVAL, PARAPHRASES

    chosen = embedder if tier == "cascade" else Embedder(cache_dir=tmp_path, tier="full")
    check = ContaminationFilter(load_eval_items(HUMANEVAL), embedder=chosen)
    assert (check.cascade is not None) == (tier == "cascade")
    planted = [
        wrap(sft(text, "Here is a solution."), i) for i, text in enumerate(PARAPHRASES.values())
    ]
    scores = check.score(planted)
    assert [s.evidence.get("eval_item") for s in scores] == list(PARAPHRASES)
    clean = [wrap(e, 100 + i) for i, e in enumerate(load_examples(SEED_TASKS)[:40])]  # type: ignore[arg-type]
    assert all(s.passed for s in check.score(clean))
