"""Review sessions that survive a page reload: a signed, expiring session value for token
sign-ins, which the browser keeps in its localStorage (per origin, port included).

A reviewer who signed in with a token gets a value holding their name, a binding to that token
(not the token, nor its stored hash), a session id and an expiry, signed with HMAC-SHA256 under
a key that never leaves the server (``DATA_DIR/ui-session.key``, 0600). A reload offers the
value back; it signs the reviewer in again only while all of these hold:

- the signature is good and the value has not expired;
- the reviewer still has the token it was issued for (a removed or replaced token ends it, as it
  ends a live session);
- the session was not signed out (signed-out ids are kept in the store until they would expire).

Who sees the errors: nobody. A value that fails any check is simply not a session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from generator.redis_server import write_private

STORAGE_NAME = "gapfill_session"
KEY_FILE = "ui-session.key"
MAX_VALUE = 1024


@dataclass(frozen=True)
class SessionClaim:
    name: str
    binding: str  # ties the session to the token it was signed in with
    session: str
    expires: int  # seconds since the epoch

    def seconds_left(self, now: float | None = None) -> int:
        return max(int(self.expires - (time.time() if now is None else now)), 0)


def token_binding(token_hash: str) -> str:
    """What a session value carries of the reviewer's token: enough to notice it was replaced,
    nothing that signs anyone in (the stored hash is the token's verifier)."""
    return hashlib.sha256(f"gapfill-session:{token_hash}".encode()).hexdigest()[:32]


def signing_key(data_dir: Path) -> bytes:
    """The server's signing key, made once (0600) on first use."""
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    write_private(path, os.urandom(32))
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, name: str, token_hash: str, hours: float, now: float | None = None) -> str:
    """A session value for ``name``, signed in with the token of ``token_hash``."""
    claim = {
        "n": name,
        "b": token_binding(token_hash),
        "s": secrets.token_hex(12),
        "e": int((time.time() if now is None else now) + hours * 3600),
    }
    body = _b64(json.dumps(claim, separators=(",", ":")).encode())
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def verify(key: bytes, value: str | None, now: float | None = None) -> SessionClaim | None:
    """The claim of a well-signed, unexpired session value; None for anything else."""
    if not isinstance(value, str) or len(value) > MAX_VALUE or value.count(".") != 1:
        return None
    body, signature = value.split(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        data = json.loads(_unb64(body))
        claim = SessionClaim(str(data["n"]), str(data["b"]), str(data["s"]), int(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    return claim if claim.seconds_left(now) > 0 else None
