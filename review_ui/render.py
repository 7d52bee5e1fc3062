"""Showing candidates safely: untrusted text is drawn as plain text, never HTML or Markdown.

``st.text`` shows a string as it is (no Markdown, no HTML), and ``st.json`` draws evidence as a
data tree, so a ``<script>``, an ``onerror`` handler, a ``javascript:`` link or a Markdown image
in model output stays inert: nothing runs, nothing is clickable, nothing is fetched.
"""

from __future__ import annotations

import streamlit as st

from generator.schema import Candidate, Gap, Message, PreferenceExample, Score


def turns(messages: list[Message]) -> None:
    for message in messages:
        st.caption(message.role)
        st.text(message.content)


def payload(candidate: Candidate) -> None:
    item = candidate.edited or candidate.payload
    if item is None:
        st.caption("raw output (did not parse)")
        st.text(candidate.raw or "")
        return
    if isinstance(item, PreferenceExample):
        turns(item.prompt)
        chosen, rejected = st.columns(2)
        with chosen:
            st.markdown("**Chosen** (proposed)")
            turns(item.chosen)
        with rejected:
            st.markdown("**Rejected** (proposed)")
            turns(item.rejected)
        return
    turns(item.messages)


def gap(gap_id: str, gaps: dict[str, Gap]) -> None:
    found = gaps.get(gap_id)
    if found is None:
        st.caption(f"gap {gap_id}")
        return
    st.caption(f"gap {found.id}: have {found.have} of {found.target}")
    st.text(found.label)


def scores(items: dict[str, Score]) -> None:
    if not items:
        st.caption("not scored")
        return
    for name, score in sorted(items.items(), key=lambda kv: kv[1].passed):
        mark = "pass" if score.passed else "FLAG"
        st.text(f"[{mark}] {name} {score.value:.3g}: {score.reason}")
        # The judge's rendered prompts are provenance (the item's record has them), not evidence
        # a reviewer decides on: they would bury the scores under the item's own text.
        evidence = {k: v for k, v in score.evidence.items() if k != "templates"}
        if evidence:
            st.json(evidence, expanded=not score.passed)
