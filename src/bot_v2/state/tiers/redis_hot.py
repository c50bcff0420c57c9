"""HOT tier on Redis (redis.asyncio): MGET reads, one MULTI pipeline (MSET + SET PX + DEL) per batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot_v2.errors import StateUnavailableError
from bot_v2.monitoring.masking import mask_url
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import HotRecord
from bot_v2.state.tiers.hot import pack_record, unpack_record


class RedisHotTier:
    """HOT tier in a (possibly shared) Redis; every key lives under ``state:<bot_id>:``."""

    name = "redis"

    def __init__(self, url: str, keyspace: KeySpace, connect_timeout_seconds: float = 5.0) -> None:
        self._url = url
        self._keys = keyspace
        self._timeout = connect_timeout_seconds
        self._client: aioredis.Redis | None = None

    def __repr__(self) -> str:
        return f"RedisHotTier(url={mask_url(self._url)!r}, bot_id={self._keys.bot_id!r})"

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """The one place redis-py errors become bot errors (URL password masked)."""
        try:
            yield
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            raise StateUnavailableError(
                f"redis at {mask_url(self._url)}: {action} failed: {type(exc).__name__}: {exc}"
            ) from None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise StateUnavailableError(f"redis at {mask_url(self._url)}: not connected")
        return self._client

    async def connect(self) -> None:
        with self._translate("connect"):
            self._client = aioredis.Redis.from_url(
                self._url,
                socket_connect_timeout=self._timeout,
                socket_timeout=max(self._timeout, 5.0),
                decode_responses=False,
                # A cache fails fast: one immediate retry (a pooled connection may be stale after a Redis
                # restart), not redis-py's default 10 retries with backoff (seconds per command when down).
                retry=Retry(NoBackoff(), 1),
            )
            async with asyncio.timeout(self._timeout):
                await self._client.ping()

    async def ping(self) -> None:
        if self._client is None:
            await self.connect()
            return
        with self._translate("PING"):
            await self.client.ping()

    async def get_many(self, keys: Sequence[str]) -> dict[str, HotRecord]:
        if not keys:
            return {}
        prefix = self._keys.redis_prefix
        with self._translate("MGET"):
            raw = await self.client.mget([prefix + key for key in keys])
        return {
            key: unpack_record(key, data if isinstance(data, bytes) else data.encode())
            for key, data in zip(keys, raw, strict=True)
            if data is not None
        }

    async def apply(self, puts: Sequence[HotRecord], deletes: Sequence[str] = ()) -> None:
        if not puts and not deletes:
            return
        prefix = self._keys.redis_prefix
        plain = {prefix + r.key: pack_record(r) for r in puts if r.ttl_ms is None}
        expiring = [r for r in puts if r.ttl_ms is not None]
        with self._translate("pipeline"):
            if plain and not expiring and not deletes:
                await self.client.mset(plain)  # one command is atomic on its own: no MULTI round
                return
            async with self.client.pipeline(transaction=True) as pipe:
                if plain:
                    pipe.mset(plain)  # MSET also clears any TTL the key had: ttl None = no expiry
                for record in expiring:
                    pipe.set(prefix + record.key, pack_record(record), px=record.ttl_ms)
                if deletes:
                    pipe.delete(*[prefix + key for key in deletes])
                await pipe.execute()

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        prefix = self._keys.redis_prefix
        with self._translate("DEL"):
            return int(await self.client.delete(*[prefix + key for key in keys]))

    async def scan(self, pattern: str = "*", page_size: int = 500) -> AsyncIterator[list[str]]:
        match = self._keys.redis_prefix + pattern
        cursor: int = 0
        while True:
            with self._translate("SCAN"):
                cursor, names = await self.client.scan(cursor=cursor, match=match, count=page_size)
            if names:
                yield [self._keys.from_redis(name) for name in names]
            if cursor == 0:
                return

    async def count(self) -> int:
        total = 0
        async for page in self.scan("*", page_size=1000):
            total += len(page)
        return total

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with self._translate("close"):
                await client.aclose()
