"""The review keys: what each key press on the queue does, decided on the server, once.

The browser side (``assets/keys.js``, a Streamlit v2 component in the page itself) queues every
press with the id of the item on screen and a sequence number, and sends it when the previous
press is acknowledged and the page is idle. So a press made while the page re-renders is never
dropped. Here each press is applied once per (page, sequence number), and only to the item it
was pressed for: a press meant for an item that has left the screen (it was decided, or the
page was still changing) is refused with a message, never applied to an item the reviewer may
not have seen. Undo and the key map act on no item, so they are never refused for that.

Plain Python (no Streamlit), so the rules are tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from review_ui.session import REJECT_REASONS

Mode = Literal["view", "reject", "edit", "rank"]
KEYS_JS = Path(__file__).parent / "assets" / "keys.js"

# (key, what it does), as the key map shows them; the reject reasons follow by number.
VIEW_KEYS = [
    ("a", "accept"),
    ("x", "reject: then a number for the reason"),
    ("e", "edit, then save (ctrl+enter) or cancel (esc)"),
    ("s", "skip"),
    ("u", "undo your last decision"),
    ("w", "swap chosen and rejected, and accept (a preference pair)"),
    ("r", "rank 3+ answers: their numbers, best first (the last places itself), then accepted"),
    ("j / ↓", "scroll the item down"),
    ("k / ↑", "scroll the item up"),
    ("?", "show or hide this key map"),
]
ACTIONS = {"a": "accept", "s": "skip", "u": "undo", "w": "swap"}
MODES = {"x": "reject", "e": "edit", "r": "rank"}
REASON_KEYS = {str(number): reason for number, reason in enumerate(REJECT_REASONS, 1)}
RANK_KEYS = [str(number) for number in range(1, 10)]
NO_ITEM_KEYS = {"u", "?"}  # keys that act on no item: never refused for a changed screen


class KeyPress(BaseModel):
    """One press, as the browser sends it: untrusted input, checked before anything reads it."""

    model_config = ConfigDict(extra="ignore")

    key: str = Field(max_length=16)
    seq: int = Field(ge=1)
    page: str = Field(min_length=1, max_length=64)
    item: str | None = Field(default=None, max_length=128)


@dataclass(frozen=True)
class Screen:
    """What the reviewer's page shows when a press is applied."""

    mode: Mode
    item: str | None  # the item on screen, if any
    pair: bool = False  # a preference pair: w swaps
    answers: int = 0  # a ranking's answers (3 or more): r ranks them


@dataclass(frozen=True)
class Step:
    """What a press does: an action on the session (with its arguments), a new mode, the key
    map toggled, or a refusal to show (``refused``)."""

    action: str | None = None
    args: tuple[str, ...] = ()
    mode: Mode | None = None
    keymap: Literal["toggle", "close"] | None = None
    refused: str = ""


ALL_KEYS = list(dict.fromkeys([*ACTIONS, *MODES, *REASON_KEYS, *RANK_KEYS, "?", "Escape"]))


def screen_keys(screen: Screen) -> list[str]:
    """The keys the browser sends to the server on this screen (the rest it leaves alone).

    Every review key, whatever the mode, so that a key pressed for the next screen (the '2'
    after an 'x', before the reasons are drawn) is held and sent, not dropped because the
    screen did not take it yet. The editor takes none: its text areas get the keys, and
    ctrl+enter and esc are its buttons' own."""
    return [] if screen.mode == "edit" else list(ALL_KEYS)


def parse(value: object) -> KeyPress | None:
    """The press the browser sent, or None when it is not one (never an error for the page)."""
    if not isinstance(value, dict):
        return None
    try:
        return KeyPress.model_validate(value)
    except ValidationError:
        return None


def step(press: KeyPress, screen: Screen) -> Step:
    """What ``press`` does on ``screen``."""
    key = press.key
    if key == "?":
        return Step(keymap="toggle")
    if key not in NO_ITEM_KEYS and press.item != screen.item:
        return Step(refused=changed_message(f"'{key}'", press.item, screen.item))
    if screen.mode == "reject":
        if key in REASON_KEYS:
            return Step(action="reject", args=(REASON_KEYS[key],))
        if key == "Escape":
            return Step(mode="view")
        return Step(refused=f"'{key}' does nothing here: press 1-{len(REASON_KEYS)} for a reason, "
                    "or esc to go back")  # fmt: skip
    if screen.mode == "rank":
        if key in RANK_KEYS and int(key) <= screen.answers:
            return Step(action="rank", args=(key,), mode="rank")
        if key == "Escape":
            return Step(mode="view")
        return Step(refused=f"'{key}' does nothing here: press the answers' numbers (1-"
                    f"{screen.answers}) best first, or esc to go back")  # fmt: skip
    if screen.mode == "edit":
        return Step(refused=f"'{key}' was not applied: save (ctrl+enter) or cancel (esc) first")
    if key == "Escape":
        return Step(keymap="close", mode="view")
    if key in RANK_KEYS:
        return Step(
            refused=f"'{key}' picks a reason after x (reject), or an answer after r (rank): "
            "nothing done"
        )
    if key in ("a", "w", "e") and screen.answers >= 3:
        return Step(
            refused=f"'{key}' does not apply to a ranking: rank its answers with r (their "
            "numbers, best first), or reject it with x"
        )
    if key == "w" and not screen.pair:
        return Step(refused="'w' swaps a preference pair; this item is not one")
    if key == "r" and screen.answers < 3:
        return Step(refused="'r' ranks three or more answers; this item has none")
    if key in ACTIONS:
        return Step(action=ACTIONS[key])
    if key in MODES:
        return Step(mode=MODES[key])  # type: ignore[arg-type]
    return Step(refused=f"'{key}' is not a review key: press ? for the key map")


def changed_message(what: str, pressed_for: str | None, shown: str | None) -> str:
    """Why a press or click was not applied: the screen it was made on has moved on."""
    if pressed_for is None:
        return f"{what} was made before an item was on screen: not applied. Press it again."
    if shown is None:
        return f"{what} was not applied: item {pressed_for[:12]} is no longer on screen."
    return (
        f"{what} was not applied: it was made for item {pressed_for[:12]}, which left the "
        f"screen before it arrived. Item {shown[:12]} is shown now: act again to decide it."
    )


@dataclass
class SeenPresses:
    """The last sequence number applied per page (a browser tab's page load): a press sent
    again (the browser resends one whose acknowledgement did not come) is applied once."""

    last: dict[str, int] = field(default_factory=dict)
    latest_page: str | None = None
    outcome: str = ""  # of the latest press: "applied" or "refused" (shown on the page)

    def first_time(self, press: KeyPress) -> bool:
        self.latest_page = press.page
        if press.seq <= self.last.get(press.page, 0):
            return False
        self.last[press.page] = press.seq
        self.outcome = "refused"  # until the press is applied
        return True

    def ack(self) -> dict[str, object] | None:
        """What the browser waits for before it sends its next press."""
        if self.latest_page is None:
            return None
        return {
            "page": self.latest_page,
            "seq": self.last[self.latest_page],
            "outcome": self.outcome,  # counted by the browser: every press gets one
        }
