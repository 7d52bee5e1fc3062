"""Review: leases, decisions (with overlap votes), undo and bulk actions, and the decision log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import orjson
import redis

from generator.errors import LeaseError, StoreError
from generator.schema import (
    Candidate,
    CandidateStatus,
    Decision,
    DecisionRecord,
    PreferenceExample,
    SFTExample,
    Verdict,
)
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

    def claim(self, reviewer: str, run_id: str, lease_seconds: float | None = None) -> Lease | None:
        """Atomically lease the highest-priority pending item to ``reviewer``.

        Expired leases go back to the queue first. Items this reviewer skipped are not handed to
        them again. Returns None when nothing is left for them.
        """
        if not reviewer:
            raise LeaseError("a reviewer id is required to claim an item")
        seconds = lease_seconds or self.lease_seconds
        reply = self._scripts["claim"](
            keys=[
                self.keys.run(run_id, "pending"),
                self.keys.run(run_id, "leased"),
                self.keys.skipped(run_id, reviewer),
            ],
            args=[self.keys.prefix, reviewer, max(int(seconds * 1000), 1), 64],
        )
        if not reply:
            return None
        _id, expires, version, data, status, priority, edited = reply
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
        return Lease(item=item, reviewer=reviewer, expires_at=expires_at)

    def release(self, item_id: str, reviewer: str) -> bool:
        """Give a lease back without deciding; the item returns to the queue at once."""
        run_id = self._run_of(item_id)
        released = self._scripts["release"](
            keys=[
                self.keys.item(item_id),
                self.keys.run(run_id, "pending"),
                self.keys.run(run_id, "leased"),
            ],
            args=[item_id, reviewer],
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
                ],
            )
        except redis.ResponseError as exc:
            raise self._translate(exc, item_id, reviewer) from exc
        logger.debug("item %s: %s by %s (v%s)", item_id, verdict, reviewer, version)
        return LoggedDecision(entry_id, decision.model_copy(update={"gap_id": gap}))

    def undo(self, item_id: str, reviewer: str) -> LoggedDecision:
        """Take back ``reviewer``'s accept/reject of an item: it returns to the review queue
        (with its priority), the edit is dropped, and the undo is logged. Refused when someone
        else decided it or it was exported."""
        return self._logged_action("undo", item_id, reviewer, "undo")

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

    def _logged_action(
        self,
        script: Literal["undo", "bulk"],
        item_id: str,
        reviewer: str,
        verdict: Verdict,
        *,
        to: str = "",
        note: str = "",
        reason_tags: list[str] | None = None,
    ) -> LoggedDecision:
        """Run a logged action's script (undo.lua or bulk.lua): both take the same keys and
        arguments, ``to`` being the status a bulk action moves the item to ('' for undo)."""
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
                args=[self.keys.prefix, item_id, reviewer, verdict, body, to],
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
