"""Who is reviewing, and in which role. No decision is recorded without a known reviewer.

Modes (``GAPFILL_UI_AUTH``, set by ``gapfill ui``):
- ``oidc``: Streamlit's ``st.login`` against the ``[auth]`` section of ``.streamlit/secrets.toml``,
  admitted only with a verified e-mail on the allow-list (``oidc_allowed_emails``/``_domains``);
  the reviewer id is that e-mail, the role the one ``reviewers.json`` gives it (else reviewer);
- ``tokens`` (default): a reviewer token created by ``gapfill reviewer add NAME`` (stored hashed);
  the sign-in lasts across reloads through a signed, expiring cookie (``ui_sessions``);
- ``local``: the explicit single-user mode of the demo, on loopback only: the OS user name, as
  admin, with no sign-in.

Every rerun checks the visitor again: a token removed or replaced since sign-in, or an account
taken off the allow-list, ends the session there (its leased items go back to the queue), and
a role changed since takes effect at once.
"""

from __future__ import annotations

import functools
import getpass
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

import streamlit as st

from generator import reviewers, ui_sessions
from generator.access import NotAllowedError, OidcPolicy
from generator.connection import store_away
from generator.errors import ConfigError
from generator.reviewers import Role
from review_ui.resources import (
    STORE_AWAY_MESSAGE,
    incident_message,
    log_incident,
    settings,
    store,
)

P = ParamSpec("P")


@dataclass(frozen=True)
class Visitor:
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def auth_mode() -> str:
    return os.environ.get("GAPFILL_UI_AUTH", "tokens")


def _oidc_visitor() -> Visitor:
    """The OIDC user, if the allow-list admits them; NotAllowedError otherwise."""
    config = settings()
    try:
        policy = OidcPolicy.of(config.oidc_allowed_emails, config.oidc_allowed_domains)
    except ConfigError as exc:  # gapfill ui refuses this; a server started otherwise admits no one
        raise NotAllowedError(str(exc)) from exc
    email = policy.admit(st.user.to_dict())
    return Visitor(email, reviewers.role_of_email(config.data_dir, email))


def visitor() -> Visitor | None:
    """The signed-in visitor as of now, or None; draws nothing."""
    mode = auth_mode()
    if mode == "local":
        return Visitor(f"local:{getpass.getuser()}", Role.ADMIN)
    if mode == "oidc":
        if not st.user.is_logged_in:
            return None
        try:
            return _oidc_visitor()
        except NotAllowedError:
            return None
    if not st.session_state.get("reviewer") and not st.session_state.get("signed-out"):
        _restore_from_cookie()
    name, signed_in_hash = st.session_state.get("reviewer"), st.session_state.get("token_hash")
    if not name or not signed_in_hash:
        return None
    claim: ui_sessions.SessionClaim | None = st.session_state.get("session-claim")
    if claim is not None and store().signed_out(claim.session):
        return None  # signed out in another tab of the same session
    role = reviewers.role_now(settings().data_dir, str(name), str(signed_in_hash))
    return Visitor(str(name), role) if role is not None else None


def current_reviewer() -> Visitor | None:
    """The signed-in visitor, or None after drawing the sign-in (or the refusal)."""
    try:
        found = visitor()
    except ConfigError as exc:  # reviewers.json unreadable: say so, admit no one
        st.error(str(exc))
        return None
    if found is not None:
        return found
    if st.session_state.get("reviewer_id") or st.session_state.get("reviewer"):  # no longer valid
        end_session()
        if auth_mode() == "tokens":
            st.warning("Your token was removed or replaced: sign in again.")
    if auth_mode() == "oidc":
        _oidc_sign_in()
    else:
        _token_sign_in()
    return None


def _oidc_sign_in() -> None:
    st.title("gapfill review")
    if not st.user.is_logged_in:
        st.button("Sign in", on_click=st.login, type="primary")
        return
    try:
        _oidc_visitor()
    except NotAllowedError as exc:
        end_session(logout=False)
        st.error(f"Not allowed: {exc}.")
        st.button("Sign out", on_click=sign_out)


SIGN_IN_KEYS = "sign-in-keys"


def _key_before_sign_in() -> None:
    """A review key pressed on the sign-in page (or while it turned into the queue): refused on
    screen, never applied to an item the reviewer has not seen."""
    from review_ui import keys

    press = keys.parse((st.session_state.get(SIGN_IN_KEYS) or {}).get("key"))
    seen: keys.SeenPresses = st.session_state.setdefault("keys-seen", keys.SeenPresses())
    if press is not None and seen.first_time(press):  # its outcome: "refused"
        st.session_state["flash"] = (False, f"'{press.key}' was not applied: sign in first.")


def _sign_in_keys() -> None:
    """The review keyboard, already listening on the sign-in page: a key pressed right after
    signing in, while the queue is being drawn, is then held and answered, not lost."""
    from review_ui import keys
    from review_ui.widgets import review_keys

    seen: keys.SeenPresses = st.session_state.setdefault("keys-seen", keys.SeenPresses())
    flash = st.session_state.pop("flash", None)
    if flash is not None:
        st.warning(flash[1])
    screen = keys.Screen(mode="view", item=None)
    data = {"item": None, "keys": keys.screen_keys(screen), "ack": seen.ack()}
    review_keys(data, _key_before_sign_in, key=SIGN_IN_KEYS)


def _token_sign_in() -> None:
    st.title("gapfill review")
    _sign_in_keys()
    with st.form("sign-in"):
        token = st.text_input("Reviewer token", type="password", key="token")
        if st.form_submit_button("Sign in", type="primary"):
            try:
                found = reviewers.sign_in(settings().data_dir, token)
            except ConfigError as exc:
                st.error(str(exc))
                return
            if found is None:
                st.error("Unknown token. Ask for one: gapfill reviewer add NAME")
            else:
                name, entry = found
                st.session_state["reviewer"] = name
                st.session_state["token_hash"] = entry.hash
                st.session_state.pop("signed-out", None)
                _issue_cookie(name, entry.hash)
                st.rerun()


def signed_in_reviewer(admin: bool = False) -> str:
    """The visitor app.py signed in for this session; a page run without one stops here, and
    so does an admin page (``admin=True``) run by a reviewer.

    Pages are reachable only through app.py's navigation, after its sign-in; each page checks
    again anyway (from the store of tokens, not from what app.py left), so no page acts for a
    visitor nobody identified, or for one whose token or role changed.
    """
    found = visitor()
    if found is None:
        st.error("Sign in first.")
        st.stop()
    if admin and not found.is_admin:
        st.error("This page is for admins only: ask an admin (gapfill reviewer role NAME admin).")
        st.stop()
    return found.name


def for_the_signed_in(callback: Callable[P, None]) -> Callable[P, None]:
    """A widget callback that acts only for the visitor this session signed in, as of now.

    Streamlit runs callbacks before the script, so before app.py's sign-in check: without this,
    a click made after the token was removed would still be recorded. Refused, the callback
    does nothing, and the run that follows ends the session."""

    @functools.wraps(callback)
    def checked(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            found = visitor()
            if found is not None and found.name == st.session_state.get("reviewer_id"):
                callback(*args, **kwargs)
        except ConfigError:
            return  # the run that follows shows why
        except Exception as error:
            if not store_away(error):
                # A bug: the reviewer sees an incident id, the log the traceback.
                st.session_state["flash"] = (False, incident_message(log_incident(error)))
                return
            # A decision is one script: recorded whole or not at all. Unconfirmed, it may be
            # either; the item stays leased to this reviewer, and deciding it again is safe
            # (a second vote on a version already decided is refused, not counted).
            st.session_state["flash"] = (
                False,
                f"{STORE_AWAY_MESSAGE}: the store did not confirm that action; if the item is "
                "still shown once it is back, do it again",
            )

    return checked


def is_admin() -> bool:
    """Whether the visitor is an admin now (re-read: a demoted admin is not, from this rerun)."""
    found = visitor()
    return found is not None and found.is_admin


def end_session(logout: bool = False) -> None:
    """Forget the signed-in visitor and give back the items their queue holds; a session
    cookie is deleted (and refused from now on, wherever a copy of it is)."""
    session = st.session_state.pop("review_session", None)
    if session is not None:
        session.close()
    for key in ("reviewer", "token_hash", "reviewer_id"):
        st.session_state.pop(key, None)
    claim: ui_sessions.SessionClaim | None = st.session_state.pop("session-claim", None)
    if claim is not None:
        store().sign_out_session(claim.session, claim.seconds_left())
    st.session_state.pop("cookie-set", None)
    st.session_state["signed-out"] = True  # this tab does not sign in again from its cookie
    if logout:
        st.logout()


def sign_out() -> None:
    end_session(logout=auth_mode() == "oidc")


# -- sessions across reloads -----------------------------------------------------------------


def _issue_cookie(name: str, token_hash: str) -> None:
    hours = settings().ui_session_hours
    if hours <= 0:
        return
    key = ui_sessions.signing_key(settings().data_dir)
    value = ui_sessions.issue(key, name, token_hash, hours)
    st.session_state["cookie-set"] = value
    st.session_state["session-claim"] = ui_sessions.verify(key, value)


def _restore_from_cookie() -> None:
    """Sign in from the session cookie the browser sent with this tab's connection, if it is
    well signed, unexpired, not signed out, and its token is still the reviewer's."""
    if settings().ui_session_hours <= 0:
        return
    key = ui_sessions.signing_key(settings().data_dir)
    claim = ui_sessions.verify(key, st.context.cookies.get(ui_sessions.COOKIE))
    if claim is None or store().signed_out(claim.session):
        return
    entry = reviewers.load(settings().data_dir).get(claim.name)
    if entry is None or not hmac.compare_digest(
        ui_sessions.token_binding(entry.hash), claim.binding
    ):
        return
    st.session_state["reviewer"] = claim.name
    st.session_state["token_hash"] = entry.hash
    st.session_state["session-claim"] = claim


def session_cookie() -> None:
    """Keep the browser's cookie in step with this tab: store a new one after a token sign-in,
    delete it after a sign-out (or a token that no longer signs in)."""
    if auth_mode() != "tokens":
        return
    from review_ui.widgets import session_cookie as cookie_widget

    value = st.session_state.get("cookie-set")
    claim: ui_sessions.SessionClaim | None = st.session_state.get("session-claim")
    if value and claim is not None:
        with st.sidebar:
            cookie_widget(ui_sessions.COOKIE, value, claim.seconds_left())
    elif st.session_state.get("signed-out"):
        with st.sidebar:
            cookie_widget(ui_sessions.COOKIE, None, 0, clear=True)
