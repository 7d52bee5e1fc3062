"""Text normalisation shared by the duplicate, contamination and quality filters (pure
functions)."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)
# A sentence ends at . ! ? (and what closes them) or at a line break; one pass, no backtracking.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]\u201d\u2019]*\s+|\n+")


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: what "the same text" means for exact duplicates."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def sentences(text: str) -> list[str]:
    """The text cut at sentence ends and line breaks, blank pieces dropped."""
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece.strip()]


def shingles(text: str, size: int) -> set[str]:
    """Word n-grams; a text shorter than ``size`` words is one shingle."""
    tokens = words(text)
    if len(tokens) < size:
        return {" ".join(tokens)} if tokens else set()
    # zip over shifted views: about twice as fast as slicing a window per position
    return set(map(" ".join, zip(*(tokens[i:] for i in range(size)), strict=False)))


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
