"""Reviewers (admins only): who may sign in, in which role; add, remove, change roles.

The same store of tokens as ``gapfill reviewer``: a new token is shown once, on the run after
the one that made it, and only its hash is kept. Removing a reviewer or replacing their token
ends their sessions at their next action. An admin cannot remove or demote themselves here, so
the UI never locks out its last admin by a slip (the CLI can).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from generator import reviewers
from generator.errors import ConfigError
from generator.reviewers import Role
from review_ui.resources import settings
from review_ui.signin import auth_mode, signed_in_reviewer, visitor

ROLES = [role.value for role in Role]
FLASH = "reviewers-flash"


def _as_admin(change: Callable[[], str]) -> None:
    """Run a change from a form's callback, if the visitor is (still) an admin, and keep its
    outcome for the rerun to show. Callbacks run before the page, so they check on their own."""
    found = visitor()
    if found is None or not found.is_admin:
        st.session_state[FLASH] = ("error", "Reviewer management is for admins only.", None)
        return
    try:
        st.session_state[FLASH] = ("success", *change())
    except ConfigError as exc:
        st.session_state[FLASH] = ("error", str(exc), None)


def _add() -> tuple[str, str | None]:
    name = str(st.session_state.get("add-name", "")).strip()
    role = Role(st.session_state.get("add-role", Role.REVIEWER))
    existed = name in reviewers.load(settings().data_dir)
    token = reviewers.add(settings().data_dir, name, role)
    replaced = " Their old token no longer works." if existed else ""
    return f"{name} ({role}): give them this token; it is not shown again.{replaced}", token


def _set_role() -> tuple[str, str | None]:
    name, role = st.session_state["role-name"], Role(st.session_state["role-new"])
    _not_me(name)
    reviewers.set_role(settings().data_dir, name, role)
    return f"{name} is now {role}.", None


def _remove() -> tuple[str, str | None]:
    name = st.session_state["remove-name"]
    _not_me(name)
    reviewers.remove(settings().data_dir, name)
    return f"{name} removed: their sessions end at their next action.", None


def _not_me(name: str) -> None:
    found = visitor()
    if found is not None and found.name == name:
        raise ConfigError("not your own account: ask another admin, or use gapfill reviewer")


def show_flash() -> None:
    flash = st.session_state.pop(FLASH, None)  # popped: a new token is shown once
    if flash is None:
        return
    kind, message, token = flash
    (st.success if kind == "success" else st.error)(message)
    if token:
        st.code(token, language=None)


def forms(me: str, names: list[str]) -> None:
    add, change, remove = st.columns(3)
    with add.form("add-reviewer", clear_on_submit=True):
        st.markdown("**Add a reviewer** (or give one a new token)")
        oidc = auth_mode() == "oidc"
        st.text_input("Name (with OIDC: their e-mail)" if oidc else "Name", key="add-name")
        st.selectbox("Role", ROLES, key="add-role")
        st.form_submit_button("Add", type="primary", on_click=_as_admin, args=(_add,))
    others = [n for n in names if n != me]
    if not others:
        return
    with change.form("set-role"):
        st.markdown("**Change a role**")
        st.selectbox("Reviewer", others, key="role-name")
        st.selectbox("New role", ROLES, key="role-new")
        st.form_submit_button("Change role", on_click=_as_admin, args=(_set_role,))
    with remove.form("remove"):
        st.markdown("**Remove a reviewer**")
        st.selectbox("Reviewer", others, key="remove-name")
        st.form_submit_button("Remove", on_click=_as_admin, args=(_remove,))


def page() -> None:
    me = signed_in_reviewer(admin=True)
    st.header("Reviewers")
    show_flash()
    current = reviewers.load(settings().data_dir)
    st.dataframe(
        pd.DataFrame(
            [{"reviewer": n, "role": e.role.value} for n, e in sorted(current.items())],
            columns=["reviewer", "role"],
        ),
        hide_index=True,
    )
    forms(me, sorted(current))


page()
