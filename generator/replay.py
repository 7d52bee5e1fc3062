"""Replaying recorded reviews: items with the votes people gave them and a judge's verdicts.

A replay file is JSON Lines (plain or gzip), one item per line::

    {"id": "llmfao-17",                      # the source's own id for the item
     "gap": "k8s",                           # optional: the gap id it counts towards
     "model": "Alpaca (7B) vs Weaver 12k",   # optional: what made it (provenance)
     "example": {"prompt": [...], "chosen": [...], "rejected": [...]},  # any row import reads
     "votes": [{"reviewer": "crowd-58", "vote": "swap"},
               {"reviewer": "crowd-83", "vote": "reject", "reason": "tie"}],
     "judge": {"model": "gpt-4", "vote": "swap", "reason": ""}}       # optional

A vote is the review's own label: ``accept`` (as proposed), ``reject`` (with an optional reason
tag), and for a preference pair ``swap`` (accepted with chosen and rejected swapped). For a pair
from a side-by-side comparison, the left answer goes in ``chosen``: a vote for it is ``accept``,
for the right one ``swap``, and a tie ``reject`` (neither is the better answer to learn from).

Votes go through the store exactly as a reviewer's do: each is a lease of that item to that
reviewer and a decision under the run's overlap rule, appended to the decision log, in file
order. The run's ``k`` (reviewers per item) is the most votes any item has, unless set, so no
vote is refused for coming after the item was settled; an item with fewer votes than ``k``
stays pending, as it would in a live run. The judge's verdict is stored as the item's ``judge``
score (``evidence.recorded``), where calibration (``generator/calibration.py``) reads it.

The file is read and validated whole first; a bad line raises ``InvalidRowError`` naming it and
nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.dataset_reader import RowError, convert, describe, detect_format, iter_records
from generator.errors import DataFileError, InvalidRowError, StoreError
from generator.reviewers import NAME_PATTERN
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    Identifier,
    PreferenceExample,
    Provenance,
    RunConfig,
    Score,
    check_identifier,
)
from generator.screening import screen_all
from generator.store import Store

Label = Literal["accept", "swap", "reject"]
JUDGE_VALUE = {"accept": 1.0, "reject": 0.5, "swap": 0.0}  # the live pairwise judge's scale


class ReplayVote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A reviewer's name as `gapfill reviewer add` takes it: never the pre-screen's own id.
    reviewer: str = Field(pattern=f"^{NAME_PATTERN}$")
    vote: Label
    reason: str = Field(default="", max_length=200)


class ReplayJudge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    vote: Label
    reason: str = Field(default="", max_length=2000)


class ReplayRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    gap: Identifier = "replay"
    model: str | None = Field(default=None, max_length=400)
    example: dict[str, object]
    votes: list[ReplayVote] = Field(default_factory=list)
    judge: ReplayJudge | None = None


@dataclass(frozen=True)
class ReplayItem:
    row: ReplayRow
    line: int
    candidate: Candidate


@dataclass(frozen=True)
class ReplayResult:
    items: int
    stored: int
    votes: int
    applied: int
    k: int
    source_ids: dict[str, str]  # item id -> the source's id
    skipped: list[InvalidRowError]
    in_other_runs: list[str]  # source ids of examples another run holds: no vote applied


def read_replay(
    path: str | Path, run_id: str, *, skipped: list[InvalidRowError] | None = None
) -> list[ReplayItem]:
    """Every item of the file as a pending candidate of ``run_id``. The first bad line raises,
    unless ``skipped`` is given: then bad lines are left out and listed there (real data has
    them: 289 of LLMFAO's 2,139 pairs have an empty answer, which no dataset may hold)."""
    check_identifier(run_id, "run")
    items: list[ReplayItem] = []
    seen: dict[str, int] = {}  # the source's ids
    seen_content: dict[str, int] = {}  # item ids: one per content
    for line, record in iter_records(Path(path)):
        try:
            if isinstance(record, RowError):
                raise record
            row = ReplayRow.model_validate(record)
            example = convert(row.example, detect_format(row.example))
            _check_votes(row, isinstance(example, PreferenceExample))
        except (RowError, ValidationError, ValueError) as exc:
            error = InvalidRowError(str(path), line, _reason(exc))
            if skipped is None:
                raise error from exc
            skipped.append(error)
            continue
        if row.id in seen:
            raise InvalidRowError(str(path), line, f"id {row.id!r} again (line {seen[row.id]})")
        seen[row.id] = line
        candidate = Candidate(
            kind=CandidateKind.PREFERENCE
            if isinstance(example, PreferenceExample)
            else CandidateKind.SFT,
            payload=example,
            run_id=run_id,
            gap_id=row.gap,
            status=CandidateStatus.PENDING,
            provenance=Provenance(
                source="imported",
                model=row.model,
                run_id=run_id,
                source_file=str(path),
                source_line=line,
            ),
            scores={"judge": _judge_score(row.judge)} if row.judge is not None else {},
        )
        if candidate.id in seen_content:
            error = InvalidRowError(
                str(path), line, f"the same example as line {seen_content[candidate.id]}"
            )
            if skipped is None:
                raise error
            skipped.append(error)
            continue
        seen_content[candidate.id] = line
        items.append(ReplayItem(row, line, candidate))
    if not items:
        raise DataFileError(f"{path}: no rows")
    return items


def replay(
    store: Store,
    path: str | Path,
    run_id: str,
    *,
    k: int | None = None,
    rule: str = "majority",
    skip_invalid: bool = False,
) -> ReplayResult:
    """Store the file's items in ``run_id`` and apply its votes through leases and decisions."""
    skipped: list[InvalidRowError] | None = [] if skip_invalid else None
    items = read_replay(path, run_id, skipped=skipped)
    most = max(len(item.row.votes) for item in items)
    reviewers = k if k is not None else max(most, 1)
    if reviewers < most:
        raise DataFileError(f"{path}: an item has {most} votes, more than k={reviewers}")
    if run_id not in store.runs():
        store.save_run(
            RunConfig.model_validate(
                {
                    "run_id": run_id,
                    "review": {"reviewers_per_item": reviewers, "overlap_rule": rule},
                }
            )
        )
    elif store.review_rule(run_id)[0] < most:
        raise DataFileError(f"run {run_id!r} takes fewer reviewers per item than the file has")
    stored = store.put_many(screen_all([item.candidate for item in items]))
    # An example already stored in another run is that run's item (ids are content hashes): the
    # file's votes are not applied to it.
    elsewhere = {
        raw["id"]
        for raw in store.get_many_raw([item.candidate.id for item in items])
        if raw["run_id"] != run_id
    }
    applied = votes = 0
    for item in items:
        for vote in item.row.votes:
            votes += 1
            if item.candidate.id not in elsewhere:
                applied += _apply(store, item.candidate, vote)
    return ReplayResult(
        items=len(items),
        stored=stored,
        votes=votes,
        applied=applied,
        k=reviewers,
        source_ids={item.candidate.id: item.row.id for item in items},
        skipped=skipped or [],
        in_other_runs=sorted(item.row.id for item in items if item.candidate.id in elsewhere),
    )


def _apply(store: Store, candidate: Candidate, vote: ReplayVote) -> bool:
    """One vote as a reviewer casts it: lease the item, decide. False where the store refuses
    (the item settled, or the reviewer voted on it already)."""
    try:
        lease = store.claim_item(candidate.id, vote.reviewer)
    except StoreError:
        return False
    if vote.vote == "accept":
        store.decide(lease.item_id, vote.reviewer, "accept", lease.version)
    elif vote.vote == "reject":
        tags = [vote.reason] if vote.reason else []
        store.decide(lease.item_id, vote.reviewer, "reject", lease.version, reason_tags=tags)
    else:
        pair = lease.item.payload
        assert isinstance(pair, PreferenceExample)
        store.decide(
            lease.item_id,
            vote.reviewer,
            "edit",
            lease.version,
            reason_tags=["swapped"],
            edited_payload=pair.swapped(),
        )
    return True


def _check_votes(row: ReplayRow, pair: bool) -> None:
    reviewers = [vote.reviewer for vote in row.votes]
    if len(set(reviewers)) != len(reviewers):
        raise ValueError("votes: a reviewer votes twice on the item")
    if not pair and any(vote.vote == "swap" for vote in row.votes):
        raise ValueError("votes: 'swap' is for a preference pair only")
    if not pair and row.judge is not None and row.judge.vote == "swap":
        raise ValueError("judge: 'swap' is for a preference pair only")


def _judge_score(judge: ReplayJudge) -> Score:
    return Score(
        filter="judge",
        value=JUDGE_VALUE[judge.vote],
        passed=judge.vote != "reject",
        reason=(f"recorded verdict of {judge.model}: {judge.vote}. {judge.reason}").strip()[:300],
        evidence={"judge_model": judge.model, "recorded": judge.vote},
    )


def _reason(exc: Exception) -> str:
    return describe(exc) if isinstance(exc, ValidationError) else str(exc)
