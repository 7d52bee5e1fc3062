"""Process-wide resources of the UI, created once per server (``st.cache_resource``)."""

from __future__ import annotations

import streamlit as st

from generator.config import Settings
from generator.connection import store_client
from generator.embeddings import Embedder
from generator.factories import make_embedder
from generator.store import Store

STORE_AWAY_MESSAGE = "store unavailable, retrying"


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
def embedder() -> Embedder:
    """The configured embedding model, loaded once per server (for the export's eval report)."""
    return make_embedder(settings())
