"""The filter Protocol: filters annotate candidates with a Score; they never delete anything."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from generator.schema import Candidate, Score


@runtime_checkable
class Filter(Protocol):
    """Scores a batch of candidates, one ``Score`` each, in order.

    ``hard``: a failed score auto-rejects the candidate (a reviewer can still overturn it).
    ``cost``: relative cost; the pipeline runs cheap filters first.
    """

    name: str
    hard: bool
    cost: int

    def score(self, candidates: list[Candidate]) -> list[Score]: ...
