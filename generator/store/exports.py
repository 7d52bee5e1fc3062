"""What exports keep in the store: item marks, export records, token counts, eval reports."""

from __future__ import annotations

from typing import Any, cast

import orjson

from generator.store.base import StoreBase

_MARK_CHUNK = 10_000  # items per marking call: the server serves no one else during one


class ExportsMixin(StoreBase):
    """Export marks on items, ``P:exports``, ``P:tokens:<fingerprint>``, eval reports."""

    def mark_exported(self, export_id: str, item_ids: list[str]) -> list[str | None]:
        """Mark the items exported (an undo is refused from now on); returns each item's
        previous mark, for ``unmark_exported`` should the export fail after all."""
        previous: list[str | None] = []
        for start in range(0, len(item_ids), _MARK_CHUNK):
            keys = [self.keys.item(i) for i in item_ids[start : start + _MARK_CHUNK]]
            previous.extend(
                cast(list[str | None], self._scripts["mark_exported"](keys=keys, args=[export_id]))
            )
        return previous

    def unmark_exported(
        self, export_id: str, item_ids: list[str], previous: list[str | None]
    ) -> None:
        """Undo ``mark_exported``: each item gets its previous mark back, unless another export
        has marked it since."""
        for start in range(0, len(item_ids), _MARK_CHUNK):
            end = start + _MARK_CHUNK
            self._scripts["unmark_exported"](
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
