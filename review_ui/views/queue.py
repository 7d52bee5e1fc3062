"""The focus view: one leased item at a time, decided by keyboard.

Keys (Prodigy's): a accept, x reject (then 1-7 for the reason), e edit, s skip, u undo; for a
preference pair w swaps chosen and rejected. Streamlit reserves C and R, so neither is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from redis.exceptions import RedisError

from generator.errors import StoreError
from generator.schema import Message, PreferenceExample, SFTExample
from review_ui import render
from review_ui.resources import store
from review_ui.session import REJECT_REASONS, Outcome, ReviewSession, edited_sft
from review_ui.signin import for_the_signed_in, signed_in_reviewer

LOGGER = logging.getLogger(__name__)


@dataclass
class TabSession:
    """The review session of one browser tab, as its session-scoped resource: Streamlit releases
    that when the tab's connection goes, the one moment it says a tab has gone."""

    review: ReviewSession | None = None


def _tab_gone(tab: TabSession) -> None:
    # Runs on the server's thread, after the tab has gone: nobody is there to see an error.
    if tab.review is not None:
        try:
            tab.review.end()
        except (StoreError, RedisError):
            LOGGER.warning("a closed tab's prefetched lease stays until it expires", exc_info=True)


@st.cache_resource(scope="session", on_release=_tab_gone, show_spinner=False)
def tab_session() -> TabSession:
    return TabSession()


def review_session(run_id: str, reviewer: str) -> ReviewSession:
    session: ReviewSession | None = st.session_state.get("review_session")
    if session is not None and session.store is not store():
        # The store came back elsewhere (app.py dropped the old client): a new session on the
        # new client, its leases kept (a claim hands a reviewer their live leases first).
        session = None
    if session is None or session.run_id != run_id or session.reviewer != reviewer:
        if session is not None:
            session.close()
        session = ReviewSession(store(), reviewer, run_id)
        st.session_state["review_session"] = session
    tab = tab_session()
    if tab.review is not session:  # a new session, or a dropped connection's resumed one
        session.resume()
        tab.review = session
    return session


def report(outcome: Outcome) -> None:
    st.session_state["flash"] = (outcome.ok, outcome.message)
    st.session_state["mode"] = "view"
    st.session_state.pop("pii-cleared", None)  # a clearance is for one item only


@for_the_signed_in
def act(action: str, *args: object) -> None:
    session: ReviewSession = st.session_state["review_session"]
    if action == "accept" and st.session_state.get("pii-cleared"):
        args = (True,)
    report(getattr(session, action)(*args))


def set_mode(mode: str) -> None:
    st.session_state["mode"] = mode


@for_the_signed_in
def save_edit() -> None:
    session: ReviewSession = st.session_state["review_session"]
    lease = session.current
    if lease is None:
        return
    original = lease.item.payload
    key = lease.item_id
    if isinstance(original, SFTExample):
        texts = [st.session_state[f"turn-{key}-{i}"] for i in range(len(original.messages))]
        edited: SFTExample | PreferenceExample = edited_sft(original, texts)
        report(session.edit(edited, as_pair=bool(st.session_state.get(f"pair-{key}"))))
    elif isinstance(original, PreferenceExample):
        chosen = [
            *original.chosen[:-1],
            Message(role="assistant", content=st.session_state[f"chosen-{key}"]),
        ]
        rejected = [
            *original.rejected[:-1],
            Message(role="assistant", content=st.session_state[f"rejected-{key}"]),
        ]
        edited = original.model_copy(update={"chosen": chosen, "rejected": rejected})
        report(session.edit(edited))


def editor(session: ReviewSession) -> None:
    lease = session.current
    assert lease is not None
    item, key = lease.item.payload, lease.item_id
    if isinstance(item, SFTExample):
        for index, message in enumerate(item.messages):
            st.text_area(message.role, message.content, key=f"turn-{key}-{index}")
        st.checkbox(
            "Also export a preference pair: the edited answer chosen, the original rejected",
            key=f"pair-{key}",
        )
    elif isinstance(item, PreferenceExample):
        render.turns(item.prompt)
        st.text_area("chosen", item.chosen[-1].content, key=f"chosen-{key}")
        st.text_area("rejected", item.rejected[-1].content, key=f"rejected-{key}")
    left, right = st.columns(2)
    left.button(
        "Save and accept (ctrl+enter)", on_click=save_edit, shortcut="ctrl+enter", type="primary"
    )
    right.button("Cancel (esc)", on_click=set_mode, args=("view",), shortcut="escape")


def actions(session: ReviewSession) -> None:
    mode = st.session_state.get("mode", "view")
    if mode == "reject":
        st.markdown("**Reject because…** (press its number)")
        # Two rows of four: eight buttons in one row were cut to "1‥ 1" at 1400 px. The label
        # is the reason alone: Streamlit draws the shortcut's number beside it.
        cells = [column for _ in range(2) for column in st.columns(4)]
        for number, (cell, reason) in enumerate(zip(cells, REJECT_REASONS, strict=False), 1):
            cell.button(
                reason,
                on_click=act,
                args=("reject", reason),
                shortcut=str(number),
                key=f"reason-{number}",
                width="stretch",
            )
        cells[len(REJECT_REASONS)].button(
            "Cancel", on_click=set_mode, args=("view",), shortcut="escape", width="stretch"
        )
        return
    if mode == "edit":
        editor(session)
        return
    pair = session.current is not None and isinstance(
        session.current.item.payload, PreferenceExample
    )
    pii = session.current.item.scores.get("pii") if session.current is not None else None
    if pii is not None and not pii.passed:
        # Unchecked, an accepted item with this flag stays out of every export.
        st.checkbox("PII/secret flag checked: safe to export", key="pii-cleared", value=False)
    # Short labels: Streamlit draws each shortcut's key beside the label, and longer labels
    # were cut to "Acce…" in five columns at 1280 px.
    buttons: list[tuple[str, str, Callable[..., None], tuple[str, ...]]] = [
        ("Accept", "a", act, ("accept",)),
        ("Reject", "x", set_mode, ("reject",)),
    ]
    if pair:
        buttons.append(("Swap+accept", "w", act, ("swap",)))
    buttons += [
        ("Edit", "e", set_mode, ("edit",)),
        ("Skip", "s", act, ("skip",)),
        ("Undo", "u", act, ("undo",)),
    ]
    for column, (label, key, callback, args) in zip(st.columns(len(buttons)), buttons, strict=True):
        column.button(
            label,
            on_click=callback,
            args=args,
            shortcut=key,
            key=f"key-{key}",
            type="primary" if key == "a" else "secondary",
        )


def nothing_left(waiting: int, leased: int) -> str:
    """Why no item is on screen. A claim hands a reviewer their own leases first and skips only
    what they skipped or voted on, so items still waiting are those, and leased ones are
    other reviewers'."""
    if waiting == 0 and leased == 0:
        return "Nothing left to review in this run."
    parts = []
    if waiting:
        parts.append(f"{waiting} waiting: items you skipped or already voted on")
    if leased:
        parts.append(
            f"{leased} leased to other reviewers (back in the queue if not decided in time)"
        )
    return "Nothing left for you in this run: " + "; ".join(parts) + "."


def page() -> None:
    reviewer = signed_in_reviewer()
    run_id = st.session_state.get("run_id")
    if not run_id:
        st.info("No run to review yet: generate candidates first (gapfill generate).")
        return
    session = review_session(run_id, reviewer)
    flash = st.session_state.pop("flash", None)
    if flash is not None:
        ok, message = flash
        (st.success if ok else st.warning)(message)
    lease = session.refresh()
    waiting, leased = store().queue_figures(run_id)
    st.caption(f"run {run_id} · {session.decided} decided this session · {waiting} waiting")
    if lease is None:
        st.info(nothing_left(waiting, leased))
        st.button("Check again", key="again")
        if session.history:
            st.button("Undo (u)", on_click=act, args=("undo",), shortcut="u", key="key-u")
        return
    item = lease.item
    gaps = {g.id: g for g in store().gaps(run_id)}
    main, side = st.columns([3, 2])
    with main:
        render.gap(item.gap_id, gaps)
        overlap = ""
        k, _rule = store().review_rule(run_id)
        if k > 1:  # blind review: how many voted, never how
            overlap = f" · vote {len(store().votes(item.id)) + 1} of {k}"
        st.caption(f"item {item.id} · {item.kind.value} · priority {item.priority:.2f}{overlap}")
        if st.session_state.get("mode") != "edit":
            render.payload(item)
        actions(session)
    with side:
        st.markdown("**Filters**")
        render.scores(item.scores)
        with st.expander("Provenance"):
            st.json(item.provenance.model_dump(mode="json", exclude={"rendered_prompt"}))


page()
