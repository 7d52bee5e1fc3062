"""The pre-screen at work on a run: retrained from the run's human decisions, it reorders the
queue and, where allowed and trusted, decides items itself, leaving a random audit share of
those to humans.

Every retraining (``retrain``; the ``prescreen`` job on the scoring queue, and
``gapfill prescreen``):

1. learns from the humans' votes in the decision log: the pre-screen's own decisions are never
   its teacher;
2. measures the humans' own agreement on the run's items with two or more votes (overlap), or
   takes ``human_agreement`` from the campaign where the run has no overlap; without either,
   auto-decisions stay off;
3. reorders the items waiting in the queue by expected value (``PreScreen.priorities``);
4. with ``auto_decide``, decides the waiting items it is confident of, in gaps it has learnt
   enough of, in a run without overlap (under overlap every item gets its k human votes). Each
   item is drawn once: with probability ``audit_share`` it is left to humans and its would-be
   label kept (``run:<run>:audit``); otherwise the model decides it as ``model:prescreen``
   with the ``auto_decided`` tag. As humans decide audit items, the model's agreement with
   them is kept up to date; once it falls below the humans' own agreement (30 audits or more),
   auto-decisions turn off, with the reason.

The export leaves auto-decided items out unless asked (``--include-auto-decided``), and marks
them in provenance, the manifest's counts and the card when it takes them.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from generator.agreement import votes_by_item
from generator.calibration import calibrate, majority
from generator.embeddings import Embedder
from generator.errors import StoreError
from generator.prescreen import MIN_AUTO_ITEMS, PreScreen, fit
from generator.schema import (
    AUTO_REVIEWER,
    AUTO_TAG,
    Candidate,
    CandidateStatus,
    PreferenceExample,
    PreScreenSettings,
    utcnow,
)
from generator.store import Store

logger = logging.getLogger(__name__)


class AuditFigures(BaseModel):
    drawn: int  # items left to humans for the audit share
    decided: int  # of those, decided by humans so far
    agreement: float | None  # the model's would-be label against theirs


class PreScreenStatus(BaseModel):
    """What the last retraining did and why: shown on the Overview page and by the command."""

    run_id: str
    at: datetime = Field(default_factory=utcnow)
    human_decisions: int = 0  # in the log when it ran
    settled: int = 0  # accepted and rejected items then: the next retraining counts from here
    trained_on: int = 0
    human_agreement: float | None = None
    human_agreement_source: str = ""
    threshold: float | None = None
    cross_validated_agreement: float | None = None
    reordered: int = 0
    auto_decided: int = 0
    audit: AuditFigures = Field(
        default_factory=lambda: AuditFigures(drawn=0, decided=0, agreement=None)
    )
    auto_on: bool = False
    message: str = ""


def retrain(
    store: Store,
    run_id: str,
    embedder: Embedder,
    settings: PreScreenSettings,
    *,
    seed: int | None = None,
) -> PreScreenStatus:
    """Retrain the run's pre-screen and apply it (see the module docstring)."""
    status = PreScreenStatus(run_id=run_id)
    log = [entry.decision for entry in store.decisions(run_id)]
    human = [d for d in log if d.reviewer != AUTO_REVIEWER]
    status.human_decisions = len(human)
    votes = votes_by_item(human)
    audit = store.audit(run_id)
    status.audit = _audit_figures(audit, votes)
    labelled = {item: label for item, by in votes.items() if (label := majority(list(by.values())))}
    if len(labelled) < settings.min_decisions:
        status.message = (
            f"{len(labelled)} items decided by humans; the pre-screen first trains at "
            f"{settings.min_decisions}"
        )
        return _saved(store, status)
    taught = store.get_many(list(labelled))
    yardstick, source = _yardstick(votes, settings)
    status.human_agreement, status.human_agreement_source = yardstick, source
    try:
        model = fit(taught, [labelled[c.id] for c in taught], embedder, yardstick)
    except ValueError as exc:
        status.message = str(exc)
        return _saved(store, status)
    status.trained_on = model.trained_on
    status.threshold = model.threshold
    status.cross_validated_agreement = model.cross_validated_agreement
    reason = _auto_off_reason(store, run_id, settings, model, status)
    status.auto_on = not reason
    waiting = _waiting(store, run_id)
    if not waiting:
        status.message = reason or "nothing waiting in the queue"
        return _saved(store, status)
    features = model.space.describe(waiting, embedder)
    if settings.order:
        deficits = {gap.id: gap.deficit for gap in store.gaps(run_id)}
        priorities = model.priorities(features, [deficits.get(c.gap_id, 0) for c in waiting])
        status.reordered = store.reprioritise(
            run_id, {c.id: float(p) for c, p in zip(waiting, priorities, strict=True)}
        )
    if reason:
        status.message = reason
        return _saved(store, status)
    draw = random.Random(seed)
    drawn: dict[str, str] = {}
    chosen: list[tuple[Candidate, str, float]] = []
    for candidate, (label, confidence) in zip(waiting, model.decide(features), strict=True):
        if candidate.id in audit or confidence < (model.threshold or 1.0):
            continue
        if not model.may_decide(candidate):
            continue
        if draw.random() < settings.audit_share:
            drawn[candidate.id] = label
        else:
            chosen.append((candidate, label, confidence))
    # The draws are stored before any decision, and the store refuses the model an item of the
    # audit share: a retraining that fails half way, or one running beside it, cannot decide one.
    store.add_audit(run_id, drawn)
    audit = store.audit(run_id)
    for candidate, label, confidence in chosen:
        if candidate.id not in audit and _decide(store, candidate, label, confidence):
            status.auto_decided += 1
    status.audit = _audit_figures(store.audit(run_id), votes)
    status.message = (
        f"decided {status.auto_decided}; {len(drawn)} more left to humans for the audit"
    )
    return _saved(store, status)


def due(store: Store, run_id: str, settings: PreScreenSettings) -> bool:
    """Whether enough items were settled since the last retraining to retrain now: O(1) reads,
    cheap enough to ask after every decision."""
    now = settled(store, run_id)
    raw = store.prescreen_status(run_id)
    previous = PreScreenStatus.model_validate_json(raw) if raw else None
    last = previous.settled if previous is not None and previous.trained_on else 0
    return now >= settings.min_decisions and now - last >= settings.retrain_every


def settled(store: Store, run_id: str) -> int:
    return store.count(run_id, CandidateStatus.ACCEPTED) + store.count(
        run_id, CandidateStatus.REJECTED
    )


def _yardstick(
    votes: dict[str, dict[str, str]], settings: PreScreenSettings
) -> tuple[float | None, str]:
    measured = calibrate(votes, {}).humans
    if measured.agreement is not None and measured.pairs >= MIN_AUTO_ITEMS:
        return measured.agreement, f"measured on {measured.items} items with overlap"
    if settings.human_agreement is not None:
        return settings.human_agreement, "from the campaign (review.prescreen.human_agreement)"
    return None, ""


def _auto_off_reason(
    store: Store,
    run_id: str,
    settings: PreScreenSettings,
    model: PreScreen,
    status: PreScreenStatus,
) -> str:
    """Why the model may not decide anything now ('' where it may)."""
    if not settings.auto_decide:
        return "auto-decisions are not asked for (review.prescreen.auto_decide)"
    if store.review_rule(run_id)[0] > 1:
        return "the run has overlap: every item gets its k human votes, none is decided by a model"
    if status.human_agreement is None:
        return (
            "no human yardstick: the run has too few items with two votes and the campaign sets "
            "no review.prescreen.human_agreement: auto-decisions are off"
        )
    # The audit before the threshold: it is measured on live human decisions, the threshold
    # only on held-out ones, so where both say no, the audit is the reason that matters.
    audit = status.audit
    if (
        audit.decided >= MIN_AUTO_ITEMS
        and audit.agreement is not None
        and audit.agreement < status.human_agreement
    ):
        return (
            f"its agreement with humans on the audit share fell to {audit.agreement:.0%}, under "
            f"the humans' own {status.human_agreement:.0%}: auto-decisions are off"
        )
    if model.threshold is None:
        return model.off_reason
    return ""


def _decide(store: Store, candidate: Candidate, label: str, confidence: float) -> bool:
    """The model's decision, through the same lease and log as a reviewer's."""
    note = f"pre-screen, confidence {confidence:.2f}"
    try:
        lease = store.claim_item(candidate.id, AUTO_REVIEWER)
        if label == "swap" and isinstance(lease.item.payload, PreferenceExample):
            store.decide(
                lease.item_id,
                AUTO_REVIEWER,
                "edit",
                lease.version,
                reason_tags=["swapped", AUTO_TAG],
                note=note,
                edited_payload=lease.item.payload.swapped(),
            )
        else:
            verdict: Literal["accept", "reject"] = "accept" if label == "accept" else "reject"
            store.decide(
                lease.item_id,
                AUTO_REVIEWER,
                verdict,
                lease.version,
                reason_tags=[AUTO_TAG],
                note=note,
            )
    except StoreError:
        logger.info("item %s changed under the pre-screen; left to reviewers", candidate.id)
        return False
    return True


def _audit_figures(audit: dict[str, str], votes: dict[str, dict[str, str]]) -> AuditFigures:
    compared = [
        (label, majority(list(votes[item].values())))
        for item, label in audit.items()
        if item in votes
    ]
    compared = [(a, b) for a, b in compared if b is not None]
    agreement = sum(a == b for a, b in compared) / len(compared) if compared else None
    return AuditFigures(drawn=len(audit), decided=len(compared), agreement=agreement)


def _waiting(store: Store, run_id: str) -> list[Candidate]:
    return store.get_many(sorted(store.ids(run_id, CandidateStatus.PENDING)))


def _saved(store: Store, status: PreScreenStatus) -> PreScreenStatus:
    # Counted after its own decisions: only what reviewers settle from here brings the next.
    status.settled = settled(store, status.run_id)
    store.save_prescreen_status(status.run_id, status.model_dump_json())
    return status
