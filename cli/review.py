"""Human review: `gapfill ui` serves the Streamlit app; `gapfill reviewer add` signs people up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.choices import AuthMode
from cli.common import console, settings_of, user_errors
from generator import reviewers
from generator.connection import connect, redis_url
from generator.errors import ConfigError

reviewer_app = typer.Typer(help="Reviewer tokens for the review UI.", no_args_is_help=True)


@reviewer_app.command("add")
@user_errors
def reviewer_add(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The reviewer's id.")]
) -> None:
    """Create a reviewer token (printed once; only its hash is stored)."""
    settings = settings_of(ctx)
    token = reviewers.add(settings.data_dir, name)
    console.print(f"reviewer {name!r}: token {token}", highlight=False)
    console.print("Give it to the reviewer; it is not shown again.", highlight=False)


def app_path() -> Path:
    """The Streamlit entry file of the installed ``review_ui`` package.

    Imported here, not at the top: the GPU worker's image ships the CLI without the UI.
    """
    import review_ui

    return Path(review_ui.__file__).resolve().with_name("app.py")


@user_errors
def ui(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 for all).")] = "127.0.0.1",
    local: Annotated[
        bool, typer.Option(help="Single-user mode: decisions carry the OS user name.")
    ] = False,
    oidc: Annotated[
        bool, typer.Option(help="Sign in with st.login (an [auth] section in secrets.toml).")
    ] = False,
) -> None:
    """Start the Streamlit review UI against the configured store."""
    settings = settings_of(ctx)
    url = redis_url(settings)  # starts the bundled server first when no REDIS_URL is set
    connect(url).ping()
    mode = AuthMode.LOCAL if local else AuthMode.OIDC if oidc else AuthMode.TOKENS
    if mode is AuthMode.TOKENS and not reviewers.load(settings.data_dir):
        raise ConfigError("no reviewers yet: run gapfill reviewer add NAME (or use --local)")
    env = {
        **os.environ,
        "GAPFILL_UI_AUTH": mode.value,
        "GAPFILL_REDIS_URL": url,
        "GAPFILL_DATA_DIR": str(settings.data_dir),
        "GAPFILL_KEY_PREFIX": settings.key_prefix,
        "GAPFILL_LEASE_SECONDS": str(settings.lease_seconds),
    }
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.port", str(port), "--server.address", host, "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    console.print(f"review UI on http://{host}:{port} ({mode} sign-in)", highlight=False)
    raise typer.Exit(subprocess.call(command, env=env))
