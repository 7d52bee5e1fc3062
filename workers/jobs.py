"""RQ job functions. Module-level, taking ids; outputs go to the store, keyed by content hash.

A job's return value is a small summary for `rq info`-style inspection, never the data itself.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

from pydantic import TypeAdapter
from rq import get_current_job

from generator.config import QueueSettings
from generator.errors import BackendDeadError
from generator.export.checks import payload_conversations
from generator.filters.reference import IndexOptions
from generator.generation import run_batch
from generator.index_chunks import compute_and_store
from generator.prescreening import retrain
from generator.schema import EmbeddingSpec, PreScreenSettings
from workers.registry import context

logger = logging.getLogger(__name__)


def _connection() -> Any:
    job = get_current_job()
    if job is None:
        raise RuntimeError("gapfill job functions run inside an RQ job")
    return job.connection


def generate_batch(
    prefix: str, run_id: str, task_ids: list[str], queue_settings: dict[str, Any]
) -> dict[str, Any]:
    """Generate for a batch of tasks, store the outputs, and enqueue what follows from them:
    response tasks spawned by instruction tasks, and scoring for the new candidates."""
    ctx = context()
    connection = _connection()
    store = ctx.store(prefix, connection)
    try:
        outcome = run_batch(store, ctx.require_backend(), task_ids, worker_id=ctx.worker_id)
    except BackendDeadError as exc:
        ctx.fatal = str(exc)  # the worker stops; RQ retries this job on a healthy worker
        raise
    work = ctx.queue(prefix, connection, QueueSettings.model_validate(queue_settings))
    if outcome.new_task_ids:
        work.enqueue_tasks(run_id, outcome.new_task_ids)
    if outcome.candidate_ids:
        work.enqueue_scoring(run_id, outcome.candidate_ids)
    return outcome.summary()


def score_batch(prefix: str, run_id: str, item_ids: list[str]) -> dict[str, Any]:
    """Run the filter pipeline on stored candidates and route them (review or auto-reject)."""
    ctx = context()
    store = ctx.store(prefix, _connection())
    pipeline = ctx.pipelines().for_run(store, run_id, item_ids)
    routed = pipeline.score_and_route(store, item_ids)
    lengths = ctx.length_check(store) if routed.to_review else None
    counted = 0
    if lengths is not None:
        # Counted now, once, so an export of these items need not tokenise them again.
        counted = lengths.prime(
            [
                conversation
                for candidate in routed.to_review
                if candidate.payload is not None
                for conversation in payload_conversations(candidate.payload.model_dump())
            ]
        )
    return {
        "run": run_id,
        "reviewed": routed.reviewed,
        "auto_rejected": routed.auto_rejected,
        "token_counts_cached": counted,
    }


def prescreen_run(prefix: str, run_id: str) -> dict[str, Any]:
    """Retrain the run's pre-screen from its human decisions, reorder its queue and, where its
    campaign allows and the model has earned it, decide what it is confident of."""
    ctx = context()
    store = ctx.store(prefix, _connection())
    config = store.get_run(run_id)
    settings = (config.review.prescreen if config else None) or PreScreenSettings()
    status = retrain(store, run_id, ctx.pipelines().embedder, settings)
    return {
        "run": run_id,
        "trained_on": status.trained_on,
        "reordered": status.reordered,
        "auto_decided": status.auto_decided,
        "message": status.message,
    }


def index_chunk(
    prefix: str, items_sha: str, options: dict[str, Any], embedding: dict[str, Any] | None
) -> dict[str, Any]:
    """Compute one chunk of a dataset being indexed (``gapfill index``): its rows' MinHash
    signatures and vectors, stored by what they were computed from. The options and the
    embedding spec come from the store: validated here, and the embedding model must be one of
    this worker's own (``run_inputs.embedder_for``), never a path the job names."""
    ctx = context()
    store = ctx.store(prefix, _connection())
    if set(options) != {f.name for f in fields(IndexOptions)}:
        raise ValueError(
            f"index options must name exactly {[f.name for f in fields(IndexOptions)]}"
        )
    index_options = TypeAdapter(IndexOptions).validate_python(options)
    spec = EmbeddingSpec.model_validate(embedding) if embedding is not None else None
    embedder = ctx.pipelines().embedder_for(spec) if index_options.semantic else None
    key = compute_and_store(store, items_sha, embedder, index_options)
    return {"chunk": items_sha[:12], "result": key}
