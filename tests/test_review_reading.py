"""Candidate text prepared for reading (review_ui/reading.py): code apart from prose, word
diffs, masked spans; all of it plain strings, none of it markup."""

from __future__ import annotations

from generator.code_blocks import Block, blocks
from review_ui.reading import changed_share, excerpts, masked_spans, word_diff


def test_fenced_code_is_cut_from_the_prose_around_it() -> None:
    text = "Use this:\n\n```python\ndef f():\n    return 1\n```\n\nThat is all."
    assert blocks(text) == [
        Block("Use this:"),
        Block("def f():\n    return 1", "python"),
        Block("That is all."),
    ]


def test_an_unclosed_fence_runs_to_the_end_and_tildes_fence_too() -> None:
    assert blocks("~~~\nx = 1\n") == [Block("x = 1\n", "")]
    assert blocks("Truncated:\n```js\nlet a =") == [Block("Truncated:"), Block("let a =", "js")]


def test_a_hostile_info_string_names_no_language() -> None:
    [block] = blocks('```"><script>alert(1)</script>\ncode\n```')
    assert block == Block("code", ""), "passed to the highlighter as no language at all"


def test_text_without_fences_is_one_prose_block_with_markup_untouched() -> None:
    text = "<img src=x onerror=alert(1)> and [link](javascript:alert(1))"
    assert blocks(text) == [Block(text)]


def test_a_word_diff_marks_whole_words_removed_and_added() -> None:
    diff = word_diff("I will not help with that.", "I will gladly help with that.")
    assert diff == [("I will ", ""), ("not", "del"), ("gladly", "add"), (" help with that.", "")]
    assert "".join(t for t, m in diff if m != "add") == "I will not help with that."
    assert "".join(t for t, m in diff if m != "del") == "I will gladly help with that."
    assert 0 < changed_share(diff) < 0.5
    assert changed_share(word_diff("same", "same")) == 0.0


def test_a_finding_is_shown_masked_where_it_is() -> None:
    segments = masked_spans(
        "Mail jane@example.org or jane@example.org.", [("jane@example.org", "j*g")]
    )
    assert segments == [("Mail ", ""), ("j*g", "pii"), (" or ", ""), ("j*g", "pii"), (".", "")]
    assert "jane@example.org" not in "".join(t for t, _ in segments)


def test_excerpts_keep_the_marks_and_their_context_only() -> None:
    text = "a" * 300 + "SECRET" + "b" * 300
    shown = excerpts(masked_spans(text, [("SECRET", "S**T")]), context=10)
    assert shown == [("…" + "a" * 10, ""), ("S**T", "pii"), ("b" * 10 + "…", "")]
    assert excerpts([("nothing marked", "")]) == []


def test_a_hostile_pair_is_diffed_in_bounded_time_and_one_too_long_is_refused() -> None:
    import time

    import pytest

    from review_ui.reading import MAX_DIFF_TOKENS, TooLongToDiff

    # Many short matches: difflib's cubic case (85 s for this pair of 2,000 characters).
    started = time.perf_counter()
    diff = word_diff("." * 2000, ".x" * 1000)
    assert time.perf_counter() - started < 0.5
    assert "".join(t for t, m in diff if m != "add") == "." * 2000
    assert "".join(t for t, m in diff if m != "del") == ".x" * 1000
    repetitive = " ".join(["alpha", "beta"] * (MAX_DIFF_TOKENS // 4))
    started = time.perf_counter()
    word_diff(repetitive, repetitive.replace("beta", "b"))
    assert time.perf_counter() - started < 0.5
    with pytest.raises(TooLongToDiff, match="words and spaces"):
        word_diff(repetitive * 2, "x")
