"""Getting a Redis connection: the configured server, or the bundled one started on demand."""

from __future__ import annotations

import logging

import redis

from generator.config import Settings
from generator.errors import StoreUnavailableError
from generator.redis_server import BundledServer

logger = logging.getLogger(__name__)

SAFE_EVICTION_POLICY = "noeviction"


def redis_url(settings: Settings) -> str:
    """``REDIS_URL`` when set (and then nothing is started), else the bundled server's URL."""
    if settings.redis_url:
        return settings.redis_url
    server = BundledServer(settings.data_dir, appendfsync=settings.appendfsync)
    return server.ensure_running().url


def connect(url: str, *, decode_responses: bool = True) -> redis.Redis:
    """A client for ``url`` that has answered a PING.

    The store uses ``decode_responses=True``; RQ needs bytes, so workers ask for ``False``.
    """
    client = redis.Redis.from_url(
        url, decode_responses=decode_responses, socket_connect_timeout=5, health_check_interval=30
    )
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailableError(f"cannot reach Redis at {url}: {exc}") from exc
    except redis.AuthenticationError as exc:
        raise StoreUnavailableError(f"Redis at {url} refused the credentials: {exc}") from exc
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
