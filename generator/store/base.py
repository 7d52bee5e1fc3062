"""What every part of the store shares: the client, the key names, the Lua scripts, the errors."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, cast

import redis

from generator.errors import (
    InvalidTransitionError,
    ItemNotFoundError,
    LeaseError,
    StaleVersionError,
    StoreError,
)
from generator.store.keys import PREFIX, Keys

# The scripts that use the helpers of lua/common.lua (now_ms, move_status) get it prepended.
_WITH_COMMON = {
    "put",
    "route",
    "claim",
    "claim_item",
    "decide",
    "undo",
    "bulk",
    "adjudicate",
    "expire_leases",
    "queue_figures",
}
# Every script a store runs, each registered once per store (its SHA computed once).
_SCRIPTS = (
    *_WITH_COMMON,
    "release",
    "add_task",
    "mark_exported",
    "unmark_exported",
    "read_items",
    "rescreen",
)


@functools.cache
def lua(name: str) -> str:
    """The text of the script ``lua/<name>.lua``, as sent to the server."""
    text = resources.files("generator.store").joinpath("lua", f"{name}.lua").read_text("utf-8")
    return lua("common") + text if name in _WITH_COMMON else text


def _reply_as_sent(response: Any, **_options: Any) -> Any:
    return response


class StoreBase:
    """The connection, key names and scripts the store's parts (items, tasks, review, exports)
    work with; ``Store`` puts the parts together."""

    def __init__(
        self, client: redis.Redis, prefix: str = "gapfill", lease_seconds: float = 300
    ) -> None:
        if not PREFIX.fullmatch(prefix):
            raise StoreError(f"key prefix {prefix!r} must match {PREFIX.pattern}")
        if not client.get_connection_kwargs().get("decode_responses"):
            raise StoreError("the store needs a Redis client created with decode_responses=True")
        self.redis = client
        self.keys = Keys(prefix)
        self.lease_seconds = lease_seconds

        self._scripts = {name: client.register_script(lua(name)) for name in _SCRIPTS}
        # The same connections, replies as the server sent them: redis-py's own XRANGE reply
        # callback builds a dict per log entry, which at 100,000 entries cost more than the read
        # (and reshaping the entries in a Lua script cost the server three times the XRANGE).
        self._as_sent = redis.Redis(connection_pool=client.connection_pool)
        self._as_sent.set_response_callback("XRANGE", _reply_as_sent)

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
            return InvalidTransitionError(f"item {item_id} was exported ({detail}); not changed")
        if code == "AUDIT":
            return LeaseError(f"item {item_id} is in the audit share: left to human reviewers")
        if code == "VOTED":
            return LeaseError(f"{reviewer} has voted on item {item_id} already")
        if code == "NOT_SPLIT":
            return InvalidTransitionError(f"item {item_id}: its votes did not split")
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
