"""gapfill's Streamlit components (v2: their JavaScript runs in the page, no iframe).

- ``review_keys``: the queue's keyboard (see ``review_ui/keys.py`` and ``assets/keys.js``).
- ``marked_text``: untrusted text with highlighted spans, drawn through ``textContent`` only.
- ``session_store``: keeps the signed review session in the browser's localStorage and offers it
  back on the sign-in page (``generator/ui_sessions.py``).

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
_session = st.components.v2.component(
    "gapfill_session_store", js=(ASSETS / "session.js").read_text(encoding="utf-8")
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


def session_store(
    name: str,
    *,
    value: str | None = None,
    clear: bool = False,
    on_restore: Callable[[], None] | None = None,
    key: str = "session-store",
) -> None:
    """Keep ``value`` in the browser's storage, or delete it (``clear``), or, with
    ``on_restore``, have the browser offer back what it keeps (``st.session_state[key]`` holds
    ``{"restore": value}`` when the callback runs)."""
    data = {"name": name, "value": value, "clear": clear, "restore": on_restore is not None}
    if on_restore is None:
        _session(key=key, data=data, height=0)
    else:
        _session(key=key, data=data, height=0, on_restore_change=on_restore)


WARM_UP_CODE = "warm_up()"


def warm_up() -> None:
    """A code block out of sight (app.py's style hides it), on every page from the sign-in on:
    the browser loads and runs the code highlighter's script on first use (about 0.2 s of
    script on two cores, after the run that drew it has finished). Drawn while the reviewer
    types a token, it is ready before the first item; drawn with the queue, it ran during the
    first key press."""
    with st.container(key="warm-up"):
        st.code(WARM_UP_CODE, language="python")
