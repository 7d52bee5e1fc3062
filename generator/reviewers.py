"""Reviewers, their tokens and their roles: who may do what in the review UI.

``reviewers.json`` in the data directory maps each reviewer to ``{"hash": ..., "role": ...}``.
Tokens are shown once when created and stored only as SHA-256 hashes, so reading the file does
not let anyone sign in. A token is long and random, so a plain hash (not a slow password hash)
is enough. The file's first form (name -> hash) still reads, every reviewer in it a ``reviewer``.

Roles: a ``reviewer`` reviews (queue, browse, overview); an ``admin`` also exports, runs bulk
actions and manages reviewers. With OIDC sign-in, a reviewer named by their e-mail here gets
the role written here; everyone else the allow-list admits is a ``reviewer``.

The UI re-reads the file on every rerun to end sessions of removed or rotated tokens, so reads
are cached by the file's identity (inode, size, mtime): a rerun costs one ``stat``.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from generator.errors import ConfigError

# E-mail addresses fit, so that an OIDC reviewer's role can be written under their address.
_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
# What a reviewer's name may hold (no ':', so the pre-screen's "model:prescreen" is no one's).
NAME_PATTERN = _NAME.pattern


class Role(StrEnum):
    """What a signed-in person may do in the review UI."""

    REVIEWER = "reviewer"
    ADMIN = "admin"


class Reviewer(BaseModel):
    """One entry of ``reviewers.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hash: str
    role: Role = Role.REVIEWER


def _path(data_dir: Path) -> Path:
    return data_dir / "reviewers.json"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def load(data_dir: Path) -> dict[str, Reviewer]:
    """reviewer -> entry; empty when there is no file yet."""
    path = _path(data_dir)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    # The cache key changes with every write: add/remove replace the file (a new inode).
    return dict(_read(path, stat.st_ino, stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _read(path: Path, _inode: int, _size: int, _mtime_ns: int) -> dict[str, Reviewer]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object of reviewer -> {{hash, role}}")
    entries = {}
    for name, value in data.items():
        try:
            # The first form of the file: name -> hash, every reviewer a plain reviewer.
            entry = {"hash": value} if isinstance(value, str) else value
            entries[str(name)] = Reviewer.model_validate(entry)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            raise ConfigError(f"{path}: reviewer {name!r}: {field}: {error['msg']}") from exc
    return entries


@contextmanager
def _locked(data_dir: Path) -> Iterator[dict[str, Reviewer]]:
    """The reviewers, to change in place; written back atomically under an exclusive lock, so
    two commands (or the CLI and the UI) adding at once do not lose one of the two."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".reviewers.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = load(data_dir)
        yield entries
        _write(data_dir, entries)


def _write(data_dir: Path, entries: dict[str, Reviewer]) -> None:
    path = _path(data_dir)
    data = {name: entry.model_dump(mode="json") for name, entry in entries.items()}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(json.dumps(data, indent=2, sort_keys=True))
    temporary.replace(path)


def _known(entries: dict[str, Reviewer], name: str) -> Reviewer:
    if name not in entries:
        raise ConfigError(f"no reviewer named {name!r} (gapfill reviewer list shows them)")
    return entries[name]


def add(data_dir: Path, name: str, role: Role = Role.REVIEWER) -> str:
    """Create a reviewer, or give an existing one a new token (and this role): the old token
    stops working. Returns the token, which is not stored."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"reviewer name {name!r}: use letters, digits and _ . @ + - (1-64)")
    token = secrets.token_urlsafe(24)
    with _locked(data_dir) as entries:
        entries[name] = Reviewer(hash=token_hash(token), role=role)
    return token


def remove(data_dir: Path, name: str) -> None:
    """Remove a reviewer: their token stops working, and their sessions end at the next rerun."""
    with _locked(data_dir) as entries:
        _known(entries, name)
        del entries[name]


def set_role(data_dir: Path, name: str, role: Role) -> None:
    """Change a reviewer's role; their token stays valid."""
    with _locked(data_dir) as entries:
        entries[name] = _known(entries, name).model_copy(update={"role": role})


def sign_in(data_dir: Path, token: str) -> tuple[str, Reviewer] | None:
    """The reviewer this token belongs to (name and entry), or None."""
    digest = token_hash(token)
    for name, entry in load(data_dir).items():
        if hmac.compare_digest(entry.hash, digest):
            return name, entry
    return None


def who(data_dir: Path, token: str) -> str | None:
    """The reviewer this token belongs to, or None."""
    found = sign_in(data_dir, token)
    return found[0] if found else None


def role_now(data_dir: Path, name: str, signed_in_hash: str) -> Role | None:
    """The role of a session signed in as ``name`` with the token of this hash; None when the
    reviewer was removed or given a new token since (the session must end)."""
    entry = load(data_dir).get(name)
    if entry is None or not hmac.compare_digest(entry.hash, signed_in_hash):
        return None
    return entry.role


def role_of_email(data_dir: Path, email: str) -> Role:
    """An OIDC user's role: the one written under their e-mail (any case), else ``reviewer``."""
    wanted = email.casefold()
    roles = [e.role for n, e in load(data_dir).items() if n.casefold() == wanted]
    return Role.ADMIN if Role.ADMIN in roles else Role.REVIEWER
