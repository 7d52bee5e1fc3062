"""Rounds of a campaign: gaps → generate → score → review, again, until the gaps close or a
budget runs out (`gapfill run --rounds K`).

Each round is a run of its own (round 1 keeps the campaign's run id, round n is
``<run>-r<n>``), stored with the run it follows (``RunConfig.after``) and its number, so that
the chain can be walked back from any round: the funnel's yield per round per gap, the
deficits still open, and the budget spent are all read from the store, never from the
process that ran the loop. A loop that stops (Ctrl-C, a crash) is resumed by running it again.

What a round is worth is its yield: of what it generated, how much reviewers accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from generator.errors import ConfigError
from generator.export.selection import model_only_accepted, standing_decisions
from generator.schema import AUTO_REVIEWER, CandidateStatus, Gap, RunConfig
from generator.store import Store

ROUND_SEPARATOR = "-r"


def round_run_id(campaign_run: str, number: int) -> str:
    """The run id of round ``number`` of a campaign whose first round is ``campaign_run``."""
    return campaign_run if number == 1 else f"{campaign_run}{ROUND_SEPARATOR}{number}"


def chain(store: Store, run_id: str) -> list[RunConfig]:
    """The rounds that lead to ``run_id``, the first round first and ``run_id``'s own last
    (only ``run_id`` where it follows no run). An ``after`` naming a missing run, or a loop,
    ends the walk: what the store holds is reported, nothing invented."""
    found: list[RunConfig] = []
    seen: set[str] = set()
    current: str | None = run_id
    while current is not None and current not in seen:
        seen.add(current)
        config = store.get_run(current)
        if config is None:
            break
        found.append(config)
        current = config.after
    return found[::-1]


def already_planned(store: Store, run_id: str, previous: str | None, number: int) -> bool:
    """Whether round ``number`` (run ``run_id``, after ``previous``) is in the store already: a
    loop stopped part-way and run again resumes it. A run of that id that follows another run
    is refused: its items are not this round's."""
    found = store.get_run(run_id)
    if found is None:
        return False
    if found.after != previous:
        raise ConfigError(
            f"run {run_id!r} is in the store but is not round {number} of this campaign "
            f"(it follows {found.after!r}, not {previous!r}): give the campaign another run id"
        )
    return True


@dataclass(frozen=True)
class RoundYield:
    """One gap in one round: what was generated and what review made of it."""

    round: int
    run_id: str
    gap_id: str
    gap_label: str  # the gap's label as that round measured it ("" where it has none)
    generated: int
    auto_rejected: int
    pending: int  # still waiting for review (or for scoring)
    reviewed: int  # accepted or rejected, by anyone (the pre-screen's decisions included)
    accepted: int  # by reviewers: what fills the gap (exports leave the model's alone out)
    accepted_by_model: int  # by the pre-screen alone

    @property
    def rate(self) -> float | None:
        """Accepted per item generated: what a round's generation was worth."""
        return self.accepted / self.generated if self.generated else None


def round_yields(store: Store, run_id: str) -> list[RoundYield]:
    """Per round (oldest first) and per gap: the yield of every round up to ``run_id``."""
    rows = []
    for config in chain(store, run_id):
        counts = store.counts(config.run_id)
        model_only = model_only_accepted(store, config.run_id)
        labels = {gap.id: gap.label for gap in store.gaps(config.run_id)}
        for gap_id in sorted(counts):  # the gaps the round generated for
            by = counts.get(gap_id, {})
            everyone = by.get(CandidateStatus.ACCEPTED.value, 0)
            accepted = everyone - model_only[gap_id]
            rejected = by.get(CandidateStatus.REJECTED.value, 0)
            rows.append(
                RoundYield(
                    round=config.round,
                    run_id=config.run_id,
                    gap_id=gap_id,
                    gap_label=labels.get(gap_id, ""),
                    generated=sum(by.values()),
                    auto_rejected=by.get(CandidateStatus.AUTO_REJECTED.value, 0),
                    pending=by.get(CandidateStatus.PENDING.value, 0)
                    + by.get(CandidateStatus.GENERATED.value, 0),
                    reviewed=everyone + rejected,
                    accepted=accepted,
                    accepted_by_model=model_only[gap_id],
                )
            )
    return rows


def accepted_in(store: Store, rounds: list[RunConfig], gaps: list[Gap]) -> dict[str, int]:
    """gap -> items reviewers accepted for it over ``rounds``: only where a round measured the
    gap the same (id and label; a gap id is a cluster's number, which another measurement may
    give to another cluster). The pre-screen's own acceptances fill nothing: exports leave
    them out."""
    accepted: dict[str, int] = {}
    for config in rounds:
        then = {gap.id: gap.label for gap in store.gaps(config.run_id)}
        counts = store.counts(config.run_id)
        model_only = model_only_accepted(store, config.run_id)
        for gap in gaps:
            if then.get(gap.id) == gap.label:
                found = counts.get(gap.id, {}).get(CandidateStatus.ACCEPTED.value, 0)
                accepted[gap.id] = accepted.get(gap.id, 0) + found - model_only[gap.id]
    return accepted


class RoundsBudget(BaseModel):
    """What a campaign's rounds may spend, over all of them; None: no limit."""

    model_config = ConfigDict(extra="forbid")

    tokens: int | None = Field(
        default=None,
        ge=1,
        description="Generation tokens (prompt and completion, as the backend counts them). "
        "Checked before each round: a round that starts under it finishes.",
    )
    decisions: int | None = Field(
        default=None,
        ge=1,
        description="Reviewer decisions (a human's accept, reject, edit or swap; the "
        "pre-screen's are free). Checked while a round waits for review: once reached, the "
        "loop stops waiting and starts no other round.",
    )


@dataclass(frozen=True)
class Spent:
    tokens: int
    decisions: int


def spent(store: Store, run_ids: list[str], *, decisions: bool = True) -> Spent:
    """Tokens generated and reviewer decisions that stand (accept, edit, reject, adjudicate;
    not skips, nor undone ones, nor the pre-screen's) over the runs (rounds) named.
    ``decisions=False`` leaves the decision log unread (it is shared by every run)."""
    tokens = 0
    made = 0
    for run_id in run_ids:
        stats = store.run_stats(run_id)
        tokens += int(stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0))
        if decisions:
            standing = standing_decisions(store.decision_records(run_id))
            made += sum(d.reviewer != AUTO_REVIEWER for found in standing.values() for d in found)
    return Spent(tokens=tokens, decisions=made)


def over_budget(budget: RoundsBudget, used: Spent) -> str | None:
    """Why the rounds must stop on budget, or None while both limits leave room."""
    if budget.tokens is not None and used.tokens >= budget.tokens:
        return f"the token budget is spent ({used.tokens:,} of {budget.tokens:,} tokens)"
    if budget.decisions is not None and used.decisions >= budget.decisions:
        return (
            f"the reviewer-decision budget is spent ({used.decisions:,} of "
            f"{budget.decisions:,} decisions)"
        )
    return None


@dataclass(frozen=True)
class ReviewProgress:
    """Where a round's review stands: it is settled when nothing is left to generate, score,
    review or finish reviewing (a lease still held)."""

    tasks_open: int
    scoring: int
    waiting: int
    leased: int

    @property
    def generated(self) -> bool:
        """Every task done and every item scored."""
        return not (self.tasks_open or self.scoring)

    @property
    def settled(self) -> bool:
        return not (self.tasks_open or self.scoring or self.waiting or self.leased)


def stuck(progress: ReviewProgress, work_busy: bool) -> str | None:
    """Why a round cannot settle by waiting, or None: generation or scoring left undone while
    no job is queued, running or due for a retry (a job failed for good)."""
    if progress.generated or work_busy:
        return None
    return (
        f"{progress.tasks_open} generation tasks open and {progress.scoring} items unscored, "
        "with no job left to do them (gapfill status lists the failed jobs; gapfill "
        "requeue-failed puts them back, then the same command resumes)"
    )


def review_progress(store: Store, run_id: str) -> ReviewProgress:
    done, total = store.task_counts(run_id)
    counts = store.counts(run_id)
    scoring = sum(by.get(CandidateStatus.GENERATED.value, 0) for by in counts.values())
    waiting, leased = store.queue_figures(run_id)
    return ReviewProgress(total - done, scoring, waiting, leased)
