"""Candidate text prepared for reading: code blocks apart from prose, word-level diffs, and
spans to highlight. Pure functions over strings (no Streamlit): what they return is drawn as
text (``st.text``, ``st.code``, or ``textContent`` in the marked-text component), never parsed as
HTML or Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

_WORD = re.compile(r"\s+|\w+|[^\w\s]")

Mark = Literal["", "add", "del", "pii"]


# rapidfuzz's LCS is bit-parallel C++: 2,000 words a side of a hostile, repetitive pair take a
# millisecond (difflib's matching took 85 s on such a pair: it is cubic on many short matches,
# on the server thread every reviewer shares). Its traceback holds N*M bits: 8,000 a side is
# 8 MB; longer answers are not compared word by word.
MAX_DIFF_TOKENS = 8000


class TooLongToDiff(ValueError):
    """Either side has more than ``MAX_DIFF_TOKENS`` words and spaces."""


def word_diff(before: str, after: str) -> list[tuple[str, Mark]]:
    """``before`` -> ``after`` as segments: unchanged text, deleted words (``del``) and added
    words (``add``), in reading order. Words and the spaces between them are the units, so a
    changed word is shown whole, never a few changed letters. TooLongToDiff beyond
    ``MAX_DIFF_TOKENS`` a side."""
    from rapidfuzz.distance import Indel

    old, new = _WORD.findall(before), _WORD.findall(after)
    if max(len(old), len(new)) > MAX_DIFF_TOKENS:
        raise TooLongToDiff(f"{max(len(old), len(new)):,} words and spaces")
    segments: list[tuple[str, Mark]] = []
    removed: list[str] = []
    added: list[str] = []
    for op in Indel.opcodes(old, new):
        if op.tag == "equal":
            # A changed stretch reads as what went, then what came.
            _append(segments, "".join(removed), "del")
            _append(segments, "".join(added), "add")
            removed, added = [], []
            _append(segments, "".join(old[op.src_start : op.src_end]), "")
        elif op.tag == "delete":
            removed += old[op.src_start : op.src_end]
        else:
            added += new[op.dest_start : op.dest_end]
    _append(segments, "".join(removed), "del")
    _append(segments, "".join(added), "add")
    return segments


def _append(segments: list[tuple[str, Mark]], text: str, mark: Mark) -> None:
    if not text:
        return
    if segments and segments[-1][1] == mark:
        segments[-1] = (segments[-1][0] + text, mark)
    else:
        segments.append((text, mark))


def changed_share(segments: Iterable[tuple[str, Mark]]) -> float:
    """How much of the diff is changed, by characters (0: identical)."""
    total = changed = 0
    for text, mark in segments:
        total += len(text)
        changed += len(text) if mark else 0
    return changed / total if total else 0.0


def masked_spans(text: str, spans: Iterable[tuple[str, str]]) -> list[tuple[str, Mark]]:
    """``text`` with each occurrence of a span's ``value`` replaced by its ``masked`` form and
    marked ``pii``: the finding shown where it is, without repeating it whole on screen."""
    unique = {value: masked for value, masked in spans if value}
    wanted = sorted(unique.items(), key=lambda span: -len(span[0]))  # longest first
    if not wanted:
        return [(text, "")] if text else []
    pattern = re.compile("|".join(re.escape(value) for value, _ in wanted))
    masks = dict(wanted)
    segments: list[tuple[str, Mark]] = []
    position = 0
    for match in pattern.finditer(text):
        _append(segments, text[position : match.start()], "")
        segments.append((masks[match.group(0)], "pii"))
        position = match.end()
    _append(segments, text[position:], "")
    return segments


def excerpts(segments: list[tuple[str, Mark]], context: int = 80) -> list[tuple[str, Mark]]:
    """Only the marked spans and ``context`` characters around each: long unmarked stretches
    are cut to their ends, joined by an ellipsis. Nothing marked: nothing to show."""
    if not any(mark for _, mark in segments):
        return []
    shown: list[tuple[str, Mark]] = []
    last = len(segments) - 1
    for index, (text, mark) in enumerate(segments):
        if mark or len(text) <= 2 * context:
            trimmed = text
            if not mark and index == 0 and len(text) > context:
                trimmed = "…" + text[-context:]
            elif not mark and index == last and len(text) > context:
                trimmed = text[:context] + "…"
        elif index == 0:
            trimmed = "…" + text[-context:]
        elif index == last:
            trimmed = text[:context] + "…"
        else:
            trimmed = text[:context] + " … " + text[-context:]
        _append(shown, trimmed, mark)
    return shown
