"""gapfill's review UI: ``gapfill ui`` runs ``streamlit run review_ui/app.py``.

Candidate text is untrusted model output: every page shows it as text (``st.text``, ``st.code``,
the marked-text component), never as HTML or Markdown, so no script runs, no link is clickable
and no image is fetched. Failures show a message, never a traceback (``failures``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts this file's directory on sys.path, not the project root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from review_ui.failures import guarded
from review_ui.resources import store
from review_ui.signin import current_reviewer, flush_sign_outs, session_storage, sign_out
from review_ui.widgets import warm_up

# Never a folder named "pages/": Streamlit serves the files in one directly, past this sign-in.
PAGES = Path(__file__).parent / "views"


def choose_run() -> str | None:
    runs = sorted(store().runs())
    if not runs:
        return None
    wanted = st.query_params.get("run")
    index = runs.index(wanted) if wanted in runs else 0
    run = st.sidebar.selectbox("Run", runs, index=index, key="run")
    return str(run)


# gapfill's own style, no candidate text: less empty space above the item.
STYLE = (
    "<style>[data-testid='stMainBlockContainer']{padding-top:2.5rem;}"
    ".st-key-warm-up{display:none;}</style>"
)


def main() -> None:
    st.set_page_config(page_title="gapfill review", page_icon="🗂️", layout="wide")
    st.html(STYLE)
    warm_up()
    flush_sign_outs()  # a sign-out the store could not take yet
    visitor = current_reviewer()
    session_storage(signed_in=visitor is not None)
    if visitor is None:
        return
    st.session_state["reviewer_id"] = visitor.name
    # Plain text: an OIDC e-mail is the provider's text, not Markdown to render.
    st.sidebar.text(f"Signed in as {visitor.name} ({visitor.role})")
    st.sidebar.button("Sign out", on_click=sign_out)
    run = choose_run()
    st.session_state["run_id"] = run
    pages = [
        st.Page(PAGES / "queue.py", title="Queue", url_path="queue", default=True),
        st.Page(PAGES / "browse.py", title="Browse", url_path="browse"),
        st.Page(PAGES / "overview.py", title="Overview", url_path="overview"),
    ]
    if visitor.is_admin:  # each admin page checks the role again itself
        pages += [
            st.Page(PAGES / "export.py", title="Export", url_path="export"),
            st.Page(PAGES / "reviewers.py", title="Reviewers", url_path="reviewers"),
            st.Page(PAGES / "adjudicate.py", title="Adjudicate", url_path="adjudicate"),
        ]
    st.navigation(pages).run()


guarded(main)()
