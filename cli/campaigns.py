"""The whole loop from a config file: ``gapfill run`` and ``gapfill demo``.

The library plans the run (``generator.campaign``); here the plan's jobs are enqueued for
external workers, or run by a burst worker in this process, and the review UI is started.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cli.choices import DemoSize, Workers
from cli.common import console, open_store, settings_of, user_errors
from cli.generation import run_in_process
from cli.review import ui
from cli.rounds import RoundSteps, run_rounds
from cli.server import status
from cli.tables import print_outcome, print_report, truncated_so_far
from generator.backends import BackendOptions
from generator.campaign import CampaignConfig, Plan, load_campaign, plan
from generator.config import Settings
from generator.errors import ConfigError, InvalidValueError
from generator.factories import BackendChoice, BackendName, make_embedder, make_work_queue
from generator.queueing import WorkQueue
from generator.rounds import RoundsBudget, review_progress
from generator.store import Store
from workers.main import WorkerSpec, load_backend

DEMO_SIZES = {
    DemoSize.SMALL: {"gaps": 3, "per_gap": 4},
    DemoSize.MEDIUM: {"gaps": 5, "per_gap": 10},
}
ShowUI = Annotated[bool, typer.Option("--ui/--no-ui", help="Then serve the review UI.")]
Port = Annotated[int, typer.Option(help="The review UI's port.")]


def _print_schema(wanted: bool) -> None:
    """``--schema``: the campaign file's JSON schema, every key described, then exit (eager, so
    no CONFIG is needed)."""
    if wanted:
        schema = CampaignConfig.model_json_schema()
        sys.stdout.write(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        raise typer.Exit()


@user_errors
def run_command(
    ctx: typer.Context,
    config: Annotated[
        Path, typer.Argument(help="The campaign's YAML config (keys: docs/campaign.md).")
    ],
    workers: Annotated[
        Workers, typer.Option(help="inprocess (a burst worker here) or external (enqueue only).")
    ] = Workers.INPROCESS,
    show_ui: ShowUI = False,
    port: Port = 8501,
    after: Annotated[
        str | None,
        typer.Option(
            help="The run this one is the next round of: its accepted items count against the "
            "gaps, its accepted requests lead the seeds, and what its reviewers turned down or "
            "cut is listed for the model to avoid."
        ),
    ] = None,
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            max=100,
            help="Repeat gaps -> generate -> score -> review this many times, each round "
            "waiting for its review (at the UI) and learning from it, until the deficits close "
            "or a budget runs out. Round n is run <run>-r<n>; the same command resumes.",
        ),
    ] = 1,
    token_budget: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --rounds: start no round once the rounds have generated this many "
            "tokens (prompt and completion).",
        ),
    ] = None,
    decision_budget: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --rounds: stop once reviewers have made this many decisions over the "
            "rounds (the pre-screen's are not counted).",
        ),
    ] = None,
    schema: Annotated[
        bool,
        typer.Option(
            "--schema",
            help="Print the campaign file's JSON schema (every key, described) and exit; "
            "a CAMPAIGN given too is not read.",
            is_eager=True,
            callback=_print_schema,
        ),
    ] = False,
) -> None:
    """The whole loop for a campaign: gaps, generation, scoring, then review (--rounds: again,
    learning from each round's review)."""
    if rounds == 1 and (token_budget or decision_budget):
        raise InvalidValueError("--token-budget and --decision-budget limit --rounds 2 or more")
    campaign = load_campaign(config)
    if rounds == 1:
        _campaign(ctx, campaign, workers, show_ui, port, after)
        return
    budget = RoundsBudget(tokens=token_budget, decisions=decision_budget)
    _rounds(ctx, campaign, _RoundOptions(rounds, after, budget, workers, show_ui, port))


@dataclass(frozen=True)
class _RoundOptions:
    rounds: int
    after: str | None
    budget: RoundsBudget
    workers: Workers
    show_ui: bool
    port: int


@user_errors
def demo_command(
    ctx: typer.Context,
    size: Annotated[
        DemoSize, typer.Option(help="small (minutes on a laptop CPU) or medium.")
    ] = DemoSize.SMALL,
    show_ui: ShowUI = True,
    port: Port = 8501,
) -> None:
    """The main job on bundled defaults: the self-instruct seed tasks' gaps against real user
    traffic, filled by the bundled model, scored, and put up for review."""
    config = load_campaign(_examples_dir() / "demo" / "campaign.yaml", dict(DEMO_SIZES[size]))
    _campaign(ctx, config, Workers.INPROCESS, show_ui, port)


def _examples_dir() -> Path:
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (base / "examples" / "demo" / "campaign.yaml").is_file():
            return base / "examples"
    raise ConfigError("examples/demo not found: run gapfill demo from the project directory")


def _campaign(
    ctx: typer.Context,
    config: CampaignConfig,
    workers: Workers,
    show_ui: bool,
    port: int,
    after: str | None = None,
) -> None:
    settings = settings_of(ctx)
    store = open_store(settings)
    console.rule(f"1/4 gaps of {config.data.name}")
    _announce_plan(plan(config, store, make_embedder(settings), after=after), after)
    if workers is Workers.EXTERNAL:
        _enqueue(ctx, config, config.run)
        return
    _generate_here(ctx, config, config.run, _Backend())
    if not show_ui:
        console.print(
            f"next: gapfill ui --local, then gapfill export --run {config.run} --kind "
            f"{config.kind} --out DIR",
            highlight=False,
        )
        return
    console.rule("4/4 review")
    ui(ctx, port=port, host="127.0.0.1", local=True, oidc=False)


def _rounds(
    ctx: typer.Context,
    config: CampaignConfig,
    options: _RoundOptions,
) -> None:
    backend = _Backend()

    def generate(run_id: str) -> None:
        if options.workers is Workers.EXTERNAL:
            _enqueue(ctx, config, run_id)
        else:
            _generate_here(ctx, config, run_id, backend)

    run_rounds(
        ctx,
        config,
        RoundSteps(announce_plan=_announce_plan, generate=generate),
        rounds=options.rounds,
        after=options.after,
        budget=options.budget,
        workers=options.workers,
        show_ui=options.show_ui,
        port=options.port,
    )


def _announce_plan(planned: Plan, after: str | None) -> None:
    print_report(planned.report)
    for gap_id, found in planned.feedback.items():
        if gap_id in planned.chosen:
            console.print(
                f"from run {after!r} and its rounds, gap {gap_id}: {len(found.seeds)} accepted "
                "requests as seeds; to avoid: "
                + ", ".join(f"{r} ({n})" for r, n in found.reasons.items())
                + (f"; {len(found.cut)} phrases reviewers cut" if found.cut else ""),
                highlight=False,
            )
    console.print(
        f"run {planned.run!r}: {planned.tasks} generation tasks for the largest gaps "
        f"({', '.join(planned.chosen)})",
        highlight=False,
    )


def _enqueue(ctx: typer.Context, config: CampaignConfig, run_id: str) -> None:
    settings = settings_of(ctx)
    enqueued = make_work_queue(settings, open_store(settings)).enqueue_tasks(run_id)
    console.print(
        f"{enqueued.tasks} tasks enqueued in {len(enqueued.jobs)} jobs: start workers with "
        f"`gapfill worker --backend {config.backend}` (watch: gapfill status --run {run_id})",
        highlight=False,
    )


@dataclass
class _Backend:
    """The backend, loaded in this process on the first round that generates."""

    spec: WorkerSpec | None = None


def _generate_here(
    ctx: typer.Context, config: CampaignConfig, run_id: str, backend: _Backend
) -> None:
    settings = settings_of(ctx)
    store = open_store(settings)
    work = make_work_queue(settings, store)
    console.rule(f"2/4 generate and score ({config.backend} backend, in this process)")
    if review_progress(store, run_id).generated:  # a resumed round: its work is done
        console.print(f"run {run_id!r}: generated and scored already", highlight=False)
    else:
        _run_here(settings, config, store, work, run_id, backend)
    console.rule("3/4 the funnel: generated -> auto-rejected -> pending review")
    status(ctx, run=run_id)


def _run_here(
    settings: Settings,
    config: CampaignConfig,
    store: Store,
    work: WorkQueue,
    run_id: str,
    backend: _Backend,
) -> None:
    if backend.spec is None:
        choice = BackendChoice(
            name=BackendName(config.backend),
            model=config.model,
            options=BackendOptions(base_url=config.base_url),
        )
        backend.spec = WorkerSpec(backend=choice)
        seconds = load_backend(settings, backend.spec)
        console.print(f"backend loaded in {seconds:.1f}s", highlight=False)
    truncated = truncated_so_far(store, run_id)
    work.enqueue_tasks(run_id)
    run_in_process(settings, backend.spec, store, work, run_id)
    print_outcome(store, work, run_id, truncated_before=truncated)
