"""Human review: `gapfill ui` serves the Streamlit app; `gapfill reviewer` manages who signs in."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import AliasChoices

from cli.choices import AuthMode, Role
from cli.common import console, settings_of, user_errors
from generator import reviewers
from generator.access import OidcPolicy, allowed_hosts, check_ui_flags
from generator.config import Settings
from generator.connection import store_client
from generator.errors import ConfigError

reviewer_app = typer.Typer(
    help="Reviewers of the review UI: tokens and roles.", no_args_is_help=True
)


@reviewer_app.command("add")
@user_errors
def reviewer_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The reviewer's id (with OIDC: their e-mail).")],
    role: Annotated[Role, typer.Option(help="admin also exports, bulk-rejects, manages.")] = (
        Role.REVIEWER
    ),
) -> None:
    """Create a reviewer token (printed once; only its hash is stored).

    Adding an existing reviewer replaces their token: sessions signed in with the old one end.
    """
    settings = settings_of(ctx)
    existed = name in reviewers.load(settings.data_dir)
    token = reviewers.add(settings.data_dir, name, role)
    console.print(f"reviewer {name!r} ({role}): token {token}", highlight=False)
    console.print("Give it to the reviewer; it is not shown again.", highlight=False)
    if existed:
        console.print("Their old token no longer works.", highlight=False)


@reviewer_app.command("remove")
@user_errors
def reviewer_remove(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The reviewer's id.")]
) -> None:
    """Remove a reviewer: their token stops working.

    Their sessions end at their next action, and their leased items go back to the queue.
    """
    reviewers.remove(settings_of(ctx).data_dir, name)
    console.print(f"reviewer {name!r} removed", highlight=False)


@reviewer_app.command("role")
@user_errors
def reviewer_role(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The reviewer's id.")],
    role: Annotated[Role, typer.Argument(help="The new role.")],
) -> None:
    """Change a reviewer's role (their token stays valid)."""
    reviewers.set_role(settings_of(ctx).data_dir, name, role)
    console.print(f"reviewer {name!r} is now {role}", highlight=False)


@reviewer_app.command("list")
@user_errors
def reviewer_list(ctx: typer.Context) -> None:
    """The reviewers and their roles (never their token hashes)."""
    entries = reviewers.load(settings_of(ctx).data_dir)
    if not entries:
        console.print("no reviewers yet: gapfill reviewer add NAME", highlight=False)
    for name, entry in sorted(entries.items()):
        console.print(f"{name}\t{entry.role}")


def app_path() -> Path:
    """The Streamlit entry file of the installed ``review_ui`` package.

    Imported here, not at the top: the GPU worker's image ships the CLI without the UI.
    """
    import review_ui

    return Path(review_ui.__file__).resolve().with_name("app.py")


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as ``GAPFILL_*`` variables: the UI process builds the same Settings from
    them, whether they came from --config, the environment or the defaults."""
    env = {}
    for name, value in settings.model_dump(mode="json", exclude_none=True).items():
        alias = Settings.model_fields[name].validation_alias
        variable = str(alias.choices[0]) if isinstance(alias, AliasChoices) else None
        variable = variable or f"GAPFILL_{name.upper()}"
        env[variable] = value if isinstance(value, str) else json.dumps(value)
    return env


def check_sign_in(settings: Settings, mode: AuthMode) -> None:
    """Refuse to start a UI nobody can sign in to, or anyone can."""
    if mode is AuthMode.TOKENS:
        entries = reviewers.load(settings.data_dir)
        if not entries:
            raise ConfigError("no reviewers yet: run gapfill reviewer add NAME --role admin")
        if all(e.role is not Role.ADMIN for e in entries.values()):
            console.print(
                "note: no admin yet, so nobody can export from the UI "
                "(gapfill reviewer role NAME admin)",
                highlight=False,
            )
    if mode is AuthMode.OIDC:
        OidcPolicy.of(settings.oidc_allowed_emails, settings.oidc_allowed_domains)


@user_errors
def ui(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to bind (0.0.0.0 for all: needs ui_allowed_hosts).")
    ] = "127.0.0.1",
    local: Annotated[
        bool,
        typer.Option(help="Single-user mode on loopback: you, as admin, with no sign-in."),
    ] = False,
    oidc: Annotated[
        bool,
        typer.Option(
            help="Sign in with st.login (\\[auth] in secrets.toml) and the OIDC allow-list."
        ),
    ] = False,
) -> None:
    """Start the Streamlit review UI against the configured store."""
    settings = settings_of(ctx)
    check_ui_flags(host, local=local, oidc=oidc)
    hosts = allowed_hosts(host, settings.ui_allowed_hosts)
    mode = AuthMode.LOCAL if local else AuthMode.OIDC if oidc else AuthMode.TOKENS
    check_sign_in(settings, mode)
    # Starts the bundled server first when no REDIS_URL is set. The UI then finds it through
    # DATA_DIR's server.json, not a URL: a restarted server has a new password.
    store_client(settings).ping()
    inherited = {k: v for k, v in os.environ.items() if k != "GAPFILL_CONFIG"}
    env = {
        **inherited,  # every setting travels below, the config file's included
        **settings_env(settings),
        "GAPFILL_UI_AUTH": mode.value,
    }
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.port", str(port), "--server.address", host, "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--server.enableXsrfProtection", "true", "--server.enableCORS", "true",
        # Reviewers get no Deploy button or developer menu, and never a traceback (the app
        # logs it with an incident id; this covers what escapes it).
        "--client.toolbarMode", "minimal", "--client.showErrorDetails", "none",
        # Streamlit forces a full garbage collection after every script run: measured, over
        # half the server's CPU per decision (the heap is large), and the cause of most of the
        # wait when six reviewers decide at once. Python's own collector still runs.
        "--runner.postScriptGC", "false",
        *[arg for name in hosts for arg in ("--server.allowedHosts", name)],
    ]  # fmt: skip
    console.print(f"review UI on http://{host}:{port} ({mode} sign-in)", highlight=False)
    console.print(f"answering the host names {', '.join(hosts)}", highlight=False)
    sys.stdout.flush()
    # Streamlit takes this process's place, so a signal meant for `gapfill ui` reaches the
    # server (a child would outlive a terminated parent, still serving).
    os.execve(sys.executable, command, env)
