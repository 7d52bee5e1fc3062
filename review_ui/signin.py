"""Who is reviewing. No decision is recorded without a known reviewer.

Modes (``GAPFILL_UI_AUTH``, set by ``gapfill ui``):
- ``oidc``: Streamlit's ``st.login`` against the ``[auth]`` section of ``.streamlit/secrets.toml``;
  the reviewer id is the signed-in e-mail (or subject);
- ``tokens`` (default): a reviewer token created by ``gapfill reviewer add NAME`` (stored hashed);
- ``local``: the explicit single-user mode of the demo: the OS user name, no sign-in.
"""

from __future__ import annotations

import getpass
import os

import streamlit as st

from generator import reviewers
from review_ui.resources import settings


def auth_mode() -> str:
    return os.environ.get("GAPFILL_UI_AUTH", "tokens")


def current_reviewer() -> str | None:
    """The signed-in reviewer, or None after drawing the sign-in form."""
    mode = auth_mode()
    if mode == "local":
        return f"local:{getpass.getuser()}"
    if mode == "oidc":
        if not st.user.is_logged_in:
            st.title("gapfill review")
            st.button("Sign in", on_click=st.login, type="primary")
            return None
        return str(st.user.get("email") or st.user.get("sub"))
    if reviewer := st.session_state.get("reviewer"):
        return str(reviewer)
    st.title("gapfill review")
    with st.form("sign-in"):
        token = st.text_input("Reviewer token", type="password", key="token")
        if st.form_submit_button("Sign in", type="primary"):
            name = reviewers.who(settings().data_dir, token)
            if name is None:
                st.error("Unknown token. Ask for one: gapfill reviewer add NAME")
            else:
                st.session_state["reviewer"] = name
                st.rerun()
    return None


def signed_in_reviewer() -> str:
    """The reviewer app.py signed in for this session; a page run without one stops here.

    Pages are reachable only through app.py's navigation, after its sign-in; each page checks
    again anyway, so no page can act for a visitor nobody identified.
    """
    reviewer = st.session_state.get("reviewer_id")
    if not reviewer:
        st.error("Sign in first.")
        st.stop()
    return str(reviewer)


def sign_out() -> None:
    session = st.session_state.pop("review_session", None)
    if session is not None:
        session.close()
    st.session_state.pop("reviewer", None)
    if auth_mode() == "oidc":
        st.logout()
