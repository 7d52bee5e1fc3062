"""What a page shows when something fails: never a traceback.

- The store is away (restarting, unreachable): say so and try again shortly.
- Anything else is a bug: a short message with an incident id to quote; the traceback goes to
  the server's log under that id (it can hold paths and data).

app.py wraps every full run in ``shown``; a fragment (which Streamlit runs on its own, outside
app.py's ``try``) wraps its body in ``guarded``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import ParamSpec

import streamlit as st

from generator.connection import store_away
from review_ui.resources import STORE_AWAY_MESSAGE, incident_message, log_incident, store

LOGGER = logging.getLogger("review_ui")
RETRY_SECONDS = 2.0
P = ParamSpec("P")


def shown(error: Exception) -> None:
    if store_away(error):
        _while_store_away(error)
    else:
        st.error(incident_message(log_incident(error)))


def _while_store_away(error: Exception) -> None:
    """Say so and try again shortly. The cached client is dropped, so a bundled server that
    came back elsewhere is found."""
    LOGGER.warning("%s: %s", STORE_AWAY_MESSAGE, error)
    st.warning(f"{STORE_AWAY_MESSAGE}…", icon="⏳")
    store.clear()
    time.sleep(RETRY_SECONDS)
    st.rerun()


def guarded(body: Callable[P, None]) -> Callable[P, None]:
    """``body``, with its failures shown as ``shown`` shows them (st.rerun and st.stop are
    BaseExceptions: they pass through)."""

    @functools.wraps(body)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            body(*args, **kwargs)
        except Exception as error:
            shown(error)

    return run
