"""Exact and near duplicates, against the existing dataset, accepted items and the batch itself.

Exact: a hash of the normalised text (NFKC, case-folded, whitespace collapsed). Near: MinHash
over word shingles with LSH (datasketch) to find candidates in sub-linear time, then the true
Jaccard of the shingle sets to confirm, or the candidates' character edit similarity
(RapidFuzz). Each filter searches a shared, read-only reference
(loaded from the disk cache, see ``reference``) and an overlay of its own for the items it was
given directly and the candidates it passed.
"""

from __future__ import annotations

from collections.abc import Iterable

from generator.filters.base import full_text
from generator.filters.reference import (
    ExactIndex,
    NearMatch,
    ReferenceItem,
    ShingleIndex,
    as_items,
)
from generator.schema import Candidate, Score

# RapidFuzz's Indel similarity of the normalised texts: at 0.9 a 1,000-character row differs in
# at most about 100 characters. difflib's ratio, which the labelled T0 pairs use, never exceeds it.
DEFAULT_EDIT_THRESHOLD = 0.9


class ExactDuplicateFilter:
    """Fails a candidate whose normalised text was seen before (existing, accepted, or earlier in
    the batch). Evidence: the id of the first occurrence."""

    name = "exact_duplicate"
    hard = True
    cost = 1

    def __init__(
        self,
        reference: Iterable[tuple[str, str] | ReferenceItem] = (),
        *,
        shared: ExactIndex | None = None,
    ) -> None:
        """``reference``: (source id, text) of the existing dataset and accepted items."""
        self.shared = shared
        self.local = ExactIndex()
        for item in as_items(reference):
            self.local.add(item.id, item.text)

    def _find(self, text: str) -> str | None:
        found = self.shared.find(text) if self.shared is not None else None
        return found if found is not None else self.local.find(text)

    def score(self, candidates: list[Candidate]) -> list[Score]:
        scores = []
        for candidate in candidates:
            text = full_text(candidate)
            first = self._find(text)
            if first is not None and first != candidate.id:
                scores.append(
                    Score(
                        filter=self.name,
                        value=1.0,
                        passed=False,
                        reason=f"exact duplicate of {first}",
                        evidence={"match": first},
                    )
                )
            else:
                self.local.add(candidate.id, text)
                scores.append(
                    Score(filter=self.name, value=0.0, passed=True, reason="no exact duplicate")
                )
        return scores


class NearDuplicateFilter:
    """Fails a candidate whose word-shingle Jaccard with an earlier text reaches ``threshold``,
    or (``edit_threshold``) whose characters are that similar to one of the LSH's candidates:
    templated rows that differ in a few words lose many shingles but few characters."""

    name = "near_duplicate"
    hard = True
    cost = 2

    def __init__(
        self,
        reference: Iterable[tuple[str, str] | ReferenceItem] = (),
        *,
        threshold: float = 0.8,
        edit_threshold: float | None = DEFAULT_EDIT_THRESHOLD,
        shingle_size: int = 3,
        num_perm: int = 128,
        shared: ShingleIndex | None = None,
    ) -> None:
        self.threshold = threshold
        self.edit_threshold = edit_threshold
        self.shared = shared
        self.local = ShingleIndex(threshold, shingle_size, num_perm)
        for item in as_items(reference):
            self.local.add(item.id, item.text)

    def nearest(self, text: str) -> tuple[str | None, float]:
        found = self.match(text)
        return found.id, found.jaccard

    def match(self, text: str) -> NearMatch:
        indexes = [self.local] if self.shared is None else [self.local, self.shared]
        found = [index.match(text, self.edit_threshold) for index in indexes]
        by_jaccard = max(found, key=lambda m: m.jaccard)
        by_edit = max(found, key=lambda m: m.edit)
        return NearMatch(by_jaccard.id, by_jaccard.jaccard, by_edit.edit_id, by_edit.edit)

    def score(self, candidates: list[Candidate]) -> list[Score]:
        return [self._score(candidate) for candidate in candidates]

    def _score(self, candidate: Candidate) -> Score:
        text = full_text(candidate)
        found = self.match(text)
        similarity = round(found.jaccard, 4)
        if found.id is not None and found.id != candidate.id and found.jaccard >= self.threshold:
            return Score(
                filter=self.name,
                value=similarity,
                passed=False,
                reason=f"near duplicate of {found.id} (Jaccard {found.jaccard:.2f})",
                evidence={"match": found.id, "jaccard": similarity},
            )
        edited = self.edit_threshold is not None and found.edit >= self.edit_threshold
        if edited and found.edit_id is not None and found.edit_id != candidate.id:
            return Score(
                filter=self.name,
                value=similarity,
                passed=False,
                reason=(
                    f"near duplicate of {found.edit_id} (edit similarity {found.edit:.2f}, "
                    f"Jaccard {found.jaccard:.2f})"
                ),
                evidence={
                    "match": found.edit_id,
                    "edit_similarity": round(found.edit, 4),
                    "jaccard": similarity,
                },
            )
        self.local.add(candidate.id, text)
        return Score(filter=self.name, value=similarity, passed=True, reason="no near duplicate")
