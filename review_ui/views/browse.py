"""Browse a run's items: filter, search, and (admins only) act on a selection in bulk."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from generator.errors import StoreError
from generator.filters.base import full_text
from generator.schema import Candidate, CandidateStatus
from review_ui.resources import store
from review_ui.session import REJECT_REASONS
from review_ui.signin import is_admin, signed_in_reviewer

LIMIT = 5000  # items shown at most; narrow with the filters past that


def items(run_id: str) -> list[Candidate]:
    ids: list[str] = []
    for status in CandidateStatus:
        ids += list(store().ids(run_id, status))
    return store().get_many(ids[:LIMIT])


def table(run_id: str, found: list[Candidate]) -> pd.DataFrame:
    reviewers: dict[str, str] = {}
    for logged in store().decisions(run_id):
        reviewers[logged.decision.item_id] = logged.decision.reviewer
    return pd.DataFrame(
        [
            {
                "id": c.id,
                "gap": c.gap_id,
                "status": c.status.value,
                "priority": round(c.priority, 3),
                "flags": ", ".join(sorted(n for n, s in c.scores.items() if not s.passed)),
                "reviewer": reviewers.get(c.id, ""),
                "text": full_text(c)[:300],
            }
            for c in found
        ],
        columns=["id", "gap", "status", "priority", "flags", "reviewer", "text"],
    )


def narrow(frame: pd.DataFrame) -> pd.DataFrame:
    left, middle, right = st.columns(3)
    statuses = left.multiselect("Status", sorted(frame["status"].unique()))
    gaps = middle.multiselect("Gap", sorted(frame["gap"].unique()))
    names = sorted({f for flags in frame["flags"] for f in flags.split(", ") if f})
    flags = right.multiselect("Filter flag", names)
    left, middle, right = st.columns(3)
    reviewers = left.multiselect("Reviewer", sorted(r for r in frame["reviewer"].unique() if r))
    search = middle.text_input("Search text")
    low, high = (
        (float(frame["priority"].min()), float(frame["priority"].max()))
        if len(frame)
        else (0.0, 0.0)
    )
    span = right.slider("Priority", low, max(high, low + 0.001), (low, max(high, low + 0.001)))
    shown = frame
    if statuses:
        shown = shown[shown["status"].isin(statuses)]
    if gaps:
        shown = shown[shown["gap"].isin(gaps)]
    if flags:
        shown = shown[shown["flags"].apply(lambda text: any(f in text.split(", ") for f in flags))]
    if reviewers:
        shown = shown[shown["reviewer"].isin(reviewers)]
    if search:
        shown = shown[shown["text"].str.contains(search, case=False, regex=False)]
    return shown[(shown["priority"] >= span[0]) & (shown["priority"] <= span[1])]


def admin_clicked(button: bool) -> bool:
    """Whether a bulk button was clicked by someone who is an admin *now*: the buttons are drawn
    for admins only, and the role is read again when one fires (a demoted admin's old page)."""
    if button and not is_admin():
        st.error("Bulk actions are for admins only.")
        return False
    return button


def bulk(run_id: str, reviewer: str, selected: list[str], found: list[Candidate]) -> None:
    st.caption(f"{len(selected)} selected")
    left, middle, right = st.columns(3)
    if admin_clicked(left.button("Send back to review", disabled=not selected)):
        done = sum(_try(lambda i: store().reopen(i, reviewer), i) for i in selected)
        st.success(f"{done} of {len(selected)} sent back to review")
    reason = middle.selectbox("Reason", REJECT_REASONS, key="bulk-reason")
    if admin_clicked(middle.button("Reject selected", disabled=not selected)):
        done = sum(_try(lambda i: store().bulk_reject(i, reviewer, [reason]), i) for i in selected)
        st.success(f"{done} of {len(selected)} rejected")
    near = right.button("Reject all near-duplicates of the selected", disabled=not selected)
    if admin_clicked(near):
        targets = set(selected)
        copies = [
            c.id
            for c in found
            if any(s.evidence.get("match") in targets for s in c.scores.values())
            or any(
                n.get("id") in targets and float(str(n.get("similarity", 0))) >= 0.92
                for n in _nearest(c)
            )
        ]
        done = sum(
            _try(lambda i: store().bulk_reject(i, reviewer, ["duplicate"]), i)
            for i in copies
            if i not in targets
        )
        st.success(f"{done} near-duplicates rejected")


def _nearest(item: Candidate) -> list[dict[str, object]]:
    semantic = item.scores.get("semantic_duplicate")
    return list(semantic.evidence.get("nearest", [])) if semantic else []


def _try(action: object, item_id: str) -> bool:
    try:
        action(item_id)  # type: ignore[operator]
    except StoreError:
        return False
    return True


def page() -> None:
    reviewer = signed_in_reviewer()
    run_id = st.session_state.get("run_id")
    if not run_id:
        st.info("No run yet.")
        return
    found = items(run_id)
    frame = table(run_id, found)
    shown = narrow(frame)
    if not is_admin():  # reviewers look; bulk actions are an admin's
        st.dataframe(shown, hide_index=True, key="items")
        return
    event = st.dataframe(
        shown, on_select="rerun", selection_mode="multi-row", hide_index=True, key="items"
    )
    rows = event.selection.rows if event is not None else []
    selected = [str(shown.iloc[r]["id"]) for r in rows]
    bulk(run_id, reviewer, selected, found)


page()
