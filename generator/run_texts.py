"""The texts behind a run's evidence ids, for a reviewer to read: eval items, existing rows and
other candidates.

Filters keep evidence as ids and numbers only (an eval item's text must not leave in an export's
provenance). A reviewer deciding on a contamination or duplicate flag needs the text itself, so
the review UI looks it up here, from the run's own inputs (the files that travelled with it, by
content hash) and the store. Each run's files are read once per process.
"""

from __future__ import annotations

import logging
from pathlib import Path

from generator.errors import GapfillError, ItemNotFoundError
from generator.filters.contamination import load_eval_items
from generator.filters.stored_run import reference_items
from generator.run_inputs import InputCache
from generator.schema import RunConfig
from generator.store import Store

logger = logging.getLogger(__name__)


class RunTexts:
    """Id -> text for one run: ``eval_item`` for eval sets, ``neighbour`` for existing rows
    (``file:line``) and candidates (their ids). None when the id names nothing known."""

    def __init__(self, store: Store, config: RunConfig, inputs: InputCache) -> None:
        self.store = store
        self.config = config
        self.inputs = inputs
        self._eval: dict[str, str] | None = None
        self._existing: dict[str, str] | None = None

    def _files(self, role: str, recorded: list[str]) -> list[Path]:
        if self.config.inputs:
            return self.inputs.files(self.store, self.config, role)
        return [Path(p) for p in recorded]  # a run from before its inputs travelled

    def eval_item(self, item_id: str) -> str | None:
        if self._eval is None:
            self._eval = {}
            try:
                for path in self._files("eval_set", self.config.eval_sets):
                    self._eval.update(load_eval_items(path))
            except (GapfillError, OSError) as exc:  # shown as "text unavailable", never a crash
                logger.warning("run %s: eval sets unreadable: %s", self.config.run_id, exc)
        return self._eval.get(item_id)

    def neighbour(self, item_id: str) -> str | None:
        if ":" in item_id:  # an existing row, FILE:LINE
            if self._existing is None:
                self._existing = {}
                try:
                    for path in self._files("existing", self.config.existing):
                        for item in reference_items(path):
                            self._existing[item.id] = "\n\n".join(item.turns)
                except (GapfillError, OSError) as exc:
                    logger.warning("run %s: existing data unreadable: %s", self.config.run_id, exc)
            return self._existing.get(item_id)
        try:
            candidate = self.store.get(item_id)
        except ItemNotFoundError:
            return None
        example = candidate.edited or candidate.payload
        if example is None:
            return candidate.raw
        return "\n\n".join(m.text for m in example.turns())
