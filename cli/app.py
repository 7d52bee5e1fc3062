"""The ``gapfill`` application: the global options, and every command wired in from its module."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import (
    campaigns,
    coverage,
    data,
    export,
    generation,
    indexing,
    learning,
    review,
    server,
)
from cli.common import console, user_errors
from generator import __version__
from generator.config import load_settings
from generator.redis_server import PRIVATE_UMASK, private_dir

app = typer.Typer(
    name="gapfill",
    help="Find coverage gaps in a fine-tuning dataset, generate candidates for them, filter, "
    "review and export what humans approved.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"gapfill {__version__}")
        raise typer.Exit()


@app.callback()
@user_errors
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML settings file (else $GAPFILL_CONFIG)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    ctx.obj = settings = load_settings(config)
    if settings.data_dir.is_dir():  # an older version made it 0755; what it holds is private
        private_dir(settings.data_dir)


# In the order `gapfill --help` lists them.
app.command()(server.status)
app.command()(data.validate)
app.command("import")(data.import_file)
app.command()(data.rescreen)
app.command()(coverage.gaps)
app.command()(data.score)
app.command()(indexing.index)
app.command()(generation.worker)
app.command()(generation.generate)
app.command("run")(campaigns.run_command)
app.command("demo")(campaigns.demo_command)
app.command("export")(export.export_command)
app.command("eval")(export.eval_command)
app.command("audit")(export.audit_command)
app.command()(review.ui)
app.command("requeue-failed")(generation.requeue_failed)
app.add_typer(server.server_app, name="server")
app.add_typer(review.reviewer_app, name="reviewer")
app.add_typer(learning.replay_app, name="replay")
app.command()(learning.calibration)
app.command()(learning.prescreen)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    # Before anything writes a file: the store's files, caches, exports and reviewer tokens
    # are their owner's alone (0600 files, 0700 folders).
    os.umask(PRIVATE_UMASK)
    return app(args=argv if argv is not None else sys.argv[1:], prog_name="gapfill")
