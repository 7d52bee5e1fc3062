"""Showing candidates safely and readably: untrusted text is drawn as text, never HTML or Markdown.

- Prose goes through ``st.text`` (no Markdown, no HTML) inside a chat turn.
- Code blocks go through ``st.code`` (highlighted as text).
- Highlighted spans (a pair's word diff, a masked PII finding) go through the marked-text
  component, which builds text nodes with ``textContent``.

So a ``<script>``, an ``onerror`` handler, a ``javascript:`` link or a Markdown image in model
output stays inert: nothing runs, nothing is clickable, nothing is fetched. Labels and reasons
drawn with Markdown here are gapfill's own words and numbers, never candidate text.
"""

from __future__ import annotations

import orjson
import streamlit as st

from generator.code_blocks import blocks
from generator.filters.settings import FilterSettings
from generator.run_texts import RunTexts
from generator.schema import Candidate, Gap, Message, PreferenceExample, Score, SFTExample
from review_ui import signals as signal_rules
from review_ui.reading import (
    Mark,
    TooLongToDiff,
    changed_share,
    excerpts,
    masked_spans,
    word_diff,
)
from review_ui.widgets import marked_text

PANE_HEIGHT = 430  # px: the item scrolls inside it, the action bar below stays on screen
AVATARS = {
    "user": ":material/person:",
    "assistant": ":material/smart_toy:",
    "tool": ":material/build:",
}
BADGE = {"flagged": ":red-badge[flagged]", "borderline": ":orange-badge[borderline]"}
EVIDENCE_HEIGHT = 180
SHOWN_NEIGHBOURS = 3


def text_with_code(content: str) -> None:
    for block in blocks(content):
        if block.is_code:
            st.code(block.text, language=block.language or None, wrap_lines=True)
        else:
            st.text(block.text)


def turns(messages: list[Message]) -> None:
    for message in messages:
        with st.chat_message(message.role, avatar=AVATARS.get(message.role, ":material/settings:")):
            turn(message)


def turn(message: Message) -> None:
    """One turn's text; a tool result says which tool answered; each call is shown as the
    JSON it sends (``st.code``: text, whatever the model put in the arguments)."""
    if message.role == "tool" and message.name:
        st.caption(f"result of {message.name}")
    if message.content.strip():
        text_with_code(message.content)
    for call in message.tool_calls or []:
        st.caption(f"calls {call.function.name}")
        st.code(
            orjson.dumps(call.function.arguments, option=orjson.OPT_INDENT_2).decode(),
            language="json",
            wrap_lines=True,
        )


def tools(item: SFTExample) -> None:
    """The tools a conversation may call, folded: a reviewer checks a call against them."""
    if not item.tools:
        return
    names = ", ".join(tool.function.name for tool in item.tools)
    with st.expander(f"Tools it may call ({len(item.tools)}): {names}"):
        for tool in item.tools:
            st.code(
                orjson.dumps(tool.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode(),
                language="json",
                wrap_lines=True,
            )


def payload(candidate: Candidate) -> None:
    item = candidate.edited or candidate.payload
    if item is None:
        st.caption("raw output (did not parse)")
        st.text(candidate.raw or "")
        return
    if isinstance(item, PreferenceExample):
        pair(item)
        return
    tools(item)
    turns(item.messages)


def ranking(item: PreferenceExample) -> None:
    """The prompt, then each answer under its number, in the order held (generation's, until
    a reviewer ranks them): r, then the numbers best first."""
    turns(item.prompt)
    answers = item.ranked or []
    st.markdown(f"**{len(answers)} answers to rank** (r, then their numbers, best first)")
    for number, answer in enumerate(answers, 1):
        st.markdown(f"**Answer {number}**")
        turns(answer)


def pair(item: PreferenceExample) -> None:
    """The prompt, then chosen and rejected side by side, then what differs, word by word."""
    if item.ranked is not None:
        ranking(item)
        return
    turns(item.prompt)
    chosen, rejected = st.columns(2)
    with chosen:
        st.markdown("**Chosen** (proposed)")
        turns(item.chosen)
    with rejected:
        st.markdown("**Rejected** (proposed)")
        turns(item.rejected)
    try:
        diff = _diff(_answers(item.rejected), _answers(item.chosen))
    except TooLongToDiff as exc:
        st.caption(f"Too long to compare word by word ({exc}): compare the answers above.")
        return
    st.markdown(
        f"**What differs**, rejected → chosen · {changed_share(diff):.0%} changed · "
        ":red-background[removed] :green-background[added]"
    )
    marked_text(diff, key="pair-diff")


@st.cache_data(max_entries=256, show_spinner=False)
def _diff(before: str, after: str) -> list[tuple[str, Mark]]:
    """The word diff of a pair, made once per server, not at every rerun of its page."""
    return word_diff(before, after)


def _answers(messages: list[Message]) -> str:
    return "\n\n".join(m.content for m in messages)


# -- the gap ----------------------------------------------------------------------------------


def gap_line(gap_id: str, gaps: dict[str, Gap], accepted: int) -> None:
    found = gaps.get(gap_id)
    if found is None:
        st.text(f"Gap {gap_id}")
        return
    still = max(found.deficit - accepted, 0)
    st.text(f"Gap: {found.label} · still needed {still} of {found.target}")


def gap_panel(gap_id: str, gaps: dict[str, Gap], accepted: int) -> None:
    """What the gap needs: its name and description, three prompts it must cover, its deficit
    and the existing example nearest to it."""
    found = gaps.get(gap_id)
    if found is None:
        st.caption(f"Gap {gap_id}: no gap record (imported or manual items).")
        return
    still = max(found.deficit - accepted, 0)
    st.markdown(
        f"**Gap** · have {found.have} · target {found.target} · accepted {accepted} · "
        f"still needed **{still}**"
    )
    st.text(found.label if found.label == found.id else f"{found.label} ({found.id})")
    description = found.description
    if found.kind == "reference":  # "N uncovered reference prompts, e.g.: ..." lists them again
        description = description.split(", e.g.:")[0]
    if description and description != found.label:
        st.text(description)
    if found.examples:
        heading = "Prompts it must cover" if found.kind == "reference" else "Examples in it"
        st.markdown(f"**{heading}**")
        st.text("\n".join(f"• {example}" for example in found.examples[:3]))
    if found.nearest_existing:
        similarity = found.nearest_similarity
        shown = f" (cosine {similarity:.2f})" if similarity is not None else ""
        st.markdown(f"**Nearest existing example**{shown}")
        st.text(found.nearest_existing)


# -- the signals ------------------------------------------------------------------------------


def signals(candidate: Candidate, settings: FilterSettings, texts: RunTexts) -> None:
    """Flagged and borderline checks first, each with its reason and evidence as text; every
    clear pass on one line; the judge's verdict on its own."""
    if not candidate.scores:
        st.caption("not scored")
        return
    found = signal_rules.signals(candidate.scores, settings)
    for signal in found:
        if signal.state == "passed" or signal.name == "judge":
            continue
        with st.container(border=True):
            st.markdown(f"{BADGE[signal.state]} **{signal.name.replace('_', ' ')}**")
            st.text(signal.reason)
            evidence(candidate, signal.score, texts)
    line = signal_rules.passed_line([s for s in found if s.name != "judge"])
    if line:
        st.caption(line)
    judge(candidate.scores.get("judge"))


def judge(score: Score | None) -> None:
    if score is None:
        st.caption("No judge ran on this run: nothing here checks facts. Doubt confident claims.")
        return
    badge = ":green-badge[judge]" if score.passed else ":red-badge[judge: flagged]"
    with st.container(border=True):
        st.markdown(f"{badge} **{score.value:.2f}**" + _judge_criteria(score))
        st.text(score.reason)


def _judge_criteria(score: Score) -> str:
    parts = [
        f"{name} {score.evidence[name]}"
        for name in ("helpfulness", "correctness", "safety")
        if isinstance(score.evidence.get(name), int | float)
    ]
    if "orders" in score.evidence and score.evidence.get("position_bias"):
        parts.append("position-biased")
    return " · " + " · ".join(parts) if parts else ""


def evidence(candidate: Candidate, score: Score, texts: RunTexts) -> None:
    """The text a check matched, beside the candidate: the eval item for contamination, the
    neighbours for duplicates, the masked finding in place for PII."""
    data = score.evidence
    if score.filter == "contamination" and isinstance(data.get("eval_item"), str):
        _quoted(f"Eval item {data['eval_item']}", texts.eval_item(data["eval_item"]))
    elif score.filter in ("exact_duplicate", "near_duplicate") and isinstance(
        data.get("match"), str
    ):
        _quoted(f"Matches {data['match']}", texts.neighbour(data["match"]))
    elif score.filter == "semantic_duplicate":
        for near in list(data.get("nearest") or [])[:SHOWN_NEIGHBOURS]:
            if isinstance(near, dict) and isinstance(near.get("id"), str):
                similarity = near.get("similarity")
                how = f" (cosine {similarity:.2f})" if isinstance(similarity, float) else ""
                _quoted(f"Neighbour {near['id']}{how}", texts.neighbour(near["id"]))
    elif score.filter == "pii" and not score.passed:
        _masked_in_place(candidate)
    elif score.filter == "code_execution" and data.get("ran"):
        output = [
            f"{stream}:\n{data[stream]}"
            for stream in ("stderr", "stdout")
            if isinstance(data.get(stream), str) and data[stream].strip()
        ]
        _quoted(
            f"The code's output (isolation: {data.get('isolation', 'unknown')})",
            "\n".join(output) or "(no output)",
        )
        if candidate.provenance.code_tests:  # not in the answer: say what else ran
            _quoted("Tests the backend wrote (run after the code)", candidate.provenance.code_tests)


def _quoted(title: str, text: str | None) -> None:
    st.text(title)  # ids come from data files: text, not Markdown
    with st.container(height=EVIDENCE_HEIGHT, border=True):
        st.text(text if text is not None else "(its text is not available to this UI)")


def _masked_in_place(candidate: Candidate) -> None:
    from generator.screening import screened_text

    st.text("Where, masked:")
    with st.container(height=EVIDENCE_HEIGHT, border=True):
        marked_text(_masked(candidate, screened_text(candidate)), key=f"pii-{candidate.id}")


@st.cache_data(max_entries=256, show_spinner=False, hash_funcs={Candidate: lambda c: c.id})
def _masked(candidate: Candidate, text: str) -> list[tuple[str, Mark]]:
    """The findings of the screen, masked in place: made once per server for each content
    (the screen of a long item takes a good part of a second)."""
    from generator.screening import findings

    spans = [(value, f"[{kind}: {masked}]") for kind, value, masked in findings(candidate)]
    return excerpts(masked_spans(text, spans))


# -- provenance -------------------------------------------------------------------------------


def provenance(candidate: Candidate) -> None:
    """How the item was made, on one line; the whole record only when asked for (a JSON tree
    on every item cost the browser a fifth of each decision)."""
    made = candidate.provenance
    parts = [
        f"{made.source}",
        f"backend {made.backend}" if made.backend else "",
        f"model {made.model}" if made.model else "",
        f"template {made.template_name}" if made.template_name else "",
        f"finish {made.finish_reason}" if made.finish_reason else "",
    ]
    st.text("Provenance: " + " · ".join(p for p in parts if p))
    if st.toggle("Whole provenance record", key=f"provenance-{candidate.id}"):
        st.json(made.model_dump(mode="json", exclude={"rendered_prompt"}))
