"""Content-addressed files in the store: what a run's workers must read, wherever they run.

A run's inputs (its existing dataset, eval sets and prompt templates) are put here by the host
that creates the run, under the SHA-256 of their content, so that a worker given only the store's
URL can score the run, and so that the same file used by many runs is kept once. A blob is
zlib-compressed and cut into chunks (a Redis value is best kept to a few MiB: one big GET would
hold up every other client while it is sent); the chunks are written under a temporary key and
renamed into place, so a reader sees the whole blob or none of it.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from typing import cast

import redis

from generator.errors import StoreError
from generator.store.base import StoreBase

CHUNK_BYTES = 4 * 1024 * 1024


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobsMixin(StoreBase):
    """``put_blob`` / ``get_blob``: bytes by the SHA-256 of their content."""

    _bytes_client: redis.Redis | None = None

    def _binary(self) -> redis.Redis:
        """A client on the same server that returns bytes (the store's own decodes text)."""
        if self._bytes_client is None:
            pool = self.redis.connection_pool
            kwargs = dict(pool.connection_kwargs)
            kwargs["decode_responses"] = False
            self._bytes_client = redis.Redis(
                connection_pool=redis.ConnectionPool(
                    connection_class=pool.connection_class, **kwargs
                )
            )
        return self._bytes_client

    def has_blob(self, sha256: str) -> bool:
        return bool(self.redis.exists(self.keys.blob(sha256)))

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` (once: a blob already there is not sent again); its SHA-256."""
        digest = sha256_hex(data)
        if self.has_blob(digest):
            return digest
        packed = zlib.compress(data, 6)
        staging = f"{self.keys.blob(digest)}:writing:{secrets.token_hex(8)}"
        client = self._binary()
        chunks = [packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES)] or [b""]
        try:
            for index, chunk in enumerate(chunks):
                client.hset(staging, str(index), chunk)
            client.hset(staging, mapping={"chunks": len(chunks), "bytes": len(data)})
            client.expire(staging, 3600)  # an upload cut off midway leaves nothing for good
            client.rename(staging, self.keys.blob(digest))
            client.persist(self.keys.blob(digest))
        finally:
            client.delete(staging)
        return digest

    def get_blob(self, sha256: str, *, max_bytes: int) -> bytes:
        """The content stored as ``sha256``, checked against it; StoreError if missing, bad or
        over ``max_bytes`` once decompressed (the store is untrusted: a few MiB of it could
        otherwise inflate to GiB in a worker's memory)."""
        key = self.keys.blob(sha256)
        client = self._binary()
        fields = int(client.hlen(key))
        if not fields:
            raise StoreError(f"blob {sha256[:12]} is not in the store (under {self.keys.prefix!r})")
        count = cast(bytes | None, client.hget(key, "chunks"))
        if count is None or not count.isdigit() or int(count) != fields - 2:
            raise StoreError(f"blob {sha256[:12]} is damaged: its chunk count does not match")
        names = [str(index) for index in range(int(count))]
        packed = b"".join(
            chunk or b""
            for start in range(0, len(names), 16)
            for chunk in cast(list[bytes | None], client.hmget(key, names[start : start + 16]))
        )
        inflate = zlib.decompressobj()
        try:
            data = inflate.decompress(packed, max_bytes + 1)
        except zlib.error as exc:
            raise StoreError(f"blob {sha256[:12]} is damaged: {exc}") from exc
        if len(data) > max_bytes or inflate.unconsumed_tail:
            raise StoreError(f"blob {sha256[:12]} is larger than the {max_bytes} bytes expected")
        if sha256_hex(data) != sha256:
            raise StoreError(f"blob {sha256[:12]} is damaged: its content has another hash")
        return data
