"""The focus view: one leased item at a time, decided by keyboard.

Keys (Prodigy's): a accept, x reject (then 1-7 for the reason), e edit, s skip, u undo; for a
preference pair w swaps chosen and rejected; j/k or the arrows scroll the item, ? shows the key
map. Streamlit reserves C and R, so neither is used. Keys go through ``review_ui/keys.py``: each
press is applied once, to the item it was pressed for, or refused on screen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from redis.exceptions import RedisError

from generator.errors import StoreError
from generator.filters.settings import FilterSettings
from generator.schema import Message, PreferenceExample, RunConfig, SFTExample
from review_ui import keys, render
from review_ui.failures import guarded
from review_ui.resources import retrain_if_due, run_config, run_gaps, run_texts, store
from review_ui.session import REJECT_REASONS, Outcome, ReviewSession, edited_sft
from review_ui.signin import for_the_signed_in, signed_in_reviewer, visitor
from review_ui.widgets import review_keys

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
    # Done: said in the status line (a toast cost the browser more than the item did).
    # Refused: a warning above the item.
    st.session_state["last" if outcome.ok else "flash"] = (outcome.ok, outcome.message)
    st.session_state["mode"] = "view"
    st.session_state.pop("pii-cleared", None)  # a clearance is for one item only


def refuse(message: str) -> None:
    st.session_state["flash"] = (False, message)
    st.session_state["refused"] = True


def shown_item(session: ReviewSession) -> str | None:
    return session.current.item_id if session.current is not None else None


@for_the_signed_in
def act(action: str, item_id: str | None, *args: object) -> None:
    """An action on the item the reviewer saw (``item_id``), refused if another is shown now:
    a click or key that arrives after the screen moved on never decides an unseen item."""
    session: ReviewSession = st.session_state["review_session"]
    if action != "undo" and item_id != shown_item(session):
        refuse(keys.changed_message(action, item_id, shown_item(session)))
        return
    if action == "accept" and st.session_state.get("pii-cleared"):
        args = (True,)
    outcome: Outcome = getattr(session, action)(*args)
    report(outcome)
    if action == "rank" and session.ranking:  # a ranking under way stays in rank mode
        st.session_state["mode"] = "rank"
    if not outcome.ok:
        st.session_state["refused"] = True
    elif action in ("accept", "reject", "swap"):
        retrain_if_due(session.run_id)


def set_mode(mode: str) -> None:
    st.session_state["mode"] = mode
    session: ReviewSession | None = st.session_state.get("review_session")
    if mode != "rank" and session is not None:
        session.cancel_ranking()  # esc drops a ranking under way


def toggle_keymap() -> None:
    st.session_state["keymap"] = not st.session_state.get("keymap", False)


def screen_of(session: ReviewSession | None) -> keys.Screen:
    lease = session.current if session is not None else None
    mode = st.session_state.get("mode", "view")
    payload = lease.item.payload if lease is not None else None
    ranked = payload.ranked if isinstance(payload, PreferenceExample) else None
    return keys.Screen(
        mode=mode if mode in ("view", "reject", "edit", "rank") else "view",
        item=lease.item_id if lease is not None else None,
        pair=isinstance(payload, PreferenceExample) and ranked is None,
        answers=len(ranked) if ranked else 0,
    )


def on_key() -> None:
    """A key press from the browser: applied once (by its sequence number), to the item it was
    pressed for. Recorded as seen before anything else, so the browser's acknowledgement comes
    even when the press is refused."""
    press = keys.parse((st.session_state.get(KEYS_WIDGET) or {}).get("key"))
    seen: keys.SeenPresses = st.session_state.setdefault("keys-seen", keys.SeenPresses())
    if press is None or not seen.first_time(press):
        return
    st.session_state["refused"] = False
    apply_press(press)  # does nothing for a visitor no longer signed in: the sign-in shows
    applied = st.session_state.get("refused") is False and "review_session" in st.session_state
    seen.outcome = "applied" if applied else "refused"


@for_the_signed_in
def apply_press(press: keys.KeyPress) -> None:
    session: ReviewSession | None = st.session_state.get("review_session")
    step = keys.step(press, screen_of(session))
    if step.refused:
        refuse(step.refused)
        return
    if step.keymap == "toggle":
        toggle_keymap()
    elif step.keymap == "close":
        st.session_state["keymap"] = False
    if step.mode is not None:
        set_mode(step.mode)
    if step.action is not None:
        act(step.action, press.item, *step.args)


KEYS_WIDGET = "review-keys"


def keyboard(session: ReviewSession | None) -> None:
    """The keyboard, mounted last: its acknowledgement reaches the browser once the page is
    drawn, and the browser sends the next press only then."""
    screen = screen_of(session)
    seen: keys.SeenPresses = st.session_state.setdefault("keys-seen", keys.SeenPresses())
    runs = st.session_state["keys-runs"] = st.session_state.get("keys-runs", 0) + 1
    data = {
        "item": screen.item,
        "keys": keys.screen_keys(screen),
        "scroll": screen.item is not None and screen.mode != "edit",
        "ack": seen.ack(),
        "run": runs,  # a new value each run, so the browser hears every acknowledgement
    }
    review_keys(data, on_key, key=KEYS_WIDGET)


def keymap() -> None:
    if not st.session_state.get("keymap"):
        return
    with st.container(border=True, key="keymap"):
        st.markdown("**Keys** (press ? again or esc to close)")
        rows = [*keys.VIEW_KEYS, *((n, f"reject as {r}") for n, r in keys.REASON_KEYS.items())]
        left, right = st.columns(2)
        half = (len(rows) + 1) // 2
        for column, part in ((left, rows[:half]), (right, rows[half:])):
            column.table({"key": [k for k, _ in part], "does": [d for _, d in part]})


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
    elif isinstance(original, PreferenceExample) and original.ranked is None:
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
        render.tools(item)
        for index, message in enumerate(item.messages):
            st.text_area(message.role, message.content, key=f"turn-{key}-{index}")
            if message.tool_calls:  # calls are not edited here: a wrong call is rejected
                render.turn(message.model_copy(update={"content": ""}))
        st.checkbox(
            "Also export a preference pair: the edited answer chosen, the original rejected",
            key=f"pair-{key}",
        )
    elif isinstance(item, PreferenceExample) and item.ranked is None:  # rankings: r, not e
        render.turns(item.prompt)
        st.text_area("chosen", item.chosen[-1].content, key=f"chosen-{key}")
        st.text_area("rejected", item.rejected[-1].content, key=f"rejected-{key}")
    left, right = st.columns(2)
    left.button(
        "Save and accept (ctrl+enter)", on_click=save_edit, shortcut="ctrl+enter", type="primary"
    )
    right.button("Cancel (esc)", on_click=set_mode, args=("view",), shortcut="escape")


def rank_bar(session: ReviewSession, item_id: str) -> None:
    """Rank mode: a button per answer (its number is its key), pressed best first."""
    lease = session.current
    payload = lease.item.payload if lease is not None else None
    count = len(payload.ranked or []) if isinstance(payload, PreferenceExample) else 0
    so_far = session.ranking_text() if session.ranking_for == item_id else "nothing yet"
    st.markdown(
        f"**Rank the {count} answers:** press their numbers, best first (the last places "
        f"itself; esc to go back). Ranked so far: {so_far}"
    )
    with st.container(horizontal=True, key="rank-bar", gap="xsmall"):
        for number in range(1, count + 1):
            st.button(
                f"{number} · Answer {number}",
                on_click=act,
                args=("rank", item_id, str(number)),
                key=f"rank-{number}",
            )
        st.button("esc · cancel", on_click=set_mode, args=("view",), key="rank-cancel")


def reject_reasons(item_id: str) -> None:
    st.markdown("**Reject because…** (press its number, or esc)")
    # Two rows of four, each reason in full beside its number: eight in one row were cut to
    # "1‥ 1" at 1400 px.
    cells = [column for _ in range(2) for column in st.columns(4)]
    for number, (cell, reason) in enumerate(zip(cells, REJECT_REASONS, strict=False), 1):
        cell.button(
            f"{number} · {reason}",
            on_click=act,
            args=("reject", item_id, reason),
            key=f"reason-{number}",
            width="stretch",
        )
    cells[len(REJECT_REASONS)].button(
        "esc · cancel", on_click=set_mode, args=("view",), key="reason-cancel", width="stretch"
    )


def actions(session: ReviewSession) -> None:
    mode = st.session_state.get("mode", "view")
    lease = session.current
    item_id = lease.item_id if lease is not None else None
    if mode == "reject" and item_id is not None:
        reject_reasons(item_id)
        return
    if mode == "edit":
        editor(session)
        return
    if mode == "rank" and item_id is not None and lease is not None:
        rank_bar(session, item_id)
        return
    pair = lease is not None and isinstance(lease.item.payload, PreferenceExample)
    ranked = pair and lease is not None and lease.item.payload.ranked is not None  # type: ignore[union-attr]
    pii = lease.item.scores.get("pii") if lease is not None else None
    if pii is not None and not pii.passed:
        # Unchecked, an accepted item with this flag stays out of every export.
        st.checkbox("PII/secret flag checked: safe to export", key="pii-cleared", value=False)
    # Each label names its key; the keys themselves come through the keyboard component.
    buttons: list[tuple[str, str, Callable[..., None], tuple[object, ...]]]
    if ranked:  # a ranking is ranked or rejected: accepting would keep an unchecked order
        buttons = [
            ("r · Rank", "r", set_mode, ("rank",)),
            ("x · Reject", "x", set_mode, ("reject",)),
        ]
    else:
        buttons = [
            ("a · Accept", "a", act, ("accept", item_id)),
            ("x · Reject", "x", set_mode, ("reject",)),
        ]
    if pair and not ranked:
        buttons.append(("w · Swap and accept", "w", act, ("swap", item_id)))
    if not ranked:
        buttons.append(("e · Edit", "e", set_mode, ("edit",)))
    buttons += [
        ("s · Skip", "s", act, ("skip", item_id)),
        ("u · Undo", "u", act, ("undo", item_id)),
        ("? · Keys", "?", toggle_keymap, ()),
    ]
    # Each button as wide as its label, wrapping to a second row rather than cutting one.
    with st.container(horizontal=True, key="action-bar", gap="xsmall"):
        for label, key, callback, args in buttons:
            st.button(
                label,
                on_click=callback,
                args=args,
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


def item_header(session: ReviewSession, run_id: str) -> None:
    assert session.current is not None
    item = session.current.item
    overlap = ""
    k, _rule = store().review_rule(run_id)
    if k > 1:  # blind review: how many voted, never how
        overlap = f" · vote {len(store().votes(item.id)) + 1} of {k}"
    made = f"by {item.provenance.model}" if item.provenance.model else item.provenance.source
    # Plain text: the model's name comes from the run's settings.
    st.text(f"item {item.id} · {item.kind.value} · {made} · priority {item.priority:.2f}{overlap}")


def page() -> None:
    signed_in_reviewer()
    run_id = st.session_state.get("run_id")
    if not run_id:
        st.info("No run to review yet: generate candidates first (gapfill generate).")
        return
    desk(run_id)


@st.fragment
@guarded
def desk(run_id: str) -> None:
    """The item, its signals and the keys. A key press reruns this alone, not the sidebar and
    the navigation around it: less for the server (one process for every reviewer) and the
    browser to redo for each decision. The visitor is checked again on each of its runs."""
    found = visitor()
    if found is None or found.name != st.session_state.get("reviewer_id"):
        st.rerun()  # the whole page: it shows the sign-in (and ends what the session held)
    reviewer = found.name
    session = review_session(run_id, reviewer)
    flash = st.session_state.pop("flash", None)
    if flash is not None:
        ok, message = flash
        (st.success if ok else st.warning)(message)
    lease = session.refresh()
    waiting, leased = store().queue_figures(run_id)
    last = st.session_state.pop("last", None)
    done = f" (last: {last[1]})" if last is not None else ""
    st.caption(f"run {run_id} · {session.decided} decided this session{done} · {waiting} waiting")
    keymap()
    if lease is None:
        st.session_state["mode"] = "view"
        st.info(nothing_left(waiting, leased))
        st.button("Check again", key="again")
        if session.history:
            st.button("u · Undo", on_click=act, args=("undo", None), key="key-u")
        keyboard(session)
        return
    item = lease.item
    gaps = run_gaps(run_id)
    accepted = store().counts(run_id).get(item.gap_id, {}).get("accepted", 0)
    config = run_config(run_id)
    main, side = st.columns([3, 2])
    with main:
        render.gap_line(item.gap_id, gaps, accepted)
        item_header(session, run_id)
        if st.session_state.get("mode") != "edit":
            # autoscroll off: a pane of chat turns would otherwise open at its end.
            with st.container(height=render.PANE_HEIGHT, key="item-pane", autoscroll=False):
                render.payload(item)
        actions(session)
    with side:
        st.markdown("**Signals**")
        settings = config.filters if config is not None else FilterSettings()
        texts = run_texts(config if config is not None else RunConfig(run_id=run_id))
        render.signals(item, settings, texts)
        with st.container(border=True):
            render.gap_panel(item.gap_id, gaps, accepted)
        render.provenance(item)
    keyboard(session)


page()
