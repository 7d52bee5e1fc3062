"""Whether an item's PII/secret screen is current: it was made on the text the item holds now.

The ``pii`` score carries, in its evidence, the hash of the content it screened
(``SCREENED_HASH``). An edit changes the content, so a score made before the edit is no longer
current; the export refuses an item whose score is missing or not current.
"""

from __future__ import annotations

from typing import Any

from generator.schema import content_hash

PII_FILTER = "pii"
SCREENED_HASH = "screened_hash"


def screened_content(item: dict[str, Any]) -> Any:
    """What a reviewer would export: the edit if there is one, else the payload, else raw."""
    for field in ("edited", "payload", "raw"):
        if item.get(field) is not None:
            return item[field]
    return None


def screened_hash(item: dict[str, Any]) -> str:
    """The hash a current ``pii`` score records for this item (stored JSON form)."""
    return content_hash("screened", screened_content(item))


def pii_score_is_current(item: dict[str, Any]) -> bool:
    """True when the item has a ``pii`` score made on its present content."""
    score = item.get("scores", {}).get(PII_FILTER)
    if not score:
        return False
    return bool(score.get("evidence", {}).get(SCREENED_HASH) == screened_hash(item))
