"""The review keys' rules (review_ui/keys.py): each press is applied once, only to the item it
was pressed for, or refused with a message; never dropped in silence, never applied twice."""

from __future__ import annotations

import pytest

from review_ui.keys import KeyPress, Screen, SeenPresses, parse, screen_keys, step

SHOWN = Screen(mode="view", item="item-b")


def press(key: str, item: str | None = "item-b", seq: int = 1, page: str = "p1") -> KeyPress:
    return KeyPress(key=key, seq=seq, page=page, item=item)


@pytest.mark.parametrize(("key", "action"), [("a", "accept"), ("s", "skip"), ("u", "undo")])
def test_a_press_for_the_item_on_screen_acts_on_it(key: str, action: str) -> None:
    assert step(press(key), SHOWN).action == action


def test_a_press_made_for_an_item_that_left_the_screen_is_refused_not_applied() -> None:
    result = step(press("a", item="item-a"), SHOWN)
    assert result.action is None
    assert "not applied" in result.refused and "item-a" in result.refused
    assert "item-b" in result.refused, "says which item is shown now"


def test_a_press_made_before_any_item_showed_is_refused() -> None:
    result = step(press("a", item=None), SHOWN)
    assert result.action is None and "before an item was on screen" in result.refused


def test_undo_and_the_key_map_need_no_item_on_screen() -> None:
    # 'a' then 'u' pressed fast: the undo was pressed while item-a showed; it undoes item-a.
    assert step(press("u", item="item-a"), SHOWN).action == "undo"
    assert step(press("?", item=None), SHOWN).keymap == "toggle"


def test_x_opens_the_reasons_and_one_number_then_decides() -> None:
    assert step(press("x"), SHOWN).mode == "reject"
    reject = Screen(mode="reject", item="item-b")
    result = step(press("2"), reject)
    assert (result.action, result.args) == ("reject", ("wrong",))
    assert step(press("Escape"), reject).mode == "view"
    assert "1-7" in step(press("a"), reject).refused, "no accept in the reject mode"


def test_w_swaps_only_a_preference_pair() -> None:
    assert "not one" in step(press("w"), SHOWN).refused
    assert step(press("w"), Screen(mode="view", item="item-b", pair=True)).action == "swap"


def test_in_the_editor_the_browser_sends_no_keys_and_a_late_one_is_refused() -> None:
    editing = Screen(mode="edit", item="item-b")
    assert screen_keys(editing) == []
    assert "save" in step(press("a"), editing).refused


def test_every_review_key_is_sent_whatever_the_screen_so_none_waits_for_its_screen() -> None:
    for screen in (SHOWN, Screen(mode="reject", item="item-b"), Screen(mode="view", item=None)):
        assert {"a", "x", "e", "s", "u", "w", "1", "7", "?", "Escape"} <= set(screen_keys(screen))


def test_a_reason_number_without_x_first_is_refused() -> None:
    assert "after x" in step(press("2"), SHOWN).refused


def test_a_press_sent_again_is_applied_once() -> None:
    seen = SeenPresses()
    assert seen.first_time(press("a", seq=1))
    assert not seen.first_time(press("a", seq=1)), "the browser's resend"
    assert seen.ack() == {"page": "p1", "seq": 1, "outcome": "refused"}
    assert seen.first_time(press("a", seq=2))
    assert seen.first_time(press("a", seq=1, page="p2")), "a reloaded page counts anew"
    assert seen.ack() == {"page": "p2", "seq": 1, "outcome": "refused"}


@pytest.mark.parametrize(
    "value",
    [None, "a", [], {"key": "a"}, {"key": "a", "seq": 0, "page": "p"},
     {"key": "x" * 40, "seq": 1, "page": "p"}, {"key": "a", "seq": 1, "page": ""},
     {"key": "a", "seq": "one", "page": "p"}],
)  # fmt: skip
def test_anything_else_from_the_browser_is_ignored_not_an_error(value: object) -> None:
    assert parse(value) is None


def test_a_well_formed_press_parses() -> None:
    parsed = parse({"key": "a", "seq": 3, "page": "ab12", "item": "i1", "extra": 1})
    assert parsed == KeyPress(key="a", seq=3, page="ab12", item="i1")


def test_r_ranks_only_three_or_more_answers_by_their_numbers() -> None:
    pair = Screen(mode="view", item="item-b", pair=True)
    assert "three or more answers" in step(press("r"), pair).refused
    four = Screen(mode="view", item="item-b", pair=True, answers=4)
    assert step(press("r"), four).mode == "rank"
    ranking = Screen(mode="rank", item="item-b", pair=True, answers=4)
    result = step(press("3"), ranking)
    assert (result.action, result.args, result.mode) == ("rank", ("3",), "rank")
    assert "1-4" in step(press("5"), ranking).refused, "no answer 5"
    assert "1-4" in step(press("a"), ranking).refused, "no accept while ranking"
    assert step(press("Escape"), ranking).mode == "view"
    assert "9" in screen_keys(ranking), "a ranking of nine answers has a key for each"


def test_a_ranking_is_ranked_or_rejected_never_accepted_swapped_or_edited_as_generated() -> None:
    four = Screen(mode="view", item="item-b", answers=4)
    for key in ("a", "w", "e"):
        assert "rank its answers with r" in step(press(key), four).refused
    assert step(press("x"), four).mode == "reject"
