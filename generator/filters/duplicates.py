"""Exact and near duplicates, against the existing dataset, accepted items and the batch itself.

Exact: a hash of the normalised text (NFKC, case-folded, whitespace collapsed). Near: MinHash
over word shingles with LSH (datasketch) to find candidates in sub-linear time, then the true
Jaccard of the shingle sets to confirm. Each filter searches a shared, read-only reference
(loaded from the disk cache, see ``reference``) and an overlay of its own for the items it was
given directly and the candidates it passed.
"""

from __future__ import annotations

from collections.abc import Iterable

from generator.filters.base import full_text
from generator.filters.reference import ExactIndex, ReferenceItem, ShingleIndex, as_items
from generator.schema import Candidate, Score


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
    """Fails a candidate whose word-shingle Jaccard with an earlier text reaches ``threshold``."""

    name = "near_duplicate"
    hard = True
    cost = 2

    def __init__(
        self,
        reference: Iterable[tuple[str, str] | ReferenceItem] = (),
        *,
        threshold: float = 0.8,
        shingle_size: int = 3,
        num_perm: int = 128,
        shared: ShingleIndex | None = None,
    ) -> None:
        self.threshold = threshold
        self.shared = shared
        self.local = ShingleIndex(threshold, shingle_size, num_perm)
        for item in as_items(reference):
            self.local.add(item.id, item.text)

    def nearest(self, text: str) -> tuple[str | None, float]:
        found = [self.local.nearest(text)]
        if self.shared is not None:
            found.append(self.shared.nearest(text))
        return max(found, key=lambda match: match[1])

    def score(self, candidates: list[Candidate]) -> list[Score]:
        scores = []
        for candidate in candidates:
            text = full_text(candidate)
            match, similarity = self.nearest(text)
            if match is not None and match != candidate.id and similarity >= self.threshold:
                scores.append(
                    Score(
                        filter=self.name,
                        value=round(similarity, 4),
                        passed=False,
                        reason=f"near duplicate of {match} (Jaccard {similarity:.2f})",
                        evidence={"match": match, "jaccard": round(similarity, 4)},
                    )
                )
            else:
                scores.append(
                    Score(
                        filter=self.name,
                        value=round(similarity, 4),
                        passed=True,
                        reason="no near duplicate",
                    )
                )
                self.local.add(candidate.id, text)
        return scores
