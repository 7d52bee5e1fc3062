"""Review: leases, decisions (with overlap votes), undo and bulk actions, and the decision log."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import orjson
import redis

from generator.errors import ItemNotFoundError, LeaseError, StaleVersionError, StoreError
from generator.schema import (
    AUTO_REVIEWER,
    Candidate,
    CandidateStatus,
    Decision,
    DecisionRecord,
    PreferenceExample,
    SFTExample,
    Verdict,
)
from generator.screening import PII_FILTER, pii_score_is_current, screen
from generator.store.items import ItemsMixin

logger = logging.getLogger("generator.store")

_VERDICT_STATUS: dict[str, CandidateStatus] = {
    "accept": CandidateStatus.ACCEPTED,
    "edit": CandidateStatus.ACCEPTED,
    "reject": CandidateStatus.REJECTED,
    "skip": CandidateStatus.PENDING,
}


def _decision(
    item_id: str,
    run_id: str,
    reviewer: str,
    verdict: Verdict,
    *,
    version: int,
    reason_tags: list[str] | None,
    note: str,
    edited_payload: SFTExample | PreferenceExample | None = None,
) -> Decision:
    return Decision(
        item_id=item_id,
        run_id=run_id,
        reviewer=reviewer,
        verdict=verdict,
        reason_tags=reason_tags or [],
        note=note,
        edited_payload=edited_payload,
        item_version=version,
    )


@dataclass(frozen=True)
class Lease:
    """An item handed to one reviewer until ``expires_at``; decide with ``version``."""

    item: Candidate
    reviewer: str
    expires_at: datetime
    # The reviewer held this lease already (another tab, or one closed): handed back, renewed.
    reclaimed: bool = False
    # Which lease this is (the run's count of leases taken): ``release(..., seq=)`` gives back
    # this one only, not a later claim of the same item by the reviewer's other session.
    seq: int = 0

    @property
    def item_id(self) -> str:
        return self.item.id

    @property
    def version(self) -> int:
        return self.item.version


@dataclass(frozen=True)
class LoggedDecision:
    """A decision as it stands in the log, with the stream entry id that orders it."""

    entry_id: str
    decision: Decision


class ReviewMixin(ItemsMixin):
    """Leases (``P:run:<run>:pending|leased``), votes, skips and the log (``P:log``)."""

    def claim(
        self,
        reviewer: str,
        run_id: str,
        lease_seconds: float | None = None,
        *,
        holding: Iterable[str] = (),
    ) -> Lease | None:
        """Atomically lease an item to ``reviewer``: first a live lease they already hold in the
        run (the oldest; renewed), else the highest-priority pending item.

        Handing a reviewer's own leases back first is what makes a reload or a new tab show
        their items instead of an empty queue; ``holding`` names the items the caller holds
        already (the one on screen), which it is not handed again. Expired leases go back to
        the queue first. Items this reviewer skipped are not handed to them again. Returns None
        when nothing is left for them.

        The lease lasts ``lease_seconds`` when given, else the run's ``review.lease_seconds``
        (from its campaign), else the store's default (the ``lease_seconds`` setting).
        """
        if not reviewer:
            raise LeaseError("a reviewer id is required to claim an item")
        seconds = lease_seconds or self.lease_seconds
        reply = self._scripts["claim"](
            keys=[
                self.keys.run(run_id, "pending"),
                self.keys.run(run_id, "leased"),
                self.keys.skipped(run_id, reviewer),
                self.keys.run(run_id, "review"),
                self.keys.run(run_id, "lease_seq"),
            ],
            args=[
                self.keys.prefix,
                reviewer,
                max(int(seconds * 1000), 1),
                64,
                "1" if lease_seconds else "",
                *holding,
            ],
        )
        if not reply:
            return None
        return self._lease(reviewer, reply)

    def claim_item(self, item_id: str, reviewer: str) -> Lease:
        """Lease the item ``item_id`` to ``reviewer`` (a replayed vote names its item). Raises
        ``LeaseError`` when another reviewer holds a live lease on it or this reviewer voted
        on it, ``InvalidTransitionError`` when it is not pending."""
        if not reviewer:
            raise LeaseError("a reviewer id is required to claim an item")
        run_id = self._run_of(item_id)
        try:
            reply = self._scripts["claim_item"](
                keys=[
                    self.keys.item(item_id),
                    self.keys.run(run_id, "pending"),
                    self.keys.run(run_id, "leased"),
                    self.keys.run(run_id, "review"),
                    self.keys.run(run_id, "lease_seq"),
                    self.keys.votes(item_id),
                    self.keys.run(run_id, "audit"),
                ],
                args=[item_id, reviewer, max(int(self.lease_seconds * 1000), 1), AUTO_REVIEWER],
            )
        except redis.ResponseError as exc:
            raise self._translate(exc, item_id, reviewer) from exc
        return self._lease(reviewer, reply)

    def _lease(self, reviewer: str, reply: list[Any]) -> Lease:
        _id, expires, version, data, status, priority, edited, held, seq = reply
        item = self._candidate(
            {
                "data": data,
                "status": status,
                "version": version,
                "priority": priority,
                "edited": edited,
            }
        )
        expires_at = datetime.fromtimestamp(int(expires) / 1000, tz=UTC)
        return Lease(
            item=item,
            reviewer=reviewer,
            expires_at=expires_at,
            reclaimed=bool(held),
            seq=int(seq),
        )

    def release(self, item_id: str, reviewer: str, *, seq: int | None = None) -> bool:
        """Give a lease back without deciding; the item returns to the queue at once.

        With ``seq`` (a ``Lease.seq``), only that lease: False if the item has been claimed again
        since, by this reviewer's other session too."""
        run_id = self._run_of(item_id)
        released = self._scripts["release"](
            keys=[
                self.keys.item(item_id),
                self.keys.run(run_id, "pending"),
                self.keys.run(run_id, "leased"),
            ],
            args=[item_id, reviewer, "" if seq is None else str(seq)],
        )
        return bool(released)

    def decide(
        self,
        item_id: str,
        reviewer: str,
        verdict: Verdict,
        expected_version: int,
        *,
        reason_tags: list[str] | None = None,
        note: str = "",
        edited_payload: SFTExample | PreferenceExample | None = None,
    ) -> LoggedDecision:
        """Record a decision, compare-and-set on the item's version and the reviewer's lease.

        Refused, with nothing changed, when the item is not pending, the version is stale, or the
        reviewer does not hold the lease; when the lease has expired the item goes back to the
        queue. An accepted decision is appended to the log in the same atomic step.

        The item's ``pii`` score is made again on an edit (and on content whose score is missing
        or stale) and written in that same step, so the screen always matches what the item
        holds. A failed screen does not refuse the decision: the export refuses the item until a
        reviewer accepts it with the PII-cleared tag.
        """
        if verdict not in _VERDICT_STATUS:
            raise StoreError(f"decide takes accept, reject, edit or skip, not {verdict!r}")
        run_id = self._run_of(item_id)
        decision = _decision(
            item_id,
            run_id,
            reviewer,
            verdict,
            version=expected_version,
            reason_tags=reason_tags,
            note=note,
            edited_payload=edited_payload,
        )
        edited = edited_payload.model_dump_json() if edited_payload is not None else ""
        # A pair's swap: under overlap a vote for the other order (decide.lua), not an edit.
        swap = verdict == "edit" and "swapped" in (reason_tags or [])
        screened, read_at = self._screened_data(
            item_id, edited_payload if verdict != "skip" else None
        )
        if read_at != expected_version:
            screened = ""  # the script refuses a decision on a version the reviewer did not see
        try:
            version, entry_id, _run, gap = self._scripts["decide"](
                keys=[
                    self.keys.item(item_id),
                    self.keys.run(run_id, "pending"),
                    self.keys.run(run_id, "leased"),
                    self.keys.skipped(run_id, reviewer),
                    self.keys.log,
                    self.keys.run(run_id, "review"),
                    self.keys.votes(item_id),
                ],
                args=[
                    self.keys.prefix,
                    item_id,
                    reviewer,
                    verdict,
                    expected_version,
                    _VERDICT_STATUS[verdict].value,
                    decision.model_dump_json(exclude={"run_id", "gap_id"}),
                    edited,
                    screened,
                    "1" if swap else "",
                ],
            )
        except redis.ResponseError as exc:
            raise self._translate(exc, item_id, reviewer) from exc
        logger.debug("item %s: %s by %s (v%s)", item_id, verdict, reviewer, version)
        return LoggedDecision(entry_id, decision.model_copy(update={"gap_id": gap}))

    def _screened_data(
        self,
        item_id: str,
        edit: SFTExample | PreferenceExample | None,
        *,
        drop_edit: bool = False,
    ) -> tuple[str, int]:
        """The item's version, and its data with a ``pii`` score made on the content it will
        hold: ``edit``, else no edit if ``drop_edit``, else what it holds now. The data is ''
        when the stored score is current already (read as raw JSON: no model is built then)."""
        data, version, edited, priority = cast(
            list[str | None],
            self.redis.hmget(self.keys.item(item_id), ["data", "version", "edited", "priority"]),
        )
        if data is None:
            raise ItemNotFoundError(f"no item {item_id!r} under prefix {self.keys.prefix!r}")
        if edit is not None:
            edited = edit.model_dump_json()
        elif drop_edit:
            edited = None
        raw: dict[str, Any] = orjson.loads(data)
        raw["edited"] = orjson.loads(edited) if edited else None
        if pii_score_is_current(raw):
            return "", int(version or 0)
        stored = self._candidate(
            {
                "data": data,
                "status": "pending",
                "version": version or "0",
                "priority": priority or "0",
            }
            | ({"edited": edited} if edited else {})
        )
        scores = {**stored.scores, PII_FILTER: screen(stored)}
        return self._serialise(stored.model_copy(update={"scores": scores})), int(version or 0)

    def rescreen(self, item_id: str) -> bool:
        """Give the item a current PII/secret screen if it lacks one (an item stored by a gapfill
        from before screening); True when a screen was written. Retried if the item changes
        meanwhile, so the score written is always made on the content the item holds."""
        for _ in range(3):
            screened, version = self._screened_data(item_id, None)
            if not screened:
                return False
            written = self._scripts["rescreen"](
                keys=[self.keys.item(item_id)], args=[screened, version]
            )
            if written:
                return True
        raise StoreError(f"item {item_id}: changed during each of 3 screens; try again")

    def undo(self, item_id: str, reviewer: str) -> LoggedDecision:
        """Take back ``reviewer``'s accept/reject of an item: it returns to the review queue
        (with its priority), the edit is dropped, and the undo is logged. Refused when someone
        else decided it or it was exported.

        Dropping the edit changes the content, so the ``pii`` score of the original content is
        written in the same step; should the item change between that screen and the undo, the
        screen is made again."""
        for _attempt in range(3):
            screened, read_at = self._screened_data(item_id, None, drop_edit=True)
            try:
                return self._logged_action(
                    "undo", item_id, reviewer, "undo", screened=screened, read_at=read_at
                )
            except StaleVersionError:
                continue
        raise StaleVersionError(f"item {item_id} kept changing during the undo; try again")

    def reopen(self, item_id: str, reviewer: str, note: str = "") -> LoggedDecision:
        """Bulk action: an auto-rejected item goes back to review."""
        return self._logged_action("bulk", item_id, reviewer, "reopen", to="pending", note=note)

    def bulk_reject(
        self, item_id: str, reviewer: str, reason_tags: list[str], note: str = ""
    ) -> LoggedDecision:
        """Bulk action: reject a pending (unleased) or auto-rejected item without a lease."""
        return self._logged_action(
            "bulk",
            item_id,
            reviewer,
            "bulk_reject",
            to="rejected",
            note=note,
            reason_tags=reason_tags,
        )

    def adjudicate(self, item_id: str, admin: str, accept: bool, note: str = "") -> LoggedDecision:
        """An admin settles an item whose overlap votes split (two of accept, swap and reject at
        least), once: accepted (in the order the votes left it) or rejected, whatever the
        overlap rule made of the votes. Refused for an item whose votes agree, that is still
        pending, already adjudicated, or exported. No undo takes it back (nor any vote on the
        item)."""
        outcome = "accept" if accept else "reject"
        return self._logged_action(
            "adjudicate",
            item_id,
            admin,
            "adjudicate",
            to="accepted" if accept else "rejected",
            note=note,
            reason_tags=[outcome],
        )

    def split_votes(self, run_id: str) -> list[str]:
        """Items of a run settled by split overlap votes and not yet adjudicated, oldest id
        order (an exported item is left out: it is not changed). Reads every settled item's
        votes: an admin's page, not a hot path."""
        ids = sorted(
            item_id
            for status in (CandidateStatus.ACCEPTED, CandidateStatus.REJECTED)
            for item_id in self.ids(run_id, status)
        )
        with self.redis.pipeline(transaction=False) as pipe:
            for item_id in ids:
                pipe.hvals(self.keys.votes(item_id))
                pipe.hmget(self.keys.item(item_id), ["adjudicated_by", "exported"])
            replies = pipe.execute()
        return [
            item_id
            for item_id, votes, (adjudicated, exported) in zip(
                ids, replies[::2], replies[1::2], strict=True
            )
            if len(set(votes)) >= 2 and not adjudicated and not exported
        ]

    def _logged_action(
        self,
        script: Literal["undo", "bulk", "adjudicate"],
        item_id: str,
        reviewer: str,
        verdict: Verdict,
        *,
        to: str = "",
        note: str = "",
        reason_tags: list[str] | None = None,
        screened: str = "",
        read_at: int | None = None,
    ) -> LoggedDecision:
        """Run a logged action's script (undo.lua or bulk.lua): both take the same keys and
        arguments, ``to`` being the status a bulk action moves the item to ('' for undo), and
        ``screened`` the data an undo that drops an edit writes, made from the item at version
        ``read_at`` (the script refuses the undo if the item has moved on since)."""
        run_id = self._run_of(item_id)
        version = int(cast(str, self.redis.hget(self.keys.item(item_id), "version")) or 0)
        decision = _decision(
            item_id, run_id, reviewer, verdict, version=version, reason_tags=reason_tags, note=note
        )
        body = decision.model_dump_json(exclude={"run_id", "gap_id"})
        try:
            _version, entry_id, _run, gap = self._scripts[script](
                keys=[
                    self.keys.item(item_id),
                    self.keys.run(run_id, "pending"),
                    self.keys.run(run_id, "leased"),
                    self.keys.log,
                    self.keys.votes(item_id),
                ],
                args=[
                    self.keys.prefix,
                    item_id,
                    reviewer,
                    verdict,
                    body,
                    to,
                    screened,
                    "" if read_at is None else read_at,
                ],
            )
        except redis.ResponseError as exc:
            raise self._translate(exc, item_id, reviewer) from exc
        return LoggedDecision(entry_id, decision.model_copy(update={"gap_id": gap}))

    def expire_leases(self, run_id: str) -> int:
        """Make every lease of a run expired now, as if its time had run out (the server's clock
        decides, as for any lease); returns how many. Tests use it instead of sleeping."""
        return int(
            self._scripts["expire_leases"](
                keys=[self.keys.run(run_id, "leased")], args=[self.keys.prefix]
            )
        )

    def sign_out_session(self, session_id: str, seconds_left: int) -> None:
        """Refuse a review UI session's cookie from now on (until it would have expired)."""
        if seconds_left > 0:
            self.redis.set(self.keys.signed_out(session_id), "1", ex=seconds_left)

    def signed_out(self, session_id: str) -> bool:
        return bool(self.redis.exists(self.keys.signed_out(session_id)))

    def reprioritise(self, run_id: str, priorities: dict[str, float]) -> int:
        """New queue priorities for items still waiting in the run's queue (pending and not
        leased; others keep theirs). Returns how many were reordered."""
        pending = self.keys.run(run_id, "pending")
        ids = list(priorities)
        with self.redis.pipeline(transaction=True) as pipe:
            for item_id in ids:
                # XX CH: only an item in the queue, counted when its score changed.
                pipe.zadd(pending, {item_id: priorities[item_id]}, xx=True, ch=True)
            changed = pipe.execute()
        with self.redis.pipeline(transaction=False) as pipe:
            for item_id, moved in zip(ids, changed, strict=True):
                if moved:
                    pipe.hset(self.keys.item(item_id), "priority", repr(float(priorities[item_id])))
            pipe.execute()
        return sum(bool(moved) for moved in changed)

    def save_prescreen_status(self, run_id: str, status_json: str) -> None:
        self.redis.set(self.keys.run(run_id, "prescreen"), status_json)

    def prescreen_status(self, run_id: str) -> str | None:
        return cast(str | None, self.redis.get(self.keys.run(run_id, "prescreen")))

    def add_audit(self, run_id: str, predictions: dict[str, str]) -> None:
        """Items drawn for the audit share, with the label the model would have given (an item
        drawn before keeps its first label). The pre-screen can never claim them after."""
        key = self.keys.run(run_id, "audit")
        with self.redis.pipeline(transaction=True) as pipe:
            for item_id, label in predictions.items():
                pipe.hsetnx(key, item_id, label)
            pipe.execute()

    def audit(self, run_id: str) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id, "audit")))

    def votes(self, item_id: str) -> dict[str, str]:
        """Under overlap: each reviewer's vote (accept or reject) on the item so far."""
        return cast(dict[str, str], self.redis.hgetall(self.keys.votes(item_id)))

    def review_rule(self, run_id: str) -> tuple[int, str]:
        """Reviewers per item and the overlap rule the run's decisions follow."""
        k, rule = self.redis.hmget(self.keys.run(run_id, "review"), ["k", "rule"])
        return int(k or 1), str(rule or "majority")

    def decisions(
        self, run_id: str | None = None, *, after: str = "-", count: int | None = None
    ) -> list[LoggedDecision]:
        """The decision log in append order, optionally for one run and after an entry id."""
        logged = []
        for entry_id, run, gap, decision_json in self._log_entries(run_id, after, count):
            data = orjson.loads(decision_json)
            data.update(run_id=run, gap_id=gap)
            logged.append(LoggedDecision(entry_id, Decision.model_validate(data)))
        return logged

    def decision_records(self, run_id: str) -> list[DecisionRecord]:
        """A run's decision log in append order, as plain records (see ``DecisionRecord``)."""
        logged = [entry[3] for entry in self._log_entries(run_id)]
        return [
            DecisionRecord(
                data["item_id"],
                data["reviewer"],
                data["verdict"],
                data.get("reason_tags") or [],
                data.get("note") or "",
                data["decided_at"],
            )
            for data in map(orjson.loads, logged)
        ]

    def _log_entries(
        self, run_id: str | None, after: str = "-", count: int | None = None
    ) -> Iterator[tuple[str, str, str, str]]:
        """(entry id, run, gap, decision JSON) of the log's entries after ``after``, of one run
        if given; ``count`` bounds the entries read, before the run filter."""
        start = after if after == "-" else f"({after}"
        entries = cast(
            list[list[Any]], self._as_sent.xrange(self.keys.log, start, "+", count=count)
        )
        for entry_id, flat in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            if run_id is None or fields["run"] == run_id:
                yield entry_id, fields["run"], fields["gap"], fields["decision"]
