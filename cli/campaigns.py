"""The whole loop from a config file: ``gapfill run`` and ``gapfill demo``.

The library plans the run (``generator.campaign``); here the plan's jobs are enqueued for
external workers, or run by a burst worker in this process, and the review UI is started.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.choices import DemoSize, Workers
from cli.common import console, open_store, settings_of, user_errors
from cli.generation import run_in_process
from cli.review import ui
from cli.server import status
from cli.tables import print_outcome, print_report, truncated_so_far
from generator.backends import BackendOptions
from generator.campaign import CampaignConfig, load_campaign, plan
from generator.errors import ConfigError
from generator.factories import BackendChoice, BackendName, make_embedder, make_work_queue
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
    """The whole loop for a campaign: gaps, generation, scoring, then review."""
    _campaign(ctx, load_campaign(config), workers, show_ui, port, after)


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
    planned = plan(config, store, make_embedder(settings), after=after)
    print_report(planned.report)
    for gap_id, found in planned.feedback.items():
        if gap_id in planned.chosen:
            console.print(
                f"from run {after!r}, gap {gap_id}: {len(found.seeds)} accepted requests as "
                f"seeds; to avoid: {', '.join(f'{r} ({n})' for r, n in found.reasons.items())}"
                + (f"; {len(found.cut)} phrases reviewers cut" if found.cut else ""),
                highlight=False,
            )
    console.print(
        f"run {config.run!r}: {planned.tasks} generation tasks for the largest gaps "
        f"({', '.join(planned.chosen)})",
        highlight=False,
    )
    work = make_work_queue(settings, store)
    if workers is Workers.EXTERNAL:
        enqueued = work.enqueue_tasks(config.run)
        console.print(
            f"{enqueued.tasks} tasks enqueued in {len(enqueued.jobs)} jobs: start workers with "
            f"`gapfill worker --backend {config.backend}` (watch: gapfill status --run "
            f"{config.run})",
            highlight=False,
        )
        return
    console.rule(f"2/4 generate and score ({config.backend} backend, in this process)")
    choice = BackendChoice(
        name=BackendName(config.backend),
        model=config.model,
        options=BackendOptions(base_url=config.base_url),
    )
    spec = WorkerSpec(backend=choice)
    seconds = load_backend(settings, spec)
    console.print(f"backend loaded in {seconds:.1f}s", highlight=False)
    truncated = truncated_so_far(store, config.run)
    work.enqueue_tasks(config.run)
    run_in_process(settings, spec, store, work, config.run)
    print_outcome(store, work, config.run, truncated_before=truncated)
    console.rule("3/4 the funnel: generated -> auto-rejected -> pending review")
    status(ctx, run=config.run)
    if not show_ui:
        console.print(
            f"next: gapfill ui --local, then gapfill export --run {config.run} --kind "
            f"{config.kind} --out DIR",
            highlight=False,
        )
        return
    console.rule("4/4 review")
    ui(ctx, port=port, host="127.0.0.1", local=True, oidc=False)
