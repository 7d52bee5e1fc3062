"""The heavy objects built from the settings, each in one place: the embedder, the work queue and
the LLM backend. The CLI, the workers and the UI call these instead of repeating constructors, so a
new setting reaches every caller at once.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from generator.backends import Backend, BackendOptions, create_backend
from generator.config import Settings
from generator.connection import store_client
from generator.embeddings import Embedder
from generator.queueing import WorkQueue
from generator.store import Store


class BackendName(StrEnum):
    """The LLM backends (``generator.backends``)."""

    LOCAL = "local"
    OPENAI = "openai"
    VLLM = "vllm"


class BackendChoice(BaseModel):
    """Which backend to load, with which model and options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: BackendName = BackendName.LOCAL
    model: str | None = Field(default=None, description="Model path or served name.")
    options: BackendOptions = Field(default_factory=BackendOptions)


def make_embedder(settings: Settings) -> Embedder:
    """The configured embedding model, its vectors cached under the data directory."""
    return Embedder(
        settings.embedding_model,
        cache_dir=settings.data_dir / "cache",
        max_tokens=settings.embedding_max_tokens,
        tier=settings.embedding_tier,
    )


def make_work_queue(settings: Settings, store: Store) -> WorkQueue:
    """The RQ queues of ``store``, on a bytes-mode connection to the same server."""
    connection = store_client(settings, decode_responses=False)
    return WorkQueue(store, connection, settings.queue_settings())


def make_backend(settings: Settings, choice: BackendChoice) -> Backend:
    """The chosen backend, not yet loaded (bad names and options fail here, cheaply)."""
    return create_backend(
        choice.name.value, choice.model, choice.options, data_dir=settings.data_dir
    )
