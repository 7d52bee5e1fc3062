"""gapfill's Streamlit components (v2: their JavaScript runs in the page, no iframe).

- ``review_keys``: the queue's keyboard (see ``review_ui/keys.py`` and ``assets/keys.js``).
- ``marked_text``: untrusted text with highlighted spans, drawn through ``textContent`` only.
- ``session_cookie``: stores the signed review-session cookie (``generator/ui_sessions.py``).

Registered once per process, when this module is first imported (a page script runs anew at
each rerun; a module does not).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import streamlit as st

from review_ui.reading import Mark

ASSETS = Path(__file__).parent / "assets"

_keys = st.components.v2.component(
    "gapfill_review_keys", js=(ASSETS / "keys.js").read_text(encoding="utf-8"), isolate_styles=False
)
_cookie = st.components.v2.component(
    "gapfill_session_cookie", js=(ASSETS / "cookie.js").read_text(encoding="utf-8")
)
_marked = st.components.v2.component(
    "gapfill_marked_text",
    js=(ASSETS / "marked.js").read_text(encoding="utf-8"),
    css=(ASSETS / "marked.css").read_text(encoding="utf-8"),
)


def review_keys(data: Mapping[str, object], on_key: Callable[[], None], key: str) -> None:
    """Mount the keyboard; ``on_key`` runs for each press, which ``st.session_state[key]``
    holds as ``{"key": press}``."""
    _keys(key=key, data=dict(data), on_key_change=on_key, height=0, width="stretch")


def marked_text(segments: Sequence[tuple[str, Mark]], key: str | None = None) -> None:
    """Text with ``add``/``del``/``pii`` spans highlighted; every segment stays plain text."""
    _marked(key=key, data={"segments": [[text, mark] for text, mark in segments]})


def session_cookie(name: str, value: str | None, max_age: int, clear: bool = False) -> None:
    """Store (or, with ``clear``, delete) the review session cookie in the browser."""
    _cookie(
        key="session-cookie",
        data={"name": name, "value": value, "max_age": max_age, "clear": clear},
        height=0,
    )
