"""Process-wide resources of the UI, created once per server (``st.cache_resource``)."""

from __future__ import annotations

import logging
import secrets

import streamlit as st
from redis.exceptions import RedisError

from generator.config import Settings
from generator.connection import store_client
from generator.embeddings import Embedder
from generator.errors import StoreError
from generator.factories import make_embedder, make_work_queue
from generator.prescreening import due, settled
from generator.queueing import WorkQueue
from generator.run_inputs import InputCache
from generator.run_texts import RunTexts
from generator.schema import Gap, RunConfig
from generator.store import Store

STORE_AWAY_MESSAGE = "store unavailable, retrying"
LOGGER = logging.getLogger("review_ui")


def log_incident(error: BaseException) -> str:
    """Log ``error`` with its traceback under a new incident id, for the page to quote."""
    incident = secrets.token_hex(4)
    LOGGER.error("incident %s: %s", incident, type(error).__name__, exc_info=error)
    return incident


def incident_message(incident: str) -> str:
    return (
        f"Something went wrong on the server (incident {incident}). Reload the page to go on; "
        "an admin finds the details under that incident in the server's log."
    )


@st.cache_resource
def settings() -> Settings:
    return Settings()


@st.cache_resource
def store() -> Store:
    config = settings()
    # start=False: the UI finds the bundled server (gapfill ui started it), and waits for it
    # when it is away, rather than starting one an operator stopped.
    client = store_client(config, start=False)
    return Store(client, prefix=config.key_prefix, lease_seconds=config.lease_seconds)


@st.cache_resource
def work_queue() -> WorkQueue:
    """The store's RQ queues: the pre-screen's retraining goes on the scoring queue."""
    return make_work_queue(settings(), store())


def retrain_if_due(run_id: str) -> None:
    """After a decision: retrain the run's pre-screen on a worker once enough items were
    settled since it last learnt (O(1) reads; only runs whose campaign asks for one). Never
    in the reviewer's way: a failure is logged, the decision stands."""
    config = run_config(run_id)
    chosen = config.review.prescreen if config is not None else None
    if chosen is None:
        return
    try:
        if due(store(), run_id, chosen):
            work_queue().enqueue_prescreen(run_id, settled(store(), run_id))
    except (RedisError, StoreError):
        LOGGER.warning(
            "run %s: the pre-screen's retraining was not enqueued", run_id, exc_info=True
        )


@st.cache_resource
def embedder() -> Embedder:
    """The configured embedding model, loaded once per server (for the export's eval report)."""
    return make_embedder(settings())


@st.cache_resource(max_entries=16, show_spinner=False)
def _run_texts(run_id: str, config_json: str, client_id: int) -> RunTexts:
    # client_id: a new store client (the server came back elsewhere) gets new lookups.
    config = RunConfig.model_validate_json(config_json)
    return RunTexts(store(), config, InputCache(settings().data_dir / "inputs"))


def run_texts(config: RunConfig) -> RunTexts:
    """The texts behind a run's evidence ids, read once per server and run settings."""
    return _run_texts(config.run_id, config.model_dump_json(), id(store()))


# A run's gaps and settings change when a campaign is set up, not while it is reviewed: read
# them at most every few seconds, not on every key press (shared, never modified).
RUN_RECORD_TTL = 10


@st.cache_resource(ttl=RUN_RECORD_TTL, show_spinner=False, max_entries=64)
def _run_gaps(prefix: str, run_id: str, client_id: int) -> dict[str, Gap]:
    return {gap.id: gap for gap in store().gaps(run_id)}


def run_gaps(run_id: str) -> dict[str, Gap]:
    """The run's gaps by id (at most RUN_RECORD_TTL seconds old)."""
    return _run_gaps(store().keys.prefix, run_id, id(store()))


@st.cache_resource(ttl=RUN_RECORD_TTL, show_spinner=False, max_entries=64)
def _run_config(prefix: str, run_id: str, client_id: int) -> RunConfig | None:
    return store().get_run(run_id)


def run_config(run_id: str) -> RunConfig | None:
    """The run's stored settings (at most RUN_RECORD_TTL seconds old)."""
    return _run_config(store().keys.prefix, run_id, id(store()))
