"""An existing dataset indexed in chunks by workers (`gapfill index`), merged into the index a
one-process build makes; and what the merge refuses from an untrusted store."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from rq.job import Job

from generator.embeddings import Embedder
from generator.errors import StoreError
from generator.filters.reference import IndexOptions, ReferenceIndexes, ReferenceItem
from generator.filters.settings import FilterSettings
from generator.filters.stored_run import existing_indexes, reference_items
from generator.index_chunks import (
    compute,
    compute_and_store,
    merge,
    missing,
    publish,
    result_key,
)
from generator.queueing import SERIALIZER
from generator.store import Store
from tests.conftest import REAL_DATA
from tests.factories import cli_env, run_cli

T0 = REAL_DATA / "t0" / "t0_train_first_2000.jsonl.gz"


@pytest.fixture
def server_url(valkey_url: str) -> str:
    """Only the session's own Valkey: RQ writes global keys a key prefix cannot cover."""
    return valkey_url


@pytest.fixture(scope="module")
def rows() -> list[ReferenceItem]:
    return reference_items(T0)[:600]


def cascade(embedder: Embedder) -> IndexOptions:
    assert embedder.tier == "cascade"  # the default tier
    return IndexOptions(tier="cascade")


def test_the_chunks_merge_into_the_index_one_process_builds(
    store: Store, embedder: Embedder, rows: list[ReferenceItem]
) -> None:
    options = cascade(embedder)
    plan = publish(store, rows, chunk_rows=128)
    assert [count for _, count in plan.chunks] == [128, 128, 128, 128, 88]
    assert len(missing(store, plan, embedder, options)) == 5
    for items_sha, _ in plan.chunks:
        compute_and_store(store, items_sha, embedder, options)
    assert missing(store, plan, embedder, options) == []

    merged = merge(store, rows, options, embedder)
    built = ReferenceIndexes.build(rows, options, embedder)
    assert merged is not None and merged.merged and not built.merged
    assert merged.size == built.size == 600
    assert merged.exact.digests == built.exact.digests
    assert merged.shingles.texts == built.shingles.texts
    for item in rows[::37]:  # the same near-duplicate answers, from the same LSH buckets
        assert merged.shingles.match(item.text, 0.9) == built.shingles.match(item.text, 0.9)
    assert merged.vectors is not None and built.vectors is not None
    assert merged.vectors.ids == built.vectors.ids
    assert merged.vectors.cascade is not None and built.vectors.cascade is not None
    np.testing.assert_allclose(
        merged.vectors.cascade.static_vectors, built.vectors.cascade.static_vectors, atol=1e-6
    )


def test_a_scoring_host_merges_the_workers_chunks_instead_of_building(
    store: Store, embedder: Embedder, tmp_path: Path
) -> None:
    settings = FilterSettings()
    items = reference_items(T0)
    options = IndexOptions(tier=embedder.tier)
    plan = publish(store, items[:300], chunk_rows=100)  # another dataset: a part of this one
    for items_sha, _ in plan.chunks:
        compute_and_store(store, items_sha, embedder, options)
    first = existing_indexes([T0], settings, embedder, tmp_path / "one", store)
    assert first is not None and not first.merged and first.size == 2000  # built here

    plan = publish(store, items, chunk_rows=500)
    for items_sha, _ in plan.chunks:
        compute_and_store(store, items_sha, embedder, options)
    second = existing_indexes([T0], settings, embedder, tmp_path / "two", store)
    assert second is not None and second.merged and second.size == 2000
    assert second.exact.digests == first.exact.digests


def test_a_result_that_does_not_match_its_chunk_is_refused(
    store: Store, embedder: Embedder, rows: list[ReferenceItem]
) -> None:
    options = cascade(embedder)
    items = rows[:50]
    plan = publish(store, items, chunk_rows=50)
    [(items_sha, _)] = plan.chunks
    key = result_key(items_sha, embedder, options)
    wrong = compute(items[:49], embedder, options)  # one row short
    store.redis.set(store.keys.index_chunk(key), store.put_blob(wrong))
    with pytest.raises(StoreError, match="does not match its chunk"):
        merge(store, items, options, embedder)

    pickled = io.BytesIO()
    np.save(pickled, np.array([object()], dtype=object), allow_pickle=True)
    store.redis.set(store.keys.index_chunk(key), store.put_blob(pickled.getvalue()))
    with pytest.raises(StoreError, match="unreadable"):
        merge(store, items, options, embedder)


def test_a_plan_whose_chunks_hold_other_rows_is_refused(
    store: Store, embedder: Embedder, rows: list[ReferenceItem]
) -> None:
    options = cascade(embedder)
    publish(store, rows[:40], chunk_rows=40)
    other = publish(store, rows[40:80], chunk_rows=40)
    for items_sha, _ in other.chunks:
        compute_and_store(store, items_sha, embedder, options)
    # the first dataset's plan now names the second dataset's chunk
    plan_key = store.keys.index(publish(store, rows[:40], chunk_rows=40).digest)
    store.redis.set(plan_key, f'{{"rows": 40, "chunks": [["{other.chunks[0][0]}", 40]]}}')
    with pytest.raises(StoreError, match="does not hold the dataset's rows"):
        merge(store, rows[:40], options, embedder)
    store.redis.set(plan_key, '{"rows": 40, "chunks": [["x", 39]]}')
    with pytest.raises(StoreError, match="do not add up"):
        merge(store, rows[:40], options, embedder)


def test_nothing_is_merged_before_every_chunk_is_computed(
    store: Store, embedder: Embedder, rows: list[ReferenceItem]
) -> None:
    options = cascade(embedder)
    plan = publish(store, rows[:100], chunk_rows=50)
    compute_and_store(store, plan.chunks[0][0], embedder, options)
    assert merge(store, rows[:100], options, embedder) is None


@pytest.fixture
def workers(store: Store, server_url: str) -> Iterator[list[subprocess.Popen[str]]]:
    env = cli_env(store, server_url, GAPFILL_WORKER_HEARTBEAT_S="1", OMP_NUM_THREADS="1")
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--queues", "score", "--name", f"w{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    yield started
    for process in started:
        process.kill()
        process.wait(timeout=30)


@pytest.mark.slow
def test_gapfill_index_spreads_the_chunks_over_two_workers(
    store: Store, server_url: str, workers: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    env = cli_env(store, server_url)
    result = run_cli(env, "index", str(T0), "--chunk-rows", "200", timeout=900)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "2,000 rows in 10 chunks of up to 200: 0 already computed, 10 jobs enqueued" in (
        result.stdout
    )
    assert "indexed 2,000 rows in" in result.stdout
    connection = redis.Redis.from_url(server_url)
    keys = connection.keys(f"rq:job:{store.keys.prefix}-index-*")
    jobs = Job.fetch_many(
        [key.decode().removeprefix("rq:job:") for key in keys],
        connection=connection,
        serializer=SERIALIZER,
    )
    assert len(jobs) == 10
    assert {job.worker_name for job in jobs if job is not None} == {"w0", "w1"}

    again = run_cli(env, "index", str(T0), "--chunk-rows", "200", timeout=300)
    assert "10 already computed, 0 jobs enqueued" in again.stdout
    assert "already indexed on this host" in again.stdout

    # another host (its own data directory): its scoring merges what the workers computed
    other = Embedder(cache_dir=tmp_path / "other-cache")
    indexes = existing_indexes([T0], FilterSettings(), other, tmp_path / "other-indexes", store)
    assert indexes is not None and indexes.merged and indexes.size == 2000


def test_gapfill_index_of_a_missing_file_is_one_line_and_enqueues_nothing(
    store: Store, server_url: str, tmp_path: Path
) -> None:
    result = run_cli(cli_env(store, server_url), "index", str(tmp_path / "nope.jsonl"))
    assert result.returncode != 0
    assert "nope.jsonl" in result.stderr and "Traceback" not in result.stderr
    assert not redis.Redis.from_url(server_url).keys(f"{store.keys.prefix}:index:*")
