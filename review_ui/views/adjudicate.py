"""Adjudication (admins only): items whose overlap votes split (k > 1). The admin sees the item,
each reviewer's vote, and settles it: accepted or rejected, once, logged as theirs.

Reviewers vote blind; the rule (majority, unanimous; a tie rejects) settles each item at its
k-th vote. Where the votes split, the rule's outcome is a coin the admin can overturn here.
"""

from __future__ import annotations

import streamlit as st

from generator.connection import store_away
from generator.errors import StoreError
from review_ui import render
from review_ui.resources import STORE_AWAY_MESSAGE, incident_message, log_incident, store
from review_ui.signin import signed_in_reviewer, visitor

FLASH = "adjudicate-flash"


def settle(item_id: str, accept: bool) -> None:
    """From the buttons' callback: only for a visitor who is an admin now. Never raises: a
    callback's exception would reach Streamlit's own error page."""
    try:
        st.session_state[FLASH] = _settle(item_id, accept)
    except StoreError as exc:
        st.session_state[FLASH] = (False, f"not recorded: {exc}")
    except Exception as error:
        message = STORE_AWAY_MESSAGE if store_away(error) else incident_message(log_incident(error))
        st.session_state[FLASH] = (False, f"not recorded: {message}")


def _settle(item_id: str, accept: bool) -> tuple[bool, str]:
    found = visitor()
    if found is None or not found.is_admin:
        return False, "Adjudication is for admins only."
    note = str(st.session_state.get(f"note-{item_id}", "")).strip()
    store().adjudicate(item_id, found.name, accept, note=note)
    return True, f"{'accepted' if accept else 'rejected'}: {item_id[:12]}"


def page() -> None:
    signed_in_reviewer(admin=True)
    run_id = st.session_state.get("run_id")
    st.header("Adjudicate split votes")
    flash = st.session_state.pop(FLASH, None)
    if flash is not None:
        (st.success if flash[0] else st.warning)(flash[1])
    if not run_id:
        st.info("No run yet.")
        return
    k, rule = store().review_rule(run_id)
    if k <= 1:
        st.info("This run has one reviewer per item: no votes to split.")
        return
    waiting = store().split_votes(run_id)
    if not waiting:
        st.info(f"No split votes waiting ({k} reviewers per item, {rule}).")
        return
    st.caption(f"{len(waiting)} items settled by split votes ({k} per item, {rule})")
    item_id = st.selectbox("Item", waiting, key="adjudicate-item")
    item = store().get(item_id)
    votes = store().votes(item_id)
    st.text(f"item {item.id} · {item.kind.value} · settled by the rule as {item.status.value}")
    st.dataframe(
        [{"reviewer": name, "vote": vote} for name, vote in sorted(votes.items())],
        hide_index=True,
    )
    with st.container(height=render.PANE_HEIGHT, autoscroll=False):
        render.payload(item)
    st.text_input("Note (kept in the decision log)", key=f"note-{item_id}")
    accept, reject = st.columns(2)
    accept.button("Accept", on_click=settle, args=(item_id, True), type="primary", key="adj-a")
    reject.button("Reject", on_click=settle, args=(item_id, False), key="adj-r")


page()
