"""Candidates: writing them (with their status indexes and counts), routing, and reading them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import orjson
import redis

from generator.errors import ItemNotFoundError, StoreError
from generator.schema import Candidate, CandidateStatus, PreferenceExample, SFTExample
from generator.store.base import StoreBase

# The fields of a candidate that the store owns and keeps outside the immutable data blob.
_MUTABLE_FIELDS = {"status", "version", "priority", "edited"}

_RAW_FIELDS = ["data", "status", "version", "priority", "edited", "exported"]


class ItemsMixin(StoreBase):
    """Candidates under ``P:item:<id>``, indexed per run by status, gap and queue position."""

    def put(self, candidate: Candidate) -> bool:
        """Store a candidate; False (and nothing changed) if the same content is already stored."""
        return self.put_many([candidate]) == 1

    def put_many(self, candidates: Iterable[Candidate]) -> int:
        """Store candidates in one MULTI/EXEC transaction; returns how many were new.

        All of them are serialised before anything is sent, so a bad candidate fails the whole
        call with nothing written.
        """
        rows = [(c, self._serialise(c)) for c in candidates]
        if not rows:
            return 0
        with self.redis.pipeline(transaction=True) as pipe:
            for candidate, data in rows:
                self._queue_put(pipe, candidate, data)
            results = pipe.execute()
        return sum(int(r) for r in results)

    def _queue_put(self, pipe: redis.client.Pipeline, candidate: Candidate, data: str) -> None:
        self._scripts["put"](
            keys=[self.keys.item(candidate.id), self.keys.runs],
            args=[
                self.keys.prefix,
                candidate.id,
                data,
                candidate.status.value,
                candidate.run_id,
                candidate.gap_id,
                repr(float(candidate.priority)),
            ],
            client=pipe,
        )

    @staticmethod
    def _serialise(candidate: Candidate) -> str:
        if candidate.id != candidate.compute_id():
            raise StoreError(f"candidate {candidate.id}: id does not match its content hash")
        return candidate.model_dump_json(exclude=_MUTABLE_FIELDS)

    def route(
        self,
        item_id: str,
        status: CandidateStatus,
        *,
        priority: float | None = None,
        candidate: Candidate | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Move an undecided item to ``status`` (the filters' routing, or "send back to review").

        Optionally replaces the stored data (e.g. with new filter scores). Returns the new version.
        Decided items (accepted/rejected) cannot be re-routed.
        """
        data = self._serialise(candidate) if candidate is not None else ""
        try:
            version = self._scripts["route"](
                keys=[self.keys.item(item_id)],
                args=[
                    self.keys.prefix,
                    item_id,
                    status.value,
                    "" if priority is None else repr(float(priority)),
                    data,
                    "" if expected_version is None else expected_version,
                ],
            )
        except redis.ResponseError as exc:
            raise self._translate(exc, item_id) from exc
        return int(version)

    def accepted_payloads(self, run_id: str) -> list[SFTExample | PreferenceExample]:
        """What reviewers accepted in a run: the edited payload where they edited."""
        items = self.get_many(list(self.ids(run_id, CandidateStatus.ACCEPTED)))
        return [i.edited or i.payload for i in items if (i.edited or i.payload) is not None]  # type: ignore[misc]

    # -- reading ----------------------------------------------------------------------------

    def get(self, item_id: str) -> Candidate:
        fields = cast(dict[str, str], self.redis.hgetall(self.keys.item(item_id)))
        if not fields:
            raise ItemNotFoundError(f"no item {item_id!r} under prefix {self.keys.prefix!r}")
        return self._candidate(fields)

    def get_many(self, item_ids: Iterable[str]) -> list[Candidate]:
        ids = list(item_ids)
        with self.redis.pipeline(transaction=False) as pipe:
            for item_id in ids:
                pipe.hgetall(self.keys.item(item_id))
            replies = pipe.execute()
        missing = [i for i, r in zip(ids, replies, strict=True) if not r]
        if missing:
            raise ItemNotFoundError(f"no item {missing[0]!r} under prefix {self.keys.prefix!r}")
        return [self._candidate(r) for r in replies]

    def get_many_raw(self, item_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Items as the JSON they were stored as (validated then), with the store's fields.

        For bulk readers (export) where building 100,000 models would cost more than the rest
        of the work together.
        """
        ids = list(item_ids)
        return self._parse_raw(ids, self._fetch_raw(ids))

    def iter_raw(self, item_ids: list[str], chunk: int = 5000) -> Iterator[list[dict[str, Any]]]:
        """``get_many_raw`` in chunks, the next chunk read while the caller works on this one:
        the server's share of a read then overlaps the caller's work instead of adding to it."""
        chunks = [item_ids[start : start + chunk] for start in range(0, len(item_ids), chunk)]
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gapfill-read") as reader:
            pending = reader.submit(self._fetch_raw, chunks[0])
            for index, ids in enumerate(chunks):
                replies = pending.result()
                if index + 1 < len(chunks):
                    pending = reader.submit(self._fetch_raw, chunks[index + 1])
                yield self._parse_raw(ids, replies)

    def _fetch_raw(self, ids: list[str]) -> list[list[str | None]]:
        # One script call per chunk, not a pipeline of one HMGET per item: packing and
        # unpacking 5,000 commands in redis-py costs more than the server's work.
        return cast(
            list[list[str | None]],
            self._scripts["read_items"](keys=[self.keys.item(i) for i in ids], args=_RAW_FIELDS),
        )

    def _parse_raw(self, ids: list[str], replies: list[list[str | None]]) -> list[dict[str, Any]]:
        items = []
        for item_id, (data, status, version, priority, edited, exported) in zip(
            ids, replies, strict=True
        ):
            if data is None:
                raise ItemNotFoundError(f"no item {item_id!r} under prefix {self.keys.prefix!r}")
            item: dict[str, Any] = orjson.loads(data)
            item["status"] = status
            item["version"] = int(cast(str, version))
            item["priority"] = float(cast(str, priority))
            item["edited"] = orjson.loads(edited) if edited else None
            item["exported"] = exported
            items.append(item)
        return items

    @staticmethod
    def _candidate(fields: dict[str, str]) -> Candidate:
        data: dict[str, Any] = orjson.loads(fields["data"])
        data["status"] = fields["status"]
        data["version"] = int(fields["version"])
        data["priority"] = float(fields["priority"])
        if fields.get("edited"):
            data["edited"] = orjson.loads(fields["edited"])
        return Candidate.model_validate(data)

    def exists(self, item_id: str) -> bool:
        return bool(self.redis.exists(self.keys.item(item_id)))

    def counts(self, run_id: str) -> dict[str, dict[str, int]]:
        """``{gap: {status: count}}`` for a run, zero counts left out. One O(gaps) read."""
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id, "counts")))
        table: dict[str, dict[str, int]] = {}
        for field, value in raw.items():
            gap, _, status = field.rpartition("|")
            if int(value):
                table.setdefault(gap, {})[status] = int(value)
        return table

    def count(self, run_id: str, status: CandidateStatus, gap_id: str | None = None) -> int:
        """One figure in O(1): items of a run (and gap) with a status."""
        if gap_id is not None:
            value = self.redis.hget(self.keys.run(run_id, "counts"), f"{gap_id}|{status.value}")
            return int(cast(str, value) or 0)
        return self.redis.scard(self.keys.status(run_id, status.value))

    def ids(self, run_id: str, status: CandidateStatus) -> Iterator[str]:
        """Ids of a run's items with a status (SSCAN: no blocking on large sets)."""
        key = self.keys.status(run_id, status.value)
        yield from cast(Iterator[str], self.redis.sscan_iter(key, count=1000))

    def queue_depth(self, run_id: str) -> int:
        """Pending items waiting for a reviewer: the queue, and items whose lease expired."""
        return self.queue_figures(run_id)[0]

    def leased_count(self, run_id: str) -> int:
        """Items leased to a reviewer now (an expired lease no longer counts)."""
        return self.queue_figures(run_id)[1]

    def queue_figures(self, run_id: str) -> tuple[int, int]:
        """(waiting, leased) in one read on the server's clock, as the next claim sees them:
        an item whose lease expired is waiting, since that claim hands it out again."""
        waiting, leased = self._scripts["queue_figures"](
            keys=[self.keys.run(run_id, "pending"), self.keys.run(run_id, "leased")],
            args=[self.keys.prefix],
        )
        return int(waiting), int(leased)
