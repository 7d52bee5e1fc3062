"""The store: Redis as gapfill's system of record.

Layout, under one configurable prefix ``P`` so campaigns and test sessions never collide::

    P:item:<id>                hash   data (candidate JSON), status, version, run, gap, priority,
                                      lease_owner, lease_expires (ms), edited, edited_by,
                                      decided_by, exported
    P:item:<id>:votes          hash   reviewer -> accept|reject, for runs with overlap (k > 1)
    P:runs                     set    run ids
    P:run:<run>:config         string the RunConfig JSON
    P:run:<run>:review         hash   k (reviewers per item), rule (majority|unanimous)
    P:run:<run>:eval_report    string the latest eval report JSON (gapfill eval / export)
    P:run:<run>:counts         hash   "<gap>|<status>" -> count (O(1) status figures)
    P:run:<run>:status:<s>     set    item ids with status s
    P:run:<run>:pending        zset   the review queue: pending, unleased items by priority
    P:run:<run>:leased         zset   leased items by lease expiry (ms, server clock)
    P:run:<run>:skipped:<rev>  set    items a reviewer skipped (not handed to them again)
    P:log                      stream the decision log: appended, never trimmed or rewritten
    P:exports                  list   one JSON record per export (newest last): id, kind, runs,
                                      out, manifest sha256
    P:task:<id>                hash   data (GenerationTask JSON), state open|done, result
    P:run:<run>:tasks          set    every task of the run
    P:run:<run>:tasks-open     set    tasks not yet completed
    P:run:<run>:stats          hash   generation figures: tokens, tasks done, backend seconds

Every change that touches more than one key runs as one Lua script, so it is atomic and costs a
single round trip; lease times come from the server's clock (``TIME``), so reviewers on machines
with skewed clocks still agree on who holds what.

Overlap: a run with k > 1 reviewers per item hands each item to k different reviewers, one lease
at a time. A vote puts the item back in the queue (still pending, same version, so another
reviewer's lease stays valid) until k votes are in; the k-th vote settles it by the run's rule:
``majority`` accepts when more than half accept (a tie rejects: nothing enters a dataset on a
split vote), ``unanimous`` only when all accept. An edit is an accepting vote that also replaces
the payload. Scripts build some key names from item ids,
which keeps them single-instance (not Redis Cluster) safe: gapfill targets one primary, as RQ does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import redis

from generator.errors import (
    InvalidTransitionError,
    ItemNotFoundError,
    LeaseError,
    StaleVersionError,
    StoreError,
)
from generator.schema import (
    Candidate,
    CandidateStatus,
    Decision,
    DecisionRecord,
    Gap,
    GenerationTask,
    PreferenceExample,
    RunConfig,
    SFTExample,
    Verdict,
)

logger = logging.getLogger(__name__)

# No ':' or glob characters, so one prefix's keys can never match another prefix's SCAN pattern.
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+")

# The fields of a candidate that the store owns and keeps outside the immutable data blob.
_MUTABLE_FIELDS = {"status", "version", "priority", "edited"}

_VERDICT_STATUS: dict[str, CandidateStatus] = {
    "accept": CandidateStatus.ACCEPTED,
    "edit": CandidateStatus.ACCEPTED,
    "reject": CandidateStatus.REJECTED,
    "skip": CandidateStatus.PENDING,
}

# Shared Lua helpers, prepended to each script.
_LUA_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function move_status(prefix, id, item, run, gap, from, to)
  if from == to then return end
  local p = prefix .. ':run:' .. run
  redis.call('HINCRBY', p .. ':counts', gap .. '|' .. from, -1)
  redis.call('HINCRBY', p .. ':counts', gap .. '|' .. to, 1)
  redis.call('SMOVE', p .. ':status:' .. from, p .. ':status:' .. to, id)
  redis.call('HSET', item, 'status', to)
end
"""

# KEYS: task, all tasks, open tasks, runs. ARGV: id, data, run
_LUA_ADD_TASK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'state', 'open', 'run', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[3])
return 1
"""

# KEYS: item, runs. ARGV: prefix, id, data, status, run, gap, priority
_LUA_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local prefix, id, data, status, run, gap, priority = unpack(ARGV)
local p = prefix .. ':run:' .. run
redis.call('HSET', KEYS[1], 'data', data, 'status', status, 'version', 0,
           'run', run, 'gap', gap, 'priority', priority)
redis.call('HINCRBY', p .. ':counts', gap .. '|' .. status, 1)
redis.call('SADD', p .. ':status:' .. status, id)
redis.call('SADD', KEYS[2], run)
if status == 'pending' then redis.call('ZADD', p .. ':pending', priority, id) end
return 1
"""

# KEYS: item. ARGV: prefix, id, to_status, priority ('' keeps it), data ('' keeps it),
# expected_version ('' = any)
_LUA_ROUTE = """
local prefix, id, to, priority, data, expected = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local f = redis.call('HMGET', KEYS[1], 'status', 'version', 'run', 'gap', 'priority')
local from, version, run, gap = f[1], f[2], f[3], f[4]
if expected ~= '' and tonumber(expected) ~= tonumber(version) then
  return redis.error_reply('STALE ' .. version)
end
if from == 'accepted' or from == 'rejected' then
  return redis.error_reply('TRANSITION ' .. from)
end
if priority == '' then priority = f[5] end
local p = prefix .. ':run:' .. run
redis.call('ZREM', p .. ':pending', id)
redis.call('ZREM', p .. ':leased', id)
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_expires')
move_status(prefix, id, KEYS[1], run, gap, from, to)
redis.call('HSET', KEYS[1], 'priority', priority)
if data ~= '' then redis.call('HSET', KEYS[1], 'data', data) end
if to == 'pending' then redis.call('ZADD', p .. ':pending', priority, id) end
return redis.call('HINCRBY', KEYS[1], 'version', 1)
"""

# KEYS: pending, leased, skipped(reviewer). ARGV: prefix, reviewer, lease_ms, scan
_LUA_CLAIM = """
local prefix, reviewer, lease_ms, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[2], id)
  local item = prefix .. ':item:' .. id
  local f = redis.call('HMGET', item, 'status', 'priority')
  redis.call('HDEL', item, 'lease_owner', 'lease_expires')
  if f[1] == 'pending' then redis.call('ZADD', KEYS[1], f[2], id) end
end
local offset = 0
while true do
  local batch = redis.call('ZREVRANGE', KEYS[1], offset, offset + scan - 1)
  if #batch == 0 then return false end
  for _, id in ipairs(batch) do
    if redis.call('SISMEMBER', KEYS[3], id) == 0
       and redis.call('HEXISTS', prefix .. ':item:' .. id .. ':votes', reviewer) == 0 then
      local expires = now + lease_ms
      local item = prefix .. ':item:' .. id
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZADD', KEYS[2], expires, id)
      redis.call('HSET', item, 'lease_owner', reviewer, 'lease_expires', expires)
      local f = redis.call('HMGET', item, 'version', 'data', 'status', 'priority', 'edited')
      return {id, tostring(expires), f[1], f[2], f[3], f[4], f[5] or ''}
    end
  end
  offset = offset + scan
end
"""

# KEYS: item, pending, leased, skipped(reviewer), log, run review settings, item votes.
# ARGV: prefix, id, reviewer, verdict, expected_version, to_status, decision_json, edited_json
_LUA_DECIDE = """
local prefix, id, reviewer, verdict, expected, to, decision, edited = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local f = redis.call('HMGET', KEYS[1], 'status', 'version', 'lease_owner', 'lease_expires',
                     'run', 'gap', 'priority')
local status, version, owner, expires, run, gap, priority = f[1], f[2], f[3], f[4], f[5], f[6], f[7]
if status ~= 'pending' then return redis.error_reply('TRANSITION ' .. status) end
if tonumber(expected) ~= tonumber(version) then return redis.error_reply('STALE ' .. version) end
if owner ~= reviewer then return redis.error_reply('NOT_LEASED ' .. tostring(owner or '')) end
if tonumber(expires) < now_ms() then
  redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_expires')
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[2], priority, id)
  return redis.error_reply('LEASE_EXPIRED')
end
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_expires')
redis.call('ZREM', KEYS[3], id)
local review = redis.call('HMGET', KEYS[6], 'k', 'rule')
local k = tonumber(review[1] or '1') or 1
local new_version = tonumber(version)
if verdict == 'skip' then
  new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('SADD', KEYS[4], id)
  redis.call('ZADD', KEYS[2], priority, id)
elseif k <= 1 then
  new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  move_status(prefix, id, KEYS[1], run, gap, 'pending', to)
  redis.call('HSET', KEYS[1], 'decided_by', reviewer)
  if edited ~= '' then redis.call('HSET', KEYS[1], 'edited', edited, 'edited_by', reviewer) end
else
  local vote = 'reject'
  if to == 'accepted' then vote = 'accept' end
  redis.call('HSET', KEYS[7], reviewer, vote)
  if edited ~= '' then
    redis.call('HSET', KEYS[1], 'edited', edited, 'edited_by', reviewer)
    new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  end
  local votes = redis.call('HVALS', KEYS[7])
  if #votes < k then
    redis.call('ZADD', KEYS[2], priority, id)
  else
    local accepts = 0
    for _, v in ipairs(votes) do if v == 'accept' then accepts = accepts + 1 end end
    local final = 'rejected'
    if review[2] == 'unanimous' then
      if accepts == #votes then final = 'accepted' end
    elseif accepts * 2 > #votes then
      final = 'accepted'
    end
    new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
    move_status(prefix, id, KEYS[1], run, gap, 'pending', final)
    redis.call('HSET', KEYS[1], 'decided_by', reviewer)
  end
end
local entry = redis.call('XADD', KEYS[5], '*', 'item', id, 'run', run, 'gap', gap,
                         'verdict', verdict, 'decision', decision)
return {new_version, entry, run, gap}
"""

# KEYS: item, pending, leased, log, item votes. ARGV: prefix, id, reviewer, decision_json
# A settled item goes back to the queue (only its settler can do that); under overlap, a vote on
# an item still pending is withdrawn without touching the version (another reviewer may hold it).
_LUA_UNDO = """
local prefix, id, reviewer, decision = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local f = redis.call('HMGET', KEYS[1], 'status', 'decided_by', 'exported', 'run', 'gap',
                     'priority', 'version', 'edited_by')
local status, by, exported, run, gap, priority, version, edited_by = unpack(f)
local voted = redis.call('HEXISTS', KEYS[5], reviewer) == 1
local new_version
if status == 'pending' and voted then
  new_version = tonumber(version)
  if edited_by == reviewer then
    redis.call('HDEL', KEYS[1], 'edited', 'edited_by')
    new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  end
elseif status ~= 'accepted' and status ~= 'rejected' then
  return redis.error_reply('TRANSITION ' .. status)
elseif by ~= reviewer then
  return redis.error_reply('NOT_YOURS ' .. tostring(by or ''))
elseif exported then
  return redis.error_reply('EXPORTED ' .. exported)
else
  move_status(prefix, id, KEYS[1], run, gap, status, 'pending')
  redis.call('HDEL', KEYS[1], 'decided_by')
  if edited_by == reviewer or not edited_by then
    redis.call('HDEL', KEYS[1], 'edited', 'edited_by')
  end
  redis.call('ZADD', KEYS[2], priority, id)
  new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
end
redis.call('HDEL', KEYS[5], reviewer)
local entry = redis.call('XADD', KEYS[4], '*', 'item', id, 'run', run, 'gap', gap,
                         'verdict', 'undo', 'decision', decision)
return {new_version, entry, run, gap}
"""

# A bulk action on an item nobody holds: pending or auto_rejected -> to (pending or rejected).
# KEYS: item, pending, leased, log. ARGV: prefix, id, to, verdict, decision_json
_LUA_BULK = """
local prefix, id, to, verdict, decision = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local f = redis.call('HMGET', KEYS[1], 'status', 'lease_owner', 'run', 'gap', 'priority')
local status, owner, run, gap, priority = f[1], f[2], f[3], f[4], f[5]
if status ~= 'pending' and status ~= 'auto_rejected' then
  return redis.error_reply('TRANSITION ' .. status)
end
if owner then return redis.error_reply('NOT_LEASED ' .. owner) end
if status == to then return redis.error_reply('TRANSITION ' .. status) end
move_status(prefix, id, KEYS[1], run, gap, status, to)
if to == 'pending' then redis.call('ZADD', KEYS[2], priority, id)
else redis.call('ZREM', KEYS[2], id) end
local new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
local entry = redis.call('XADD', KEYS[4], '*', 'item', id, 'run', run, 'gap', gap,
                         'verdict', verdict, 'decision', decision)
return {new_version, entry, run, gap}
"""

# KEYS: item, pending, leased. ARGV: id, reviewer
_LUA_RELEASE = """
local f = redis.call('HMGET', KEYS[1], 'lease_owner', 'status', 'priority')
if f[1] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_expires')
redis.call('ZREM', KEYS[3], ARGV[1])
if f[2] == 'pending' then redis.call('ZADD', KEYS[2], f[3], ARGV[1]) end
return 1
"""


# Mark items exported; returns each one's previous mark (nil where none).
# KEYS: items. ARGV: export_id
_LUA_MARK_EXPORTED = """
local previous = {}
for index, key in ipairs(KEYS) do
  previous[index] = redis.call('HGET', key, 'exported')
  redis.call('HSET', key, 'exported', ARGV[1])
end
return previous
"""

# Put back the marks an export made, where they are still its own. KEYS: items.
# ARGV: export_id, then each item's previous mark ('' for none)
_LUA_UNMARK_EXPORTED = """
for index, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'exported') == ARGV[1] then
    local previous = ARGV[index + 1]
    if previous == '' then redis.call('HDEL', key, 'exported')
    else redis.call('HSET', key, 'exported', previous) end
  end
end
return #KEYS
"""
_MARK_CHUNK = 10_000  # items per marking call: the server serves no one else during one


# Several fields of many items in one call (a Lua false, a missing field, arrives as None).
# KEYS: items. ARGV: fields
_LUA_READ_ITEMS = """
local out = {}
for index, key in ipairs(KEYS) do out[index] = redis.call('HMGET', key, unpack(ARGV)) end
return out
"""
_RAW_FIELDS = ["data", "status", "version", "priority", "edited", "exported"]


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


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.runs = f"{prefix}:runs"
        self.log = f"{prefix}:log"
        self.exports = f"{prefix}:exports"

    def item(self, item_id: str) -> str:
        return f"{self.prefix}:item:{item_id}"

    def tokens(self, fingerprint: str) -> str:
        """Token counts of conversations under one tokenizer (see export.checks)."""
        return f"{self.prefix}:tokens:{fingerprint}"

    def votes(self, item_id: str) -> str:
        return f"{self.prefix}:item:{item_id}:votes"

    def task(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def run(self, run_id: str, suffix: str) -> str:
        return f"{self.prefix}:run:{run_id}:{suffix}"


def _reply_as_sent(response: Any, **_options: Any) -> Any:
    return response


class Store:
    """Candidates, their status indexes, review leases and the decision log, on Redis."""

    def __init__(
        self, client: redis.Redis, prefix: str = "gapfill", lease_seconds: float = 300
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise StoreError(f"key prefix {prefix!r} must match {_PREFIX.pattern}")
        if not client.get_connection_kwargs().get("decode_responses"):
            raise StoreError("the store needs a Redis client created with decode_responses=True")
        self.redis = client
        self.keys = Keys(prefix)
        self.lease_seconds = lease_seconds
        register = client.register_script
        self._put = register(_LUA_COMMON + _LUA_PUT)
        self._route = register(_LUA_COMMON + _LUA_ROUTE)
        self._claim = register(_LUA_COMMON + _LUA_CLAIM)
        self._decide = register(_LUA_COMMON + _LUA_DECIDE)
        self._release = register(_LUA_RELEASE)
        self._undo = register(_LUA_COMMON + _LUA_UNDO)
        self._bulk = register(_LUA_COMMON + _LUA_BULK)
        self._add_task = register(_LUA_ADD_TASK)
        self._mark_exported = register(_LUA_MARK_EXPORTED)
        self._unmark_exported = register(_LUA_UNMARK_EXPORTED)
        self._read_items = register(_LUA_READ_ITEMS)
        # The same connections, replies as the server sent them: redis-py's own XRANGE reply
        # callback builds a dict per log entry, which at 100,000 entries cost more than the read
        # (and reshaping the entries in a Lua script cost the server three times the XRANGE).
        self._as_sent = redis.Redis(connection_pool=client.connection_pool)
        self._as_sent.set_response_callback("XRANGE", _reply_as_sent)

    # -- writing candidates -------------------------------------------------------------

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
        self._put(
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

    # -- generation tasks ---------------------------------------------------------------------

    def add_tasks(self, tasks: Iterable[GenerationTask]) -> int:
        """Store tasks (idempotent by content hash) in one transaction; returns the new count."""
        with self.redis.pipeline(transaction=True) as pipe:
            for task in tasks:
                self._queue_add_task(pipe, task)
            return sum(int(r) for r in pipe.execute())

    def _queue_add_task(self, pipe: redis.client.Pipeline, task: GenerationTask) -> None:
        self._add_task(
            keys=[
                self.keys.task(task.id),
                self.keys.run(task.run_id, "tasks"),
                self.keys.run(task.run_id, "tasks-open"),
                self.keys.runs,
            ],
            args=[task.id, task.model_dump_json(), task.run_id],
            client=pipe,
        )

    def get_tasks(self, task_ids: Iterable[str]) -> list[GenerationTask]:
        ids = list(task_ids)
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hget(self.keys.task(task_id), "data")
            replies = pipe.execute()
        missing = [i for i, r in zip(ids, replies, strict=True) if r is None]
        if missing:
            raise ItemNotFoundError(f"no generation task {missing[0]!r}")
        return [GenerationTask.model_validate_json(r) for r in replies]

    def task_jobs(self, task_ids: list[str]) -> list[str | None]:
        """The job last enqueued for each task (None if never enqueued)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hget(self.keys.task(task_id), "job")
            return cast(list[str | None], pipe.execute())

    def set_task_job(self, task_ids: list[str], job_id: str) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hset(self.keys.task(task_id), "job", job_id)
            pipe.execute()

    def task_done(self, task_id: str) -> bool:
        return self.redis.hget(self.keys.task(task_id), "state") == "done"

    def open_tasks(self, run_id: str) -> list[str]:
        return sorted(cast(set[str], self.redis.smembers(self.keys.run(run_id, "tasks-open"))))

    def task_counts(self, run_id: str) -> tuple[int, int]:
        """``(done, total)`` tasks of a run."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.scard(self.keys.run(run_id, "tasks"))
            pipe.scard(self.keys.run(run_id, "tasks-open"))
            total, still_open = pipe.execute()
        return int(total) - int(still_open), int(total)

    def complete_task(
        self,
        task: GenerationTask,
        candidates: list[Candidate],
        new_tasks: list[GenerationTask],
        stats: dict[str, float],
    ) -> bool:
        """Store a task's outputs and mark it done, exactly once.

        WATCHes the task, so if another worker completed it first (a retried job racing its
        abandoned original), this call writes nothing and returns False.
        """
        rows = [(c, self._serialise(c)) for c in candidates]
        key = self.keys.task(task.id)
        result = orjson.dumps(
            {"candidates": [c.id for c in candidates], "tasks": [t.id for t in new_tasks]}
        ).decode()
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                if pipe.hget(key, "state") != "open":
                    return False
                pipe.multi()
                for candidate, data in rows:
                    self._queue_put(pipe, candidate, data)
                for child in new_tasks:
                    self._queue_add_task(pipe, child)
                pipe.hset(key, mapping={"state": "done", "result": result})
                pipe.srem(self.keys.run(task.run_id, "tasks-open"), task.id)
                for name, value in stats.items():
                    pipe.hincrbyfloat(self.keys.run(task.run_id, "stats"), name, value)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def task_result(self, task_id: str) -> dict[str, list[str]] | None:
        raw = self.redis.hget(self.keys.task(task_id), "result")
        return orjson.loads(raw) if raw else None

    def run_stats(self, run_id: str) -> dict[str, float]:
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id, "stats")))
        return {name: float(value) for name, value in raw.items()}

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
            version = self._route(
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

    def save_run(self, config: RunConfig) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.run(config.run_id, "config"), config.model_dump_json())
            # The review rule the decide script reads, next to the config it comes from.
            pipe.hset(
                self.keys.run(config.run_id, "review"),
                mapping={
                    "k": config.review.reviewers_per_item,
                    "rule": config.review.overlap_rule,
                },
            )
            pipe.sadd(self.keys.runs, config.run_id)
            pipe.execute()

    def save_gaps(self, run_id: str, gaps: list[Gap], report_json: str) -> None:
        """The run's gaps (one hash field each) and its full gap report, in one transaction."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.run(run_id, "gaps"))
            if gaps:
                pipe.hset(
                    self.keys.run(run_id, "gaps"),
                    mapping={g.id: g.model_dump_json() for g in gaps},
                )
            pipe.set(self.keys.run(run_id, "gap-report"), report_json)
            pipe.sadd(self.keys.runs, run_id)
            pipe.execute()

    def gaps(self, run_id: str) -> list[Gap]:
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id, "gaps")))
        return [Gap.model_validate_json(v) for _, v in sorted(raw.items())]

    def gap_report_json(self, run_id: str) -> str | None:
        return cast(str | None, self.redis.get(self.keys.run(run_id, "gap-report")))

    def accepted_payloads(self, run_id: str) -> list[SFTExample | PreferenceExample]:
        """What reviewers accepted in a run: the edited payload where they edited."""
        items = self.get_many(list(self.ids(run_id, CandidateStatus.ACCEPTED)))
        return [i.edited or i.payload for i in items if (i.edited or i.payload) is not None]  # type: ignore[misc]

    def get_run(self, run_id: str) -> RunConfig | None:
        raw = self.redis.get(self.keys.run(run_id, "config"))
        return RunConfig.model_validate_json(raw) if raw else None

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
            self._read_items(keys=[self.keys.item(i) for i in ids], args=_RAW_FIELDS),
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

    def runs(self) -> list[str]:
        return sorted(cast(set[str], self.redis.smembers(self.keys.runs)))

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
        return self.redis.scard(self.keys.run(run_id, f"status:{status.value}"))

    def ids(self, run_id: str, status: CandidateStatus) -> Iterator[str]:
        """Ids of a run's items with a status (SSCAN: no blocking on large sets)."""
        key = self.keys.run(run_id, f"status:{status.value}")
        yield from cast(Iterator[str], self.redis.sscan_iter(key, count=1000))

    def queue_depth(self, run_id: str) -> int:
        """Pending items not currently leased."""
        return self.redis.zcard(self.keys.run(run_id, "pending"))

    def leased_count(self, run_id: str) -> int:
        """Items currently leased (including leases expired but not yet reclaimed)."""
        return self.redis.zcard(self.keys.run(run_id, "leased"))

    # -- review -----------------------------------------------------------------------------

    def claim(self, reviewer: str, run_id: str, lease_seconds: float | None = None) -> Lease | None:
        """Atomically lease the highest-priority pending item to ``reviewer``.

        Expired leases go back to the queue first. Items this reviewer skipped are not handed to
        them again. Returns None when nothing is left for them.
        """
        if not reviewer:
            raise LeaseError("a reviewer id is required to claim an item")
        seconds = lease_seconds or self.lease_seconds
        reply = self._claim(
            keys=[
                self.keys.run(run_id, "pending"),
                self.keys.run(run_id, "leased"),
                self.keys.run(run_id, f"skipped:{reviewer}"),
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
        released = self._release(
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
        decision = Decision(
            item_id=item_id,
            run_id=run_id,
            reviewer=reviewer,
            verdict=verdict,
            reason_tags=reason_tags or [],
            note=note,
            edited_payload=edited_payload,
            item_version=expected_version,
        )
        edited = edited_payload.model_dump_json() if edited_payload is not None else ""
        try:
            version, entry_id, _run, gap = self._decide(
                keys=[
                    self.keys.item(item_id),
                    self.keys.run(run_id, "pending"),
                    self.keys.run(run_id, "leased"),
                    self.keys.run(run_id, f"skipped:{reviewer}"),
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
        return self._logged_action(
            self._undo, item_id, reviewer, "undo", [], keys=[self.keys.votes(item_id)]
        )

    def reopen(self, item_id: str, reviewer: str, note: str = "") -> LoggedDecision:
        """Bulk action: an auto-rejected item goes back to review."""
        return self._logged_action(self._bulk, item_id, reviewer, "reopen", ["pending"], note)

    def bulk_reject(
        self, item_id: str, reviewer: str, reason_tags: list[str], note: str = ""
    ) -> LoggedDecision:
        """Bulk action: reject a pending (unleased) or auto-rejected item without a lease."""
        return self._logged_action(
            self._bulk, item_id, reviewer, "bulk_reject", ["rejected"], note, reason_tags
        )

    def _logged_action(
        self,
        script: Any,
        item_id: str,
        reviewer: str,
        verdict: Verdict,
        extra: list[str],
        note: str = "",
        reason_tags: list[str] | None = None,
        keys: list[str] | None = None,
    ) -> LoggedDecision:
        run_id = self._run_of(item_id)
        version = int(cast(str, self.redis.hget(self.keys.item(item_id), "version")) or 0)
        decision = Decision(
            item_id=item_id,
            run_id=run_id,
            reviewer=reviewer,
            verdict=verdict,
            reason_tags=reason_tags or [],
            note=note,
            item_version=version,
        )
        body = decision.model_dump_json(exclude={"run_id", "gap_id"})
        args = [self.keys.prefix, item_id, *extra, *([verdict] if extra else [reviewer]), body]
        try:
            _version, entry_id, _run, gap = script(
                keys=[
                    self.keys.item(item_id),
                    self.keys.run(run_id, "pending"),
                    self.keys.run(run_id, "leased"),
                    self.keys.log,
                    *(keys or []),
                ],
                args=args,
            )
        except redis.ResponseError as exc:
            raise self._translate(exc, item_id, reviewer) from exc
        return LoggedDecision(entry_id, decision.model_copy(update={"gap_id": gap}))

    # -- exports ----------------------------------------------------------------------------

    def mark_exported(self, export_id: str, item_ids: list[str]) -> list[str | None]:
        """Mark the items exported (an undo is refused from now on); returns each item's
        previous mark, for ``unmark_exported`` should the export fail after all."""
        previous: list[str | None] = []
        for start in range(0, len(item_ids), _MARK_CHUNK):
            keys = [self.keys.item(i) for i in item_ids[start : start + _MARK_CHUNK]]
            previous.extend(
                cast(list[str | None], self._mark_exported(keys=keys, args=[export_id]))
            )
        return previous

    def unmark_exported(
        self, export_id: str, item_ids: list[str], previous: list[str | None]
    ) -> None:
        """Undo ``mark_exported``: each item gets its previous mark back, unless another export
        has marked it since."""
        for start in range(0, len(item_ids), _MARK_CHUNK):
            end = start + _MARK_CHUNK
            self._unmark_exported(
                keys=[self.keys.item(i) for i in item_ids[start:end]],
                args=[export_id, *(p or "" for p in previous[start:end])],
            )

    def record_export(self, record: dict[str, Any]) -> None:
        """Append an export's record (its items were marked by ``mark_exported``)."""
        self.redis.rpush(self.keys.exports, orjson.dumps(record).decode())

    def token_counts(self, fingerprint: str, keys: list[str]) -> list[int | None]:
        """Cached token counts of conversations under one tokenizer (None where not counted)."""
        found: list[int | None] = []
        for start in range(0, len(keys), 10_000):
            chunk = keys[start : start + 10_000]
            replies = cast(list[str | None], self.redis.hmget(self.keys.tokens(fingerprint), chunk))
            found.extend(None if r is None else int(r) for r in replies)
        return found

    def save_token_counts(self, fingerprint: str, counts: dict[str, int]) -> None:
        if counts:
            self.redis.hset(self.keys.tokens(fingerprint), mapping=counts)  # type: ignore[arg-type]

    def save_eval_report(self, run_id: str, report_json: str) -> None:
        """The run's latest eval report (the Overview page shows it)."""
        self.redis.set(self.keys.run(run_id, "eval_report"), report_json)

    def eval_report_json(self, run_id: str) -> str | None:
        return cast(str | None, self.redis.get(self.keys.run(run_id, "eval_report")))

    def exports(self) -> list[dict[str, Any]]:
        """Every recorded export, oldest first."""
        return [
            orjson.loads(r) for r in cast(list[str], self.redis.lrange(self.keys.exports, 0, -1))
        ]

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

    # -- helpers ------------------------------------------------------------------------------

    def _run_of(self, item_id: str) -> str:
        run_id = self.redis.hget(self.keys.item(item_id), "run")
        if run_id is None:
            raise ItemNotFoundError(f"no item {item_id!r} under prefix {self.keys.prefix!r}")
        return cast(str, run_id)

    @staticmethod
    def _translate(
        exc: redis.ResponseError, item_id: str, reviewer: str | None = None
    ) -> StoreError:
        code, _, detail = str(exc).partition(" ")
        if code == "NOT_FOUND":
            return ItemNotFoundError(f"no item {item_id!r}")
        if code == "STALE":
            return StaleVersionError(
                f"item {item_id} changed since it was read (now version {detail}); reload it"
            )
        if code == "TRANSITION":
            return InvalidTransitionError(f"item {item_id} is already {detail}")
        if code == "NOT_LEASED":
            holder = f"it is leased to {detail!r}" if detail else "nobody holds it"
            return LeaseError(f"{reviewer} does not hold the lease on item {item_id} ({holder})")
        if code == "NOT_YOURS":
            return LeaseError(f"item {item_id} was decided by {detail!r}, not {reviewer}")
        if code == "EXPORTED":
            return InvalidTransitionError(f"item {item_id} was exported ({detail}); not undone")
        if code == "LEASE_EXPIRED":
            return LeaseError(
                f"{reviewer}'s lease on item {item_id} expired; it went back to the queue"
            )
        return StoreError(f"item {item_id}: {exc}")

    def delete_prefix(self) -> int:
        """Delete every key under this store's prefix (tests, and `gapfill` campaign cleanup).

        Uses SCAN + UNLINK in batches, never FLUSHDB, so other programs' keys are untouched.
        """
        deleted = 0
        batch: list[str] = []
        for key in self.redis.scan_iter(match=f"{self.keys.prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(self.redis.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(self.redis.unlink(*batch))
        return deleted
