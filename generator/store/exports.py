"""What exports keep in the store: item marks, export records, token counts, eval reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from generator.store.base import StoreBase

_MARK_CHUNK = 10_000  # items per marking call: the server serves no one else during one


@dataclass
class Marks:
    """What ``mark_exported`` did: the items it marked and the ones it left, with why."""

    previous: dict[str, str | None] = field(default_factory=dict)  # marked -> its earlier mark
    refused: dict[str, str] = field(default_factory=dict)  # not marked -> why

    def add(self, item_id: str, reply: str, read_version: int) -> None:
        code, detail = reply[:1], reply[1:]
        if code == "+":
            self.previous[item_id] = detail or None
        elif code == "!":
            self.refused[item_id] = f"{detail} while the export ran (it read it accepted)"
        elif code == "~":
            self.refused[item_id] = (
                f"changed while the export ran (version {detail}, read at {read_version})"
            )
        else:
            self.refused[item_id] = f"marked by another export ({detail}) while this one ran"


class ExportsMixin(StoreBase):
    """Export marks on items, ``P:exports``, ``P:tokens:<fingerprint>``, eval reports."""

    def mark_exported(
        self,
        export_id: str,
        versions: Mapping[str, int],
        *,
        replacing: str | None = None,
        into: Marks | None = None,
    ) -> Marks:
        """Mark items exported (an undo is refused from then on), each only if it is still
        accepted at the version the export read (``versions``: item id -> version).

        ``replacing``: the id an earlier call of the same export marked with; only items still
        carrying it are marked (the export was rewritten without some items, under a new id).
        Check and mark are one step on the server per chunk, so no undo slips in between.
        ``into``: filled chunk by chunk, so a caller knows what was marked should one fail.
        """
        marks = into if into is not None else Marks()
        ids = list(versions)
        for start in range(0, len(ids), _MARK_CHUNK):
            chunk = ids[start : start + _MARK_CHUNK]
            replies = self._scripts["mark_exported"](
                keys=[self.keys.item(i) for i in chunk],
                args=[export_id, replacing or "", *(str(versions[i]) for i in chunk)],
            )
            for item_id, reply in zip(chunk, cast(list[str], replies), strict=True):
                marks.add(item_id, reply, versions[item_id])
        return marks

    def unmark_exported(self, export_id: str, previous: Mapping[str, str | None]) -> None:
        """Undo ``mark_exported``: each item gets its previous mark back, unless another export
        has marked it since."""
        ids = list(previous)
        for start in range(0, len(ids), _MARK_CHUNK):
            chunk = ids[start : start + _MARK_CHUNK]
            self._scripts["unmark_exported"](
                keys=[self.keys.item(i) for i in chunk],
                args=[export_id, *(previous[i] or "" for i in chunk)],
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
