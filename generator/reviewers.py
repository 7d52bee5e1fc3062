"""Reviewer tokens: who may decide in the review UI when no OIDC provider is configured.

Tokens are shown once when created and stored only as SHA-256 hashes (``reviewers.json`` in the
data directory), so reading the file does not let anyone sign in. A token is long and random, so
a plain hash (not a slow password hash) is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from generator.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def _path(data_dir: Path) -> Path:
    return data_dir / "reviewers.json"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load(data_dir: Path) -> dict[str, str]:
    """reviewer -> token hash."""
    path = _path(data_dir)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object of reviewer -> token hash")
    return {str(k): str(v) for k, v in data.items()}


def add(data_dir: Path, name: str) -> str:
    """Create (or replace) a reviewer's token; returns the token, which is not stored."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"reviewer name {name!r}: use letters, digits and _ . @ - (1-64)")
    token = secrets.token_urlsafe(24)
    reviewers = load(data_dir) | {name: _hash(token)}
    path = _path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(reviewers, indent=2, sort_keys=True), encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)
    return token


def who(data_dir: Path, token: str) -> str | None:
    """The reviewer this token belongs to, or None."""
    digest = _hash(token.strip())
    for name, stored in load(data_dir).items():
        if hmac.compare_digest(stored, digest):
            return name
    return None
