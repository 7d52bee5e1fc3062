"""Signed, expiring review sessions kept in the browser (generator/ui_sessions.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from generator.ui_sessions import issue, signing_key, token_binding, verify

KEY = b"k" * 32
NOW = 1_800_000_000.0


def test_a_session_value_signs_its_reviewer_in_until_it_expires() -> None:
    cookie = issue(KEY, "alice", "hash-of-token", hours=12, now=NOW)
    claim = verify(KEY, cookie, now=NOW + 3600)
    assert claim is not None and claim.name == "alice"
    assert claim.binding == token_binding("hash-of-token") != "hash-of-token"
    assert claim.seconds_left(NOW) == 12 * 3600
    assert verify(KEY, cookie, now=NOW + 12 * 3600 + 1) is None, "expired"


def test_each_sign_in_is_its_own_session() -> None:
    first, second = (verify(KEY, issue(KEY, "a", "h", 1, NOW), NOW) for _ in range(2))
    assert first is not None and second is not None and first.session != second.session


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c.replace(c.split(".")[0], c.split(".")[0][:-2] + "xx"),  # the claim changed
        lambda c: c.split(".")[0] + ".AAAA",  # another signature
        lambda c: c + ".x",
        lambda c: "",
        lambda c: "not-a-cookie",
        lambda c: "." * 2000,
    ],
    ids=["claim", "signature", "extra part", "empty", "garbage", "huge"],
)
def test_a_tampered_or_malformed_value_is_no_session(tamper) -> None:  # type: ignore[no-untyped-def]
    cookie = issue(KEY, "alice", "h", hours=1, now=NOW)
    assert verify(KEY, tamper(cookie), now=NOW) is None


def test_another_servers_key_does_not_verify_it() -> None:
    cookie = issue(KEY, "alice", "h", hours=1, now=NOW)
    assert verify(b"o" * 32, cookie, now=NOW) is None


def test_a_forged_claim_with_a_valid_shape_is_refused() -> None:
    import base64
    import json

    body = base64.urlsafe_b64encode(
        json.dumps({"n": "admin", "b": "x", "s": "y", "e": 2**40}).encode()
    )
    assert verify(KEY, body.decode().rstrip("=") + ".c2lnbmF0dXJl", now=NOW) is None


def test_the_signing_key_is_made_once_and_private(tmp_path: Path) -> None:
    key = signing_key(tmp_path)
    assert len(key) == 32 and signing_key(tmp_path) == key
    assert stat.S_IMODE((tmp_path / "ui-session.key").stat().st_mode) == 0o600
