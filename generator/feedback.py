"""What review taught about each gap, for the next round's generation prompts.

Per gap, from the run's human decisions as they stand (undone ones removed; the pre-screen's
own decisions left out: a model does not teach the generator):

- **seeds**: the requests of accepted items (the reviewer's edit where they edited), the next
  round's few-shot examples, before the gap's own examples;
- **an avoid-list**, rendered from ``prompts/avoid.jinja`` (a template, never an LLM): one line
  per rejection reason that came up, with its count, and the phrases reviewers' edits cut from
  answers most often.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from generator.export.selection import standing_decisions
from generator.prompts import AVOID_TEMPLATE, PromptTemplates
from generator.schema import (
    AUTO_REVIEWER,
    CandidateStatus,
    Gap,
    Message,
    PreferenceExample,
    SFTExample,
)
from generator.store import Store

MAX_SEEDS = 20  # accepted requests kept per gap (the newest)
MAX_CUT = 3  # phrases cut by edits, per gap
MIN_CUT_WORDS = 3  # a cut shorter than this is a word choice, not a habit to avoid
MAX_CUT_WORDS = 12


@dataclass
class GapFeedback:
    seeds: list[str] = field(default_factory=list)  # accepted requests, newest first
    reasons: Counter[str] = field(default_factory=Counter)  # rejection reason -> count
    cut: Counter[str] = field(default_factory=Counter)  # phrase cut by edits -> count
    decided: int = 0  # human decisions that stand

    def after(self, older: GapFeedback) -> GapFeedback:
        """This round's feedback with an earlier round's behind it: the newer seeds first."""
        return GapFeedback(
            seeds=list(dict.fromkeys([*self.seeds, *older.seeds]))[:MAX_SEEDS],
            reasons=self.reasons + older.reasons,
            cut=self.cut + older.cut,
            decided=self.decided + older.decided,
        )

    def avoid(self, gap: Gap, templates: PromptTemplates) -> list[str]:
        """The avoid-list lines for the gap's next round (none where nothing was turned down)."""
        text = templates.render(
            AVOID_TEMPLATE,
            gap=gap,
            reasons=dict(self.reasons),
            cut=[phrase for phrase, _ in self.cut.most_common(MAX_CUT)],
        )
        return [line for line in text.splitlines() if line.strip()]


def run_feedback(store: Store, run_id: str) -> dict[str, GapFeedback]:
    """Each gap's feedback from the run's standing human decisions."""
    records = [r for r in store.decision_records(run_id) if r.reviewer != AUTO_REVIEWER]
    standing = standing_decisions(records)
    items = {
        raw["id"]: raw
        for raw in store.get_many_raw(sorted(i for i, found in standing.items() if found))
    }
    found: dict[str, GapFeedback] = defaultdict(GapFeedback)
    for item_id, decisions in standing.items():
        raw = items.get(item_id)
        if raw is None or not decisions:
            continue
        gap = found[raw["gap_id"]]
        gap.decided += len(decisions)
        for decision in decisions:
            if decision.verdict in ("reject", "bulk_reject"):
                gap.reasons[decision.reason_tags[0] if decision.reason_tags else "other"] += 1
        if raw["status"] == CandidateStatus.ACCEPTED.value:
            request = _request(raw.get("edited") or raw.get("payload"))
            if request:
                gap.seeds.append(request)
            gap.cut.update(_cut_phrases(raw))
    for gap in found.values():
        gap.seeds = list(dict.fromkeys(reversed(gap.seeds)))[:MAX_SEEDS]  # newest first, once
    return dict(found)


def _request(payload: dict[str, Any] | None) -> str:
    """The user's request of an SFT item or a pair: its last user turn."""
    if not payload:
        return ""
    turns = payload.get("messages") or payload.get("prompt") or []
    users = [turn["content"] for turn in turns if turn.get("role") == "user"]
    return str(users[-1]).strip() if users else ""


def _cut_phrases(raw: dict[str, Any]) -> list[str]:
    """Runs of 3 to 12 words an edit removed from the answers (a swap removes nothing)."""
    from rapidfuzz.distance import Indel

    edited, original = raw.get("edited"), raw.get("payload")
    if not edited or not original:
        return []
    before, after = _answers(original).split(), _answers(edited).split()
    if sorted(before) == sorted(after):
        return []  # the same words: a swap, or a reordering
    phrases = []
    for op in Indel.opcodes(before, after):
        removed = before[op.src_start : op.src_end]
        if op.tag in ("delete", "replace") and MIN_CUT_WORDS <= len(removed) <= MAX_CUT_WORDS:
            # One line, no double quotes: it is quoted inside the next round's prompt.
            phrases.append(" ".join(removed).replace('"', "'"))
    return phrases


def _answers(payload: dict[str, Any]) -> str:
    model: type[SFTExample] | type[PreferenceExample]
    model = PreferenceExample if "chosen" in payload else SFTExample
    example = model.model_validate(payload)
    messages: list[Message] = (
        example.chosen if isinstance(example, PreferenceExample) else example.messages
    )
    return "\n".join(m.text for m in messages if m.role == "assistant")
