"""Which items may leave: accepted by humans (after the run's overlap rule), of the asked kind,
and not carrying a PII/secret flag that no reviewer cleared.

The standing human decisions come from replaying the decision log, so the provenance of each
item names the reviewers whose votes stand (an undone vote does not).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from generator.schema import (
    PII_CLEARED_TAG,
    PREFERENCE_PAIR_TAG,
    Candidate,
    CandidateKind,
    CandidateStatus,
    Decision,
)
from generator.store import Store

HUMAN_VERDICTS = {"accept", "edit", "reject", "bulk_reject"}
PII_FILTER = "pii"
_CHUNK = 5000


@dataclass(frozen=True)
class Approved:
    """An accepted item and the human decisions that stand on it."""

    candidate: Candidate
    decisions: tuple[Decision, ...]

    @property
    def reviewers(self) -> list[str]:
        return sorted({d.reviewer for d in self.decisions if d.verdict in ("accept", "edit")})


@dataclass
class Selection:
    approved: list[Approved] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason)


def standing_decisions(decisions: Iterable[Decision]) -> dict[str, list[Decision]]:
    """item -> its human decisions, in log order, with undone ones removed."""
    standing: dict[str, list[Decision]] = defaultdict(list)
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


def _pii_cleared(decisions: Iterable[Decision]) -> bool:
    return any(
        PII_CLEARED_TAG in d.reason_tags for d in decisions if d.verdict in ("accept", "edit")
    )


def select(store: Store, run_ids: list[str], kind: CandidateKind) -> Selection:
    """The accepted items of ``kind`` in the runs that may be exported, sorted by id.

    SFT items a reviewer edited into a preference pair also count for a preference export (the
    pair is made from them); see ``rows``.
    """
    selection = Selection()
    for run_id in run_ids:
        standing = standing_decisions(logged.decision for logged in store.decisions(run_id))
        ids = sorted(store.ids(run_id, CandidateStatus.ACCEPTED))
        for start in range(0, len(ids), _CHUNK):
            for item in store.get_many(ids[start : start + _CHUNK]):
                decisions = tuple(standing.get(item.id, ()))
                if item.status is not CandidateStatus.ACCEPTED:  # changed since listed
                    continue
                if not _wanted(item, decisions, kind):
                    continue
                pii = item.scores.get(PII_FILTER)
                if pii is not None and not pii.passed and not _pii_cleared(decisions):
                    selection.refused.append(
                        (
                            item.id,
                            f"PII/secret flag not cleared by a reviewer ({pii.reason}); accept it "
                            f"again with the {PII_CLEARED_TAG!r} tag to export it",
                        )
                    )
                    continue
                selection.approved.append(Approved(item, decisions))
    selection.approved.sort(key=lambda a: a.candidate.id)
    return selection


def _wanted(item: Candidate, decisions: tuple[Decision, ...], kind: CandidateKind) -> bool:
    if item.kind is kind:
        return True
    # An SFT item whose edit a reviewer marked as a preference pair feeds preference exports.
    return kind is CandidateKind.PREFERENCE and any(
        PREFERENCE_PAIR_TAG in d.reason_tags for d in decisions if d.verdict == "edit"
    )
