"""The worker process's loaded resources: its backend (loaded once at start-up) and stores.

Job functions look the backend up here instead of loading it, so a vLLM engine or a model's
weights are loaded once per worker process, not once per job.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field

import redis

from generator.backends import Backend
from generator.config import QueueSettings, Settings
from generator.errors import BackendError
from generator.export.checks import DEFAULT_MAX_LENGTH, LengthCheck, load_tokenizer
from generator.factories import make_embedder
from generator.filters.stored_run import RunPipelines
from generator.queueing import WorkQueue
from generator.store import Store

logger = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    backend: Backend | None = None
    settings: Settings | None = None  # the worker's own (gapfill worker --config ...)
    fatal: str | None = None  # set when the backend died: the worker stops after this job
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _stores: dict[str, Store] = field(default_factory=dict)
    _pipelines: RunPipelines | None = None
    _tokenizer: object | None = None
    _tokenizer_failed: bool = False

    def pipelines(self) -> RunPipelines:
        """Each run's filter pipeline; the embedding model and the runs' indexes load once."""
        if self._pipelines is None:
            settings = self.current_settings()
            self._pipelines = RunPipelines(make_embedder(settings), settings.data_dir / "indexes")
        self._pipelines.judge = self.backend
        return self._pipelines

    def length_check(self, store: Store) -> LengthCheck | None:
        """Token counts under the default export tokenizer, cached in ``store``; None where
        that tokenizer can't load here (the export then counts what it needs itself)."""
        if self._tokenizer is None and not self._tokenizer_failed:
            try:
                self._tokenizer = load_tokenizer(None, self.current_settings().data_dir)
            except Exception as exc:  # an optimisation only: scoring must not fail on it
                self._tokenizer_failed = True
                logger.warning("token counts are left to the export: %s", exc)
        if self._tokenizer is None:
            return None
        return LengthCheck(self._tokenizer, DEFAULT_MAX_LENGTH, cache=store)

    def current_settings(self) -> Settings:
        """The settings the worker was started with; the environment's where none were given."""
        if self.settings is None:
            self.settings = Settings()
        return self.settings

    def store(self, prefix: str, connection: redis.Redis) -> Store:
        """A text-mode store on the job's server (RQ's own connection is in bytes mode)."""
        if prefix not in self._stores:
            kwargs = dict(connection.connection_pool.connection_kwargs)
            kwargs["decode_responses"] = True
            pool = redis.ConnectionPool(
                connection_class=connection.connection_pool.connection_class, **kwargs
            )
            self._stores[prefix] = Store(redis.Redis(connection_pool=pool), prefix=prefix)
        return self._stores[prefix]

    def queue(self, prefix: str, connection: redis.Redis, settings: QueueSettings) -> WorkQueue:
        return WorkQueue(self.store(prefix, connection), connection, settings)

    def require_backend(self) -> Backend:
        if self.backend is None:
            raise BackendError(
                "this worker has no LLM backend loaded; start it with gapfill worker --backend ..."
            )
        return self.backend


_context = WorkerContext()


def context() -> WorkerContext:
    return _context


def install(backend: Backend | None, settings: Settings | None = None) -> WorkerContext:
    """Make ``backend`` (already loaded) and ``settings`` the ones this process's jobs use."""
    _context.backend = backend
    _context.settings = settings
    return _context
