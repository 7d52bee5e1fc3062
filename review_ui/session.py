"""One reviewer's queue session: the item on screen, the next one already leased, and undo.

Plain Python over the store (no Streamlit), so the rules are tested without a browser. The next
item is claimed while the current one is shown, so a decision shows the next item at once: the
page never waits on a claim. A decision the store refuses (lease expired, item taken, stale
version) becomes a message for the reviewer and the item is dropped from the screen; nothing is
lost silently.

Leases belong to the reviewer, not to the tab: a claim hands back a live lease the reviewer
already holds before it takes a new item off the queue, so a reload or a new tab shows the item
the closed one showed, then its prefetched one, instead of "nothing left" while both sit leased.
When a tab's session ends (Streamlit clears its session-scoped resources when the tab's
connection goes: closed, reloaded or dropped) its prefetched lease is given back at once; the
item it showed stays leased, for the reviewer's next session or until the lease expires. A
heartbeat renewing short leases instead would rerun every open tab on a timer, and a key pressed
during a rerun can be dropped. Two open tabs of
one reviewer may show the same item: the first decision counts, the other tab's is refused (the
item is decided, or its version moved on) with a message, and that tab moves on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from generator.errors import StoreError
from generator.schema import (
    PII_CLEARED_TAG,
    PREFERENCE_PAIR_TAG,
    RANKED_TAG,
    PreferenceExample,
    SFTExample,
)
from generator.store import Lease, Store

REJECT_REASONS = ("duplicate", "wrong", "unsafe", "low quality", "off-gap", "PII", "other")
PAIR_TAG = PREFERENCE_PAIR_TAG
RANK_FIRST = (
    "rank its answers first (r, then their numbers, best first): accepting would keep the "
    "generated order, which the export does not take"
)


@dataclass
class Outcome:
    ok: bool
    message: str


@dataclass
class ReviewSession:
    store: Store
    reviewer: str
    run_id: str
    current: Lease | None = None
    upcoming: Lease | None = None
    history: list[str] = field(default_factory=list)  # item ids this session decided
    decided: int = 0
    ended: bool = False  # the tab's connection went (end()); a resumed tab calls resume()
    ranking: list[int] = field(default_factory=list)  # answers ranked so far, best first
    ranking_for: str | None = None  # the item they were ranked on
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.reviewer:
            raise StoreError("no decision without a known reviewer")

    def refresh(self) -> Lease | None:
        """Make sure an item is on screen and the next one is leased (not once the tab's session
        has ended: a prefetch then would stay leased, with nobody to see it, until it expired)."""
        # end() runs on the server's thread when the tab goes, maybe while the script thread is
        # here: the lock makes a prefetch either finish before end() gives it back, or not start.
        with self._lock:
            if self.current is None:
                self.current, self.upcoming = self.upcoming, None
                if self.current is None:
                    self.current = self.store.claim(self.reviewer, self.run_id)
            if self.current is not None and self.upcoming is None and not self.ended:
                self.upcoming = self.store.claim(
                    self.reviewer, self.run_id, holding=[self.current.item_id]
                )
            return self.current

    def _advance(self) -> None:
        self.current, self.upcoming = self.upcoming, None
        self.refresh()

    def _decide(
        self,
        verdict: str,
        *,
        reasons: list[str] | None = None,
        note: str = "",
        edited: SFTExample | PreferenceExample | None = None,
    ) -> Outcome:
        lease = self.current
        if lease is None:
            return Outcome(False, "no item on screen")
        try:
            self.store.decide(
                lease.item_id,
                self.reviewer,
                verdict,  # type: ignore[arg-type]
                lease.version,
                reason_tags=reasons,
                note=note,
                edited_payload=edited,
            )
        except StoreError as exc:
            self._advance()
            return Outcome(False, f"not recorded: {exc}")
        if verdict != "skip":
            self.history.append(lease.item_id)
            self.decided += 1
        self._advance()
        return Outcome(True, f"{verdict}: {lease.item_id[:12]}")

    def accept(self, clear_pii: bool = False) -> Outcome:
        """Accept; ``clear_pii`` records that the reviewer checked the item's PII/secret flag
        (without it, the export refuses a flagged item)."""
        if self._ranking_on_screen():
            return Outcome(False, RANK_FIRST)
        return self._decide("accept", reasons=[PII_CLEARED_TAG] if clear_pii else [])

    def _ranking_on_screen(self) -> bool:
        payload = self.current.item.payload if self.current is not None else None
        return isinstance(payload, PreferenceExample) and payload.ranked is not None

    def reject(self, reason: str, note: str = "") -> Outcome:
        return self._decide("reject", reasons=[reason], note=note)

    def skip(self) -> Outcome:
        return self._decide("skip")

    def edit(self, edited: SFTExample | PreferenceExample, *, as_pair: bool = False) -> Outcome:
        """Accept with the edited payload (the original is kept); ``as_pair`` asks the export
        for a preference pair too: the edited answer chosen, the original rejected."""
        if self._ranking_on_screen():
            return Outcome(False, RANK_FIRST)
        return self._decide("edit", edited=edited, reasons=[PAIR_TAG] if as_pair else [])

    def swap(self) -> Outcome:
        """Accept a preference pair with chosen and rejected swapped."""
        lease = self.current
        if lease is None or not isinstance(lease.item.payload, PreferenceExample):
            return Outcome(False, "only a preference pair can be swapped")
        if self._ranking_on_screen():
            return Outcome(False, RANK_FIRST)
        return self._decide("edit", edited=lease.item.payload.swapped(), reasons=["swapped"])

    def rank(self, number: str) -> Outcome:
        """One press of a ranking: answer ``number`` (as shown, from 1) is the next best. The
        last answer places itself; then the order is recorded (an edit with the answers
        reordered, tagged 'ranked') and the item accepted."""
        lease = self.current
        payload = lease.item.payload if lease is not None else None
        if lease is None or not isinstance(payload, PreferenceExample) or payload.ranked is None:
            return Outcome(False, "only an item with three or more answers can be ranked")
        if self.ranking_for != lease.item_id:
            self.ranking, self.ranking_for = [], lease.item_id
        count = len(payload.ranked)
        index = int(number) - 1 if number.isdigit() else -1
        if not 0 <= index < count:
            return Outcome(False, f"there is no answer {number}: press 1-{count}")
        if index in self.ranking:
            return Outcome(False, f"answer {number} is ranked already: {self.ranking_text()}")
        self.ranking.append(index)
        if len(self.ranking) < count - 1:
            return Outcome(True, f"ranked so far: {self.ranking_text()}")
        order = [*self.ranking, *(i for i in range(count) if i not in self.ranking)]
        self.cancel_ranking()
        return self._decide("edit", edited=payload.ordered(order), reasons=[RANKED_TAG])

    def ranking_text(self) -> str:
        return " > ".join(str(index + 1) for index in self.ranking) or "nothing yet"

    def cancel_ranking(self) -> None:
        self.ranking, self.ranking_for = [], None

    def undo(self) -> Outcome:
        """Take back this session's last decision; the item comes back on screen first."""
        if not self.history:
            return Outcome(False, "nothing to undo in this session")
        item_id = self.history[-1]
        try:
            self.store.undo(item_id, self.reviewer)
        except StoreError as exc:
            return Outcome(False, f"not undone: {exc}")
        self.history.pop()
        self.decided -= 1
        # Give the screen's items back and claim again: the undone item is the one to redo.
        self._release(self.current, self.upcoming)
        self.current = self.upcoming = None
        self.current = self._claim_specific(item_id)
        self.refresh()
        return Outcome(True, f"undone: {item_id[:12]} is back")

    def _claim_specific(self, item_id: str) -> Lease | None:
        """Claim until the undone item comes up (it went back with its priority), giving back
        the queue's items claimed on the way. Leases the reviewer held already (another tab's
        items, handed out first) stay theirs: giving them back would take them from that tab."""
        taken: list[Lease] = []
        found = None
        for _ in range(8):
            lease = self.store.claim(self.reviewer, self.run_id, holding=[t.item_id for t in taken])
            if lease is None:
                break
            if lease.item_id == item_id:
                found = lease
                break
            taken.append(lease)
        self._release(*(lease for lease in taken if not lease.reclaimed))
        return found

    def end(self) -> None:
        """The tab's session ended (closed, reloaded, or its connection dropped): give back the
        prefetched lease, so another reviewer can take that item now, not when it expires. The
        item on screen stays leased: it is what this reviewer sees first when they come back.
        Only this session's lease of it goes back (by its seq): if the reviewer's new session
        has claimed the item again meanwhile, that claim stays."""
        with self._lock:
            self.ended = True
            lease, self.upcoming = self.upcoming, None
        self._release(lease)

    def resume(self) -> None:
        """The tab's connection came back (Streamlit resumes a dropped session): prefetch again."""
        self.ended = False

    def close(self) -> None:
        """Give back what this session holds (sign-out, run change)."""
        self._release(self.current, self.upcoming)
        self.current = self.upcoming = None

    def _release(self, *leases: Lease | None) -> None:
        """Give back these leases, each only as this session holds it (by its seq): the same
        item may be on screen in the reviewer's other tab, under that tab's newer claim."""
        for lease in leases:
            if lease is not None:
                self.store.release(lease.item_id, self.reviewer, seq=lease.seq)


def edited_sft(original: SFTExample, contents: list[str]) -> SFTExample:
    """The reviewer's texts in place of the turns' contents; tool calls, the names on tool
    results and the tools list stay as they were (the editor shows them, read-only)."""
    data = original.model_dump(mode="json")
    for message, text in zip(data["messages"], contents, strict=True):
        message["content"] = text
    return SFTExample.model_validate(data)
