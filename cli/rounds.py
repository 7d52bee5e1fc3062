"""`gapfill run CONFIG --rounds K`: gaps → generate → score → review, round after round, until
the deficits close or a budget runs out; and the yield table `gapfill status` prints for them.

The library says what a round is, what was spent and where a round's review stands
(``generator.rounds``); here the rounds are run one after the other, each waiting for its
review (reviewers at the UI; `--ui` serves it from here) before the next is planned from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import typer
from rich.table import Table
from rich.text import Text

from cli.choices import Workers
from cli.common import console, open_store, settings_of, styled
from cli.review import settings_env
from generator.campaign import CampaignConfig, Plan, plan
from generator.config import Settings
from generator.errors import NoGapToFillError, RoundStalledError
from generator.factories import make_embedder, make_work_queue
from generator.queueing import WorkQueue
from generator.rounds import (
    RoundsBudget,
    RoundYield,
    already_planned,
    chain,
    over_budget,
    review_progress,
    round_run_id,
    round_yields,
    spent,
    stuck,
)
from generator.schema import check_identifier
from generator.store import Store

POLL_SECONDS = float(os.environ.get("GAPFILL_ROUNDS_POLL_SECONDS", "2"))


@dataclass
class RoundSteps:
    """What one round does besides planning, as the campaign command does it for one run."""

    announce_plan: Callable[[Plan, str | None], None]
    generate: Callable[[str], None]  # run id: generate and score it (or enqueue it)


def run_rounds(
    ctx: typer.Context,
    config: CampaignConfig,
    steps: RoundSteps,
    *,
    rounds: int,
    after: str | None,
    budget: RoundsBudget,
    workers: Workers,
    show_ui: bool,
    port: int,
) -> None:
    """Round 1 is ``config.run`` (after ``after``, if given), round n is ``<run>-r<n>``. A round
    already in the store is resumed, not planned again."""
    check_identifier(round_run_id(config.run, rounds), "--rounds (the last round's run id)")
    settings = settings_of(ctx)
    store = open_store(settings)
    work = make_work_queue(settings, store)
    embedder = make_embedder(settings)
    interface: subprocess.Popen[bytes] | None = None
    previous, last = after, None
    rounds_of_this_campaign = {round_run_id(config.run, n) for n in range(1, rounds + 1)}

    def ours(run_id: str) -> list[str]:
        """The budget counts this campaign's rounds, not the runs it was started --after."""
        return [c.run_id for c in chain(store, run_id) if c.run_id in rounds_of_this_campaign]

    try:
        for number in range(1, rounds + 1):
            run_id = round_run_id(config.run, number)
            if previous is not None and number > 1:
                used = spent(store, ours(previous), decisions=budget.decisions is not None)
                reason = over_budget(budget, used)
                if reason:
                    console.print(f"stopping before round {number}: {reason}", highlight=False)
                    break
            console.rule(f"round {number} of {rounds}: run {run_id}")
            if already_planned(store, run_id, previous, number):
                console.print(f"run {run_id!r} is in the store: resuming it", highlight=False)
            else:
                try:
                    planned = plan(
                        config.model_copy(update={"run": run_id}), store, embedder, after=previous
                    )
                except NoGapToFillError:
                    console.print(
                        f"stopping before round {number}: every gap is filled", highlight=False
                    )
                    break
                steps.announce_plan(planned, previous)
            steps.generate(run_id)
            last = run_id
            if show_ui and interface is None:
                interface = _serve_ui(settings, port)
            reason = _wait_for_review(
                _Waiting(store, work, run_id, number, workers), budget, ours(run_id)
            )
            previous = run_id
            if reason:
                console.print(f"stopping after round {number}: {reason}", highlight=False)
                break
    except KeyboardInterrupt:
        console.print(
            "stopped; run the same command again to resume from the round it stopped in",
            highlight=False,
        )
        raise typer.Exit(130) from None
    finally:
        if interface is not None:
            interface.terminate()
            try:
                interface.wait(timeout=30)
            except subprocess.TimeoutExpired:
                interface.kill()
    if last is not None:
        console.rule("the rounds' yield")
        print_rounds(round_yields(store, last))


def _serve_ui(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    """The review UI, local mode, as a child for as long as the rounds run."""
    command = [sys.executable, "-m", "cli", "ui", "--local", "--port", str(port)]
    env = {**os.environ, **settings_env(settings)}
    return subprocess.Popen(command, env=env)


@dataclass(frozen=True)
class _Waiting:
    store: Store
    work: WorkQueue
    run_id: str
    number: int
    workers: Workers


def _wait_for_review(waiting: _Waiting, budget: RoundsBudget, runs: list[str]) -> str | None:
    """Until the round is generated, scored and reviewed; or the reason it stops first: the
    decision budget spent over ``runs`` (the campaign's rounds so far), or work left undone
    that no job will do (seen twice in a row: a job between two steps is not a failure)."""
    store, run_id = waiting.store, waiting.run_id
    announced, undone = False, 0
    while True:
        progress = review_progress(store, run_id)
        if progress.settled:
            return None
        if budget.decisions is not None:
            reason = over_budget(RoundsBudget(decisions=budget.decisions), spent(store, runs))
            if reason:
                return reason
        reason = stuck(progress, waiting.work.busy())
        undone = undone + 1 if reason else 0
        if reason and undone >= 2:
            raise RoundStalledError(f"round {waiting.number} (run {run_id}): {reason}")
        if not announced:
            external = waiting.workers is Workers.EXTERNAL and not progress.generated
            console.print(
                f"round {waiting.number}: waiting for "
                f"{'workers and reviewers' if external else 'reviewers'}: {progress.waiting} "
                f"items to review in run {run_id} (gapfill ui; Ctrl-C stops, and the same "
                "command resumes)",
                highlight=False,
            )
            announced = True
        time.sleep(POLL_SECONDS)


def print_rounds(rows: list[RoundYield]) -> None:
    """Yield per round per gap: what each round generated, and what review made of it."""
    if len({row.run_id for row in rows}) < 2 and not any(row.round > 1 for row in rows):
        return
    table = Table(
        title="yield per round and gap (accepted by reviewers / generated)",
        caption="by model: accepted by the pre-screen alone (left out of exports unless asked)",
    )
    names = ("run", "gap", "label")
    figures = ("generated", "auto-rej.", "pending", "reviewed", "accepted", "by model")
    for header in ("round", *names, *figures):
        table.add_column(header, justify="left" if header in names else "right")
    table.add_column("yield", justify="right")
    for row in rows:
        rate = styled("-", "dim") if row.rate is None else f"{row.rate:.0%}"
        table.add_row(
            str(row.round),
            Text(row.run_id),
            Text(row.gap_id),
            Text(row.gap_label),
            *map(
                str,
                (
                    row.generated,
                    row.auto_rejected,
                    row.pending,
                    row.reviewed,
                    row.accepted,
                    row.accepted_by_model,
                ),
            ),
            rate,
        )
    console.print(table)
