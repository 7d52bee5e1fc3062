"""Exact and near duplicates, against the existing dataset, accepted items and the batch itself.

Exact: a hash of the normalised text (NFKC, case-folded, whitespace collapsed). Near: MinHash
over word shingles with LSH (datasketch) to find candidates in sub-linear time, then the true
Jaccard of the shingle sets to confirm, so the LSH's false positives never reach a verdict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from datasketch import MinHash, MinHashLSH

from generator.filters.base import full_text
from generator.filters.text import jaccard, normalise, shingles
from generator.schema import Candidate, Score


def _digest(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


class ExactDuplicateFilter:
    """Fails a candidate whose normalised text was seen before (existing, accepted, or earlier in
    the batch). Evidence: the id of the first occurrence."""

    name = "exact_duplicate"
    hard = True
    cost = 1

    def __init__(self, reference: Iterable[tuple[str, str]] = ()) -> None:
        """``reference``: (source id, text) of the existing dataset and accepted items."""
        self.seen: dict[str, str] = {}
        for source, text in reference:
            self.seen.setdefault(_digest(text), source)

    def score(self, candidates: list[Candidate]) -> list[Score]:
        scores = []
        for candidate in candidates:
            digest = _digest(full_text(candidate))
            first = self.seen.get(digest)
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
                self.seen.setdefault(digest, candidate.id)
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
        reference: Iterable[tuple[str, str]] = (),
        *,
        threshold: float = 0.8,
        shingle_size: int = 3,
        num_perm: int = 128,
    ) -> None:
        self.threshold = threshold
        self.shingle_size = shingle_size
        self.num_perm = num_perm
        # LSH at a lower threshold than the verdict: recall first, the exact Jaccard decides.
        self.lsh = MinHashLSH(threshold=max(threshold - 0.15, 0.3), num_perm=num_perm)
        self.texts: dict[str, set[str]] = {}
        for source, text in reference:
            self._add(source, shingles(text, shingle_size))

    def _minhash(self, grams: set[str]) -> MinHash:
        minhash = MinHash(num_perm=self.num_perm)
        minhash.update_batch([g.encode() for g in grams])
        return minhash

    def _add(self, key: str, grams: set[str]) -> None:
        if key in self.texts or not grams:
            return
        self.texts[key] = grams
        self.lsh.insert(key, self._minhash(grams))

    def nearest(self, text: str) -> tuple[str | None, float]:
        grams = shingles(text, self.shingle_size)
        if not grams:
            return None, 0.0
        best, best_score = None, 0.0
        for key in self.lsh.query(self._minhash(grams)):
            score = jaccard(grams, self.texts[key])
            if score > best_score:
                best, best_score = key, score
        return best, best_score

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
                self._add(candidate.id, shingles(text, self.shingle_size))
        return scores
