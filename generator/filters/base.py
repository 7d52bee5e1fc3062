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


def full_text(candidate: Candidate) -> str:
    """Every turn of the candidate (or its raw text), one per line: what duplicates compare."""
    if candidate.payload is None:
        return candidate.raw or ""
    return "\n".join(m.text for m in candidate.payload.turns())


def turn_texts(candidate: Candidate) -> tuple[str, ...]:
    """Each turn's text (or the raw text): what is embedded, one text at a time."""
    if candidate.payload is None:
        return (candidate.raw or "",)
    return tuple(m.text for m in candidate.payload.turns())


def prompt_text(candidate: Candidate) -> str:
    return candidate.payload.prompt_text() if candidate.payload is not None else ""


def response_texts(candidate: Candidate) -> list[str]:
    """The answer(s): the last assistant turn, or every answer of a pair or a ranking."""
    from generator.schema import PreferenceExample

    payload = candidate.payload
    if payload is None:
        return [candidate.raw or ""]
    if isinstance(payload, PreferenceExample):
        return [answer[-1].content for answer in payload.answers()]
    return [payload.response_text()]
