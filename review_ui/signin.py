"""Who is reviewing, and in which role. No decision is recorded without a known reviewer.

Modes (``GAPFILL_UI_AUTH``, set by ``gapfill ui``):
- ``oidc``: Streamlit's ``st.login`` against the ``[auth]`` section of ``.streamlit/secrets.toml``,
  admitted only with a verified e-mail on the allow-list (``oidc_allowed_emails``/``_domains``);
  the reviewer id is that e-mail, the role the one ``reviewers.json`` gives it (else reviewer);
- ``tokens`` (default): a reviewer token created by ``gapfill reviewer add NAME`` (stored hashed);
  the sign-in lasts across reloads through a signed, expiring value in the browser's storage
  (``ui_sessions``);
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
                _issue_session(name, entry.hash)
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
    """Forget the signed-in visitor in this tab at once, then give back the items their queue
    holds and record the sign-out in the store, so a copy of the session's stored value signs
    nobody in. The store's part, when the store is away, is done at the next run that finds it
    (``flush_sign_outs``): the sign-out is never lost, and never a traceback."""
    session = st.session_state.pop("review_session", None)
    claim: ui_sessions.SessionClaim | None = st.session_state.pop("session-claim", None)
    for key in ("reviewer", "token_hash", "reviewer_id", "session-set"):
        st.session_state.pop(key, None)
    st.session_state["signed-out"] = True  # the browser's stored session is deleted, not offered
    st.session_state.setdefault(PENDING_SIGN_OUTS, []).append((session, claim))
    flush_sign_outs(raise_when_away=False)
    if logout:
        st.logout()


def sign_out() -> None:
    end_session(logout=auth_mode() == "oidc")


PENDING_SIGN_OUTS = "pending-sign-outs"


def flush_sign_outs(*, raise_when_away: bool = True) -> None:
    """Do the store's part of this tab's sign-outs: release the ended session's leases and
    refuse its stored value from now on. While the store is away they wait for the next run
    (which, with ``raise_when_away``, says "store unavailable, retrying" until they are done)."""
    pending: list[tuple[object, ui_sessions.SessionClaim | None]] = st.session_state.get(
        PENDING_SIGN_OUTS, []
    )
    while pending:
        session, claim = pending[0]
        try:
            if session is not None:
                session.close()  # type: ignore[attr-defined]
            if claim is not None:
                store().sign_out_session(claim.session, claim.seconds_left())
        except Exception as error:
            if store_away(error):
                if raise_when_away:
                    raise
                return
            log_incident(error)  # a bug: logged, and it does not hold the sign-out back
        pending.pop(0)


# -- sessions across reloads -----------------------------------------------------------------

SESSION_WIDGET = "session-store"


def _issue_session(name: str, token_hash: str) -> None:
    hours = settings().ui_session_hours
    if hours <= 0:
        return
    key = ui_sessions.signing_key(settings().data_dir)
    value = ui_sessions.issue(key, name, token_hash, hours)
    st.session_state["session-set"] = value
    st.session_state["session-claim"] = ui_sessions.verify(key, value)


def _restore() -> None:
    """The browser offered the session it keeps: sign in with it if it is well signed,
    unexpired, not signed out, and its token is still the reviewer's; otherwise nothing."""
    offered = (st.session_state.get(SESSION_WIDGET) or {}).get("restore")
    if settings().ui_session_hours <= 0 or st.session_state.get("reviewer"):
        return
    key = ui_sessions.signing_key(settings().data_dir)
    claim = ui_sessions.verify(key, offered if isinstance(offered, str) else None)
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
    st.session_state.pop("signed-out", None)


def session_storage(signed_in: bool) -> None:
    """Keep the browser's stored session in step with this tab: store a new one after a token
    sign-in, delete it after a sign-out (or a token that no longer signs in), and on the
    sign-in page have the browser offer back the one it keeps."""
    if auth_mode() != "tokens":
        return
    from review_ui.widgets import session_store

    name = ui_sessions.STORAGE_NAME
    value = st.session_state.get("session-set")
    with st.sidebar:
        if signed_in and value:
            session_store(name, value=value)
        elif st.session_state.get("signed-out"):
            session_store(name, clear=True)
        elif not signed_in and settings().ui_session_hours > 0:
            session_store(name, on_restore=_restore)
