"""Which items may leave: accepted by humans (after the run's overlap rule), of the asked kind,
(items the pre-screen model accepted alone only when asked for, and marked),
screened for PII/secrets on the content they hold now, and not carrying a PII/secret flag that no
reviewer cleared.

The standing human decisions come from replaying the decision log, so the provenance of each
item names the reviewers whose votes stand (an undone vote does not). Items are read as the JSON
they were stored as (validated when stored): at 100,000 items, building models would cost more
than the rest of the export.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from generator.schema import (
    AUTO_REVIEWER,
    PII_CLEARED_TAG,
    PREFERENCE_PAIR_TAG,
    CandidateKind,
    CandidateStatus,
    DecisionRecord,
)
from generator.screening import PII_FILTER, original_flag, pii_score_is_current
from generator.store import Store

HUMAN_VERDICTS = {"accept", "edit", "reject", "bulk_reject", "adjudicate"}
_CHUNK = 5000


class Approved(NamedTuple):
    """An accepted item (stored JSON) and the human decisions that stand on it."""

    item: dict[str, Any]
    decisions: tuple[DecisionRecord, ...]

    @property
    def id(self) -> str:
        return str(self.item["id"])

    @property
    def auto_decided(self) -> bool:
        """Accepted by the pre-screen model alone: no human's accepting decision stands."""
        accepting = _accepting(self.decisions)
        return bool(accepting) and all(d.reviewer == AUTO_REVIEWER for d in accepting)

    @property
    def reviewers(self) -> list[str]:
        accepting = _accepting(self.decisions)
        if len(accepting) == 1:  # nearly always
            return [accepting[0].reviewer]
        return sorted({d.reviewer for d in accepting})


def standing_decisions(decisions: Iterable[DecisionRecord]) -> dict[str, list[DecisionRecord]]:
    """item -> its human decisions, in log order, with undone ones removed."""
    standing: dict[str, list[DecisionRecord]] = defaultdict(list)
    for decision in decisions:
        if decision.verdict in HUMAN_VERDICTS:
            standing[decision.item_id].append(decision)
        elif decision.verdict == "undo":
            mine = standing[decision.item_id]
            for index in range(len(mine) - 1, -1, -1):
                if mine[index].reviewer == decision.reviewer:
                    del mine[index]
                    break
    return standing


def model_only_accepted(store: Store, run_id: str) -> Counter[str]:
    """gap -> the run's items accepted by the pre-screen model alone (left out of exports by
    default, so they fill no gap until someone asks for them)."""
    standing = standing_decisions(store.decision_records(run_id))
    ids = [item for item, found in standing.items() if Approved({}, tuple(found)).auto_decided]
    accepted = CandidateStatus.ACCEPTED.value
    return Counter(raw["gap_id"] for raw in store.get_many_raw(ids) if raw["status"] == accepted)


def _accepting(decisions: Iterable[DecisionRecord]) -> list[DecisionRecord]:
    """The decisions that accepted: votes, edits, and an admin's adjudication to accept."""
    return [
        d
        for d in decisions
        if d.verdict in ("accept", "edit")
        or (d.verdict == "adjudicate" and "accept" in d.reason_tags)
    ]


def _wanted(
    item: dict[str, Any], decisions: tuple[DecisionRecord, ...], kind: CandidateKind
) -> bool:
    if item["kind"] == kind.value:
        return True
    # An SFT item whose edit a reviewer marked as a preference pair feeds preference exports.
    return kind is CandidateKind.PREFERENCE and any(
        PREFERENCE_PAIR_TAG in d.reason_tags for d in decisions if d.verdict == "edit"
    )


def _cleared(decisions: tuple[DecisionRecord, ...]) -> bool:
    """Whether a reviewer cleared the PII/secret flag of the content the item holds now.

    A clearance speaks for the text its reviewer saw: an edit after it replaces that text (and
    its screen), so only the last standing edit, or an accept after it, can clear the flag.
    """
    accepting = _accepting(decisions)
    edits = [index for index, d in enumerate(accepting) if d.verdict == "edit"]
    since = edits[-1] if edits else 0
    return any(PII_CLEARED_TAG in d.reason_tags for d in accepting[since:])


def _pii_refusal(
    item: dict[str, Any], decisions: tuple[DecisionRecord, ...], kind: CandidateKind
) -> str | None:
    """Why the item may not leave for want of a PII/secret screen (None: it may).

    Nothing unscreened leaves: an item needs a ``pii`` score made on the content it holds now
    (an edit after the screen makes the score stale), and a failed one needs a reviewer's
    clearance.
    """
    pii = item.get("scores", {}).get(PII_FILTER)
    if pii is None:
        return "never screened for PII/secrets (stored before screening?); run gapfill rescreen"
    if not pii_score_is_current(item):
        return "changed since its PII/secret screen; run gapfill rescreen to screen it again"
    if not pii["passed"] and not _cleared(decisions):
        return (
            f"PII/secret flag not cleared by a reviewer ({pii['reason']}); accept it again with "
            f"the {PII_CLEARED_TAG!r} tag to export it"
        )
    if _pair_from_edit(item, kind) and not _cleared(decisions):
        flag = original_flag(item)
        if flag is not None:
            return (
                f"the original answer, the pair's rejected side, holds PII/secrets ({flag}); "
                f"accept the edit with the {PII_CLEARED_TAG!r} tag to export it"
            )
    return None


def _pair_from_edit(item: dict[str, Any], kind: CandidateKind) -> bool:
    """Whether the export writes this item as a pair of its edit (chosen) and original."""
    return kind is CandidateKind.PREFERENCE and item["kind"] == CandidateKind.SFT.value


class Selection:
    """The accepted items of ``kind`` in the runs that may be exported.

    Read as it is iterated, chunk by chunk (each run's items in id order), so the caller works
    on each item while it is fresh from the store; ``refused`` (items with no current PII/secret
    screen, or a flag no reviewer cleared) and ``decisions`` (the runs' whole logs) are complete
    once an iteration has ended. SFT items a reviewer edited into a preference pair also count
    for a preference export (the pair is made from them; see ``rows``).
    """

    def __init__(
        self,
        store: Store,
        run_ids: list[str],
        kind: CandidateKind,
        *,
        include_auto_decided: bool = False,
    ) -> None:
        self.store = store
        self.run_ids = run_ids
        self.kind = kind
        self.include_auto_decided = include_auto_decided
        self.refused: list[tuple[str, str]] = []  # (item id, reason)
        self.auto_left_out: list[str] = []  # accepted by the pre-screen alone, not asked for
        self.decisions: list[DecisionRecord] = []

    def __iter__(self) -> Iterator[Approved]:
        self.refused, self.auto_left_out, self.decisions = [], [], []
        accepted, kind = CandidateStatus.ACCEPTED.value, self.kind
        for run_id in self.run_ids:
            log = self.store.decision_records(run_id)
            self.decisions.extend(log)
            standing = standing_decisions(log)
            ids = sorted(self.store.ids(run_id, CandidateStatus.ACCEPTED))
            for chunk in self.store.iter_raw(ids, _CHUNK):
                for item in chunk:
                    if item["status"] != accepted:  # changed since listed
                        continue
                    decisions = tuple(standing.get(item["id"], ()))
                    if item["kind"] != kind.value and not _wanted(item, decisions, kind):
                        continue
                    refusal = _pii_refusal(item, decisions, kind)
                    if refusal is not None:
                        self.refused.append((item["id"], refusal))
                        continue
                    approved = Approved(item, decisions)
                    if approved.auto_decided and not self.include_auto_decided:
                        self.auto_left_out.append(item["id"])
                        continue
                    yield approved
