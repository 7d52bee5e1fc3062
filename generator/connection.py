"""Getting a Redis connection: the configured server, or the bundled one started on demand.

A store URL can carry a password (``redis://:PASSWORD@host``, ``rediss://user:PASSWORD@host``,
``?password=``). Nothing gapfill prints or raises may show it: every URL shown to a person goes
through :func:`masked_url`, and every message that may quote one through :func:`redact`.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote, unquote

import redis

from generator.config import Settings
from generator.errors import StoreMovedError, StoreUnavailableError, StoreUnreachableError
from generator.redis_server import BundledServer

logger = logging.getLogger(__name__)

SAFE_EVICTION_POLICY = "noeviction"
MASK = "****"

# Everything between "scheme://" and the LAST "@" is credentials: a password holding an
# unencoded "@" or "/" must still be hidden, and masking a little too much is harmless.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>.*)@")
_SECRET_QUERY = re.compile(r"(?i)(?P<key>[?&](?:password|ssl_password)=)[^&#]*")
# Passwords of URLs this process has used: redact() removes them from any message.
_known_secrets: set[str] = set()


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``****`` (the user name is kept: it is no secret).

    ``redis://:s3cret@h:6379/0`` -> ``redis://:****@h:6379/0``; a bare ``redis://s3cret@h``
    (a password written without its colon, a common slip) is masked whole.
    """

    def userinfo(match: re.Match[str]) -> str:
        user, colon, _password = match["userinfo"].partition(":")
        return f"{match['scheme']}{user}:{MASK}@" if colon else f"{match['scheme']}{MASK}@"

    return _SECRET_QUERY.sub(lambda m: m["key"] + MASK, _USERINFO.sub(userinfo, url, count=1))


def url_secrets(url: str) -> set[str]:
    """The secrets a URL carries (its password, as written and decoded), to redact elsewhere."""
    found: set[str] = set()
    match = _USERINFO.match(url)
    if match:
        user, colon, password = match["userinfo"].partition(":")
        found.add(password if colon else user)
    query = url.partition("?")[2]
    found.update(v for k, v in parse_qsl(query) if k.lower() in ("password", "ssl_password"))
    found |= {unquote(s) for s in found} | {quote(s, safe="") for s in found}
    return {s for s in found if len(s) >= 4}  # a 1-3 character "secret" would mangle messages


def remember_secrets(url: str) -> None:
    """Let :func:`redact` hide this URL's password wherever it turns up later."""
    _known_secrets.update(url_secrets(url))


def redact(text: str, url: str | None = None) -> str:
    """``text`` with every known password (and ``url``'s) replaced by ``****``, and any URL in it
    masked: for error messages that quote a library's exception."""
    secrets = _known_secrets | (url_secrets(url) if url else set())
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return re.sub(r"(?:rediss?|unix)://\S+", lambda m: masked_url(m[0]), text)


class BundledCredentials(redis.CredentialProvider):
    """The bundled server's password as of now, read from its ``server.json`` for each new
    connection: a restarted server has a new password, and the client reconnects with it.

    Only while ``server.json`` names the address the client connects to: if the server came
    back elsewhere, whatever listens at the old port (another local user, say) gets nothing,
    and the client is rebuilt through ``store_client``."""

    def __init__(self, server: BundledServer, host: str, port: int) -> None:
        self.server, self.host, self.port = server, host, port

    def get_credentials(self) -> tuple[str]:
        password = self.server.password_at(self.host, self.port)
        if password is None:
            raise StoreMovedError(
                f"the bundled Valkey is no longer at {self.host}:{self.port} "
                f"(see {self.server.state_file})"
            )
        _known_secrets.add(password)
        return (password,)


def store_away(error: BaseException) -> bool:
    """Whether ``error`` says the store is away for now (down, restarting, moved, loading its
    AOF): worth waiting for. A refused password or a malformed URL is not: it will not pass."""
    if isinstance(error, redis.AuthenticationError):  # a ConnectionError to redis-py
        return False
    return isinstance(error, redis.ConnectionError | redis.TimeoutError | StoreUnreachableError)


def store_client(
    settings: Settings, *, decode_responses: bool = True, start: bool = True
) -> redis.Redis:
    """A client of the configured store that has answered a PING.

    ``REDIS_URL``'s server as given; else the bundled server, started first unless ``start``
    is False (a UI or worker coming back after a restart finds it, and never starts one an
    operator stopped), through ``BundledCredentials``, so the client outlives restarts.
    """
    if settings.redis_url:
        return connect(settings.redis_url, decode_responses=decode_responses)
    server = BundledServer(settings.data_dir, appendfsync=settings.appendfsync)
    info = server.ensure_running() if start else server.info()
    if info is None:
        raise StoreUnreachableError(
            f"the bundled Valkey in {server.dir} is not running (gapfill server start)"
        )
    remember_secrets(info.url)
    credentials = BundledCredentials(server, info.host, info.port)
    return connect(info.address, decode_responses=decode_responses, credentials=credentials)


def connect(
    url: str,
    *,
    decode_responses: bool = True,
    credentials: redis.CredentialProvider | None = None,
) -> redis.Redis:
    """A client for ``url`` (its password from ``credentials``, if given) that has answered a
    PING.

    The store uses ``decode_responses=True``; RQ needs bytes, so workers ask for ``False``.
    Errors name the server by its masked URL.
    """
    remember_secrets(url)
    shown = masked_url(url)
    try:
        client = redis.Redis.from_url(
            url,
            decode_responses=decode_responses,
            socket_connect_timeout=5,
            health_check_interval=30,
            credential_provider=credentials,
        )
    except ValueError as exc:  # a malformed URL: the user's to fix, not a traceback
        raise StoreUnavailableError(f"bad Redis URL {shown}: {redact(str(exc), url)}") from exc
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise StoreUnavailableError(
            f"Redis at {shown} refused the credentials: {redact(str(exc), url)}"
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnreachableError(
            f"cannot reach Redis at {shown}: {redact(str(exc), url)}"
        ) from exc
    except redis.ResponseError as exc:  # NOAUTH: the server wants a password the URL lacks
        raise StoreUnavailableError(f"Redis at {shown} refused: {redact(str(exc), url)}") from exc
    return client


def eviction_warning(client: redis.Redis) -> str | None:
    """A warning if the server may evict keys, which would silently lose items and decisions.

    Only ``noeviction`` is safe: RQ puts TTLs on job keys, so even ``volatile-*`` policies can
    drop queued work. Managed services that disable CONFIG get a softer warning.
    """
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.ResponseError:
        return (
            "could not read maxmemory-policy (CONFIG is disabled on this server); "
            f"make sure it is {SAFE_EVICTION_POLICY!r}, or items and decisions can be evicted"
        )
    policy = reply.get("maxmemory-policy")
    if isinstance(policy, bytes):
        policy = policy.decode()
    if policy and policy != SAFE_EVICTION_POLICY:
        return (
            f"the server's maxmemory-policy is {policy!r}: under memory pressure it will EVICT "
            f"items, leases and review decisions. Set it to {SAFE_EVICTION_POLICY!r}."
        )
    return None
