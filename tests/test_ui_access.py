"""Who reaches the review UI: the OIDC allow-list, the host names it answers, the flags `gapfill
ui` refuses; and a real Streamlit server started by `gapfill ui`, asked with foreign headers."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.access import (
    NotAllowedError,
    OidcPolicy,
    allowed_hosts,
    check_ui_flags,
    is_loopback,
)
from generator.errors import ConfigError
from generator.redis_server import free_port
from tests.factories import cli_env, run_cli, serving_ui

POLICY = OidcPolicy.of(["Boss@Partner.org"], ["example.com", "@Lab.Example.net"])


# -- the OIDC allow-list -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "admitted"),
    [
        ("ann@example.com", "ann@example.com"),
        ("ANN@EXAMPLE.COM", "ann@example.com"),
        ("boss@partner.org", "boss@partner.org"),
        ("x@lab.example.net", "x@lab.example.net"),
    ],
)
def test_a_verified_address_on_the_list_or_of_a_listed_domain_is_admitted(
    email: str, admitted: str
) -> None:
    assert POLICY.admit({"email": email, "email_verified": True}) == admitted


def test_a_verified_claim_sent_as_the_string_true_counts() -> None:
    assert POLICY.admit({"email": "ann@example.com", "email_verified": "true"}) == "ann@example.com"


@pytest.mark.parametrize(
    "claims",
    [
        {"email": "ann@example.com", "email_verified": False},
        {"email": "ann@example.com", "email_verified": "false"},
        {"email": "ann@example.com", "email_verified": 1},
        {"email": "ann@example.com"},
    ],
)
def test_an_unverified_address_is_refused_even_of_an_allowed_domain(
    claims: dict[str, object],
) -> None:
    with pytest.raises(NotAllowedError, match="not verified"):
        POLICY.admit(claims)


@pytest.mark.parametrize(
    "email",
    [
        "eve@evil-example.com",  # a suffix of the name, not the domain
        "eve@example.com.evil.net",  # the domain as a prefix
        "eve@sub.example.com",  # subdomains are not the domain
        "eve@exampleXcom",
        "other@partner.org",  # the domain of a listed address, not listed itself
        "boss@partner.org.evil.net",
    ],
)
def test_an_address_outside_the_list_is_refused(email: str) -> None:
    with pytest.raises(NotAllowedError, match="is not allowed"):
        POLICY.admit({"email": email, "email_verified": True})


@pytest.mark.parametrize(
    "email",
    [
        "eve@evil.net@example.com",  # a second "@"
        "eve@\u212aample.com",  # the Kelvin sign lowers to "k": not "kample.com"
        "eve@exam\x00ple.com",
        "eve @example.com",
        "@example.com",
        "example.com",
        "",
    ],
)
def test_an_address_that_is_not_plain_is_refused(email: str) -> None:
    with pytest.raises(NotAllowedError):
        POLICY.admit({"email": email, "email_verified": True})


def test_no_e_mail_claim_is_refused() -> None:
    with pytest.raises(NotAllowedError, match="no e-mail"):
        POLICY.admit({"sub": "12345", "email_verified": True})


def test_an_empty_allow_list_is_refused_as_a_policy() -> None:
    with pytest.raises(ConfigError, match="OIDC sign-in needs an allow-list"):
        OidcPolicy.of([], [])


@pytest.mark.parametrize(
    "domain", ["*.example.com", "example", "a@example.com", "", "ex ample.com"]
)
def test_a_domain_entry_must_be_a_plain_domain(domain: str) -> None:
    with pytest.raises(ConfigError, match="oidc_allowed_domains"):
        OidcPolicy.of([], [domain])


def test_an_e_mail_entry_must_be_an_address() -> None:
    with pytest.raises(ConfigError, match=r"oidc_allowed_emails: 'example\.com'"):
        OidcPolicy.of(["example.com"], [])


# -- hosts and flags ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_a_loopback_bind_answers_the_loopback_names(host: str) -> None:
    assert is_loopback(host)
    assert {"localhost", "127.0.0.1", "::1"} <= set(allowed_hosts(host, []))


def test_an_address_bind_answers_itself_and_the_configured_names() -> None:
    assert allowed_hosts("10.0.0.5", ["Review.Example.com."]) == [
        "10.0.0.5",
        "review.example.com",
    ]


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_bind_to_every_address_needs_the_configured_names(host: str) -> None:
    with pytest.raises(ConfigError, match="set ui_allowed_hosts"):
        allowed_hosts(host, [])
    assert "review.example.com" in allowed_hosts(host, ["review.example.com"])


def test_a_wildcard_for_every_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="'\\*' would answer any Host"):
        allowed_hosts("127.0.0.1", ["*"])


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "review.example.com", "::"])
def test_local_mode_is_refused_off_loopback(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="--local signs everyone in as you"):
        check_ui_flags(host, local=True, oidc=False)


def test_local_and_oidc_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="--local and --oidc contradict"):
        check_ui_flags("127.0.0.1", local=True, oidc=True)
    check_ui_flags("127.0.0.1", local=True, oidc=False)
    check_ui_flags("0.0.0.0", local=False, oidc=True)


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        (["--local", "--oidc"], {}, "--local and --oidc contradict each other"),
        (["--local", "--host", "0.0.0.0"], {}, "--local signs everyone in as you"),
        (["--oidc"], {}, "OIDC sign-in needs an allow-list"),
        (
            ["--oidc", "--host", "0.0.0.0"],
            {"GAPFILL_OIDC_ALLOWED_DOMAINS": '["example.com"]'},
            "set ui_allowed_hosts",
        ),
        (
            ["--oidc"],
            {"GAPFILL_OIDC_ALLOWED_DOMAINS": '["*.example.com"]'},
            "oidc_allowed_domains: '*.example.com' is not a domain",
        ),
    ],
)
def test_gapfill_ui_refuses_unsafe_or_contradictory_flags_in_one_line(
    tmp_path: Path, args: list[str], extra: dict[str, str], message: str
) -> None:
    result = run_cli(cli_env(**extra), "ui", *args, timeout=60)
    assert result.returncode == 1, result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not (tmp_path / "data").exists(), "refused before any server started"


# -- a real server -----------------------------------------------------------------------------


@pytest.fixture
def local_ui(valkey_url: str, key_prefix: str, tmp_path: Path) -> Iterator[int]:
    """`gapfill ui --local`, run from a folder whose .streamlit/config.toml turns every guard
    off: the flags gapfill passes must win over it."""
    folder = tmp_path / "cwd"
    (folder / ".streamlit").mkdir(parents=True)
    (folder / ".streamlit" / "config.toml").write_text(
        '[server]\nallowedHosts = ["*"]\nenableCORS = false\nenableXsrfProtection = false\n'
    )
    port = free_port()
    env = cli_env(
        None,
        valkey_url,
        GAPFILL_KEY_PREFIX=key_prefix,
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    with serving_ui(env, port, "--local", cwd=folder):
        yield port


def upgrade(port: int, host: str, origin: str | None = None) -> int:
    """The HTTP status of a websocket upgrade to Streamlit's stream, sent with these headers
    (101: the socket is open and the app would run; 403: refused)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /_stcore/stream HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *([f"Origin: {origin}"] if origin else []),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


@pytest.mark.slow
def test_a_websocket_with_a_foreign_host_or_origin_is_refused_and_the_right_one_accepted(
    local_ui: int,
) -> None:
    port = local_ui
    assert upgrade(port, f"127.0.0.1:{port}") == 101
    assert upgrade(port, f"localhost:{port}", origin=f"http://localhost:{port}") == 101
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, the Host header stays theirs.
    assert upgrade(port, f"rebind.attacker.example:{port}") == 403
    assert upgrade(port, "rebind.attacker.example") == 403
    # A page of another site opening the socket on the right host.
    assert upgrade(port, f"127.0.0.1:{port}", origin="http://attacker.example") == 403


def test_the_ui_process_builds_the_settings_gapfill_ui_resolved_config_file_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.review import settings_env
    from generator.config import Settings, load_settings

    config = tmp_path / "gapfill.yaml"
    config.write_text(
        "oidc_allowed_domains: [example.com]\nui_allowed_hosts: [review.example.com]\n"
        f"export_root: {tmp_path / 'exports'}\nlease_seconds: 60\n"
    )
    resolved = load_settings(config, redis_url="redis://127.0.0.1:1/0")
    for name, value in settings_env(resolved).items():  # what `gapfill ui` hands Streamlit
        monkeypatch.setenv(name, value)
    assert Settings() == resolved
