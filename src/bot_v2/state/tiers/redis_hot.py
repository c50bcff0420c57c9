"""HOT tier on Redis (redis.asyncio): MGET reads; version-guarded writes in MULTI/EXEC (``redis_writes.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot_v2.errors import StateUnavailableError
from bot_v2.monitoring.masking import mask_url
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import HotRecord
from bot_v2.state.tiers.hot import PackedRecord, packed, split_record, unpack_record
from bot_v2.state.tiers.redis_connect import RedisTarget, accept_master
from bot_v2.state.tiers.redis_writes import HotWriter, call, encode_keys

# The guard in one atomic script, for the rare batch ``HotWriter`` cannot decide from versions alone (a put of
# the version HOT holds: value bytes to compare) or that lost the race to another writer three times; sent
# with EVAL inside the writer's MULTI/EXEC. KEYS: the puts without TTL,
# the puts with TTL, then the keys to delete. ARGV: the two put counts, '1' to guard by version or '0' to
# replace (HotTier.apply), each put without TTL as its packed record (hot.pack_record), each put with TTL as
# (TTL in ms, packed record). The held records are read with MGET, the stored ones written with MSET (all in
# chunks: Lua's unpack has a small stack), SET PX per TTL'd key. Headers are cut with plain string.find (Lua
# patterns cost several times more); a value of another type (MGET: nil) or without a version is replaced.
_APPLY_LUA = """
local plain, expiring, guard = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local puts, chunk = plain + expiring, 1000
local held, refused = {}, 0
if guard then
    for first = 1, puts, chunk do
        local got = redis.call('MGET', unpack(KEYS, first, math.min(first + chunk - 1, puts)))
        for j = 1, #got do
            held[first + j - 1] = got[j]
        end
    end
end
local find, sub, byte = string.find, string.sub, string.byte
-- the version of a record '1 <version> <checksum> <updated_us>\\n<value>' (nil if malformed), and where it ends
local function version(record)
    local format, space = byte(record, 1, 2)
    if format ~= 49 or space ~= 32 then
        return nil
    end
    local stop = find(record, ' ', 3, true)
    return stop and tonumber(sub(record, 3, stop - 1)), stop
end
-- what follows the version, minus the updated_us field: checksum and value bytes
local function content(record, stop)
    local updated = find(record, ' ', stop + 1, true)
    local newline = find(record, '\\n', updated + 1, true)
    return sub(record, stop, updated) .. sub(record, newline + 1)
end
local function store(i, packed)
    local old = held[i]
    if not old then
        return true
    end
    local old_version, old_stop = version(old)
    if not old_version then
        return true
    end
    local new_version, new_stop = version(packed)
    if old_version ~= new_version then
        if old_version > new_version then
            refused = refused + 1
        end
        return old_version < new_version
    end
    return content(old, old_stop) ~= content(packed, new_stop)
end
local pairs_ = {}
for i = 1, plain do
    local packed = ARGV[3 + i]
    if store(i, packed) then
        pairs_[#pairs_ + 1] = KEYS[i]
        pairs_[#pairs_ + 1] = packed
    end
end
for first = 1, #pairs_, 2 * chunk do
    redis.call('MSET', unpack(pairs_, first, math.min(first + 2 * chunk - 1, #pairs_)))
end
for i = plain + 1, puts do
    local at = 3 + plain + 2 * (i - plain) - 1
    local ttl, packed = tonumber(ARGV[at]), ARGV[at + 1]
    if store(i, packed) then
        if ttl > 0 then
            redis.call('SET', KEYS[i], packed, 'PX', ttl)
        else
            redis.call('DEL', KEYS[i])
        end
    end
end
for first = puts + 1, #KEYS, chunk do
    redis.call('DEL', unpack(KEYS, first, math.min(first + chunk - 1, #KEYS)))
end
return refused
"""

# (version, checksum) per key without the values: the first 128 bytes of each record (GETRANGE: a header line
# '1 <version> <checksum> <updated_us>' is at most ~105 bytes; the value never enters Lua, where converting it
# cost ~4 us a key), cut at the newline in Python (hot.split_record: cutting in Lua cost ~0.3 us a key more of
# Redis's time), false (nil) for a missing key, '!' for an empty string or another type (WRONGTYPE is caught).
# One round trip, ~128 bytes per key.
_HEADERS_LUA = """
local out = {}
for i = 1, #KEYS do
    local value = redis.pcall('GETRANGE', KEYS[i], 0, 127)
    if value == '' then
        out[i] = redis.call('EXISTS', KEYS[i]) == 1 and '!'  -- GETRANGE reads a missing key as ''
    elseif type(value) == 'string' then
        out[i] = value  -- the header line and the start of the body: the caller cuts at the newline
    elseif type(value) == 'table' then
        out[i] = '!'
    else
        out[i] = false
    end
end
return out
"""

_SCRIPTS = (_HEADERS_LUA,)
_HEADERS_CHUNK = 2000  # keys per headers script call


class RedisHotTier:
    """HOT tier in a (possibly shared) Redis; every key lives under ``state:<bot_id>:``."""

    name = "redis"

    def __init__(
        self,
        url: str | RedisTarget,
        keyspace: KeySpace,
        connect_timeout_seconds: float = 5.0,
        *,
        command_timeout_seconds: float | None = None,
    ) -> None:
        # a URL, or a Sentinel-named master the client follows (redis_connect: a promotion is an outage)
        self._target = url if isinstance(url, RedisTarget) else RedisTarget(url=url)
        self._url = self._target.describe()
        self._keys = keyspace
        self._timeout = connect_timeout_seconds
        # A hung Redis (SIGSTOP, a partition) accepts connections and never answers: every command fails
        # after this (the socket timeout; redis-py then drops the connection, so no late reply is ever read
        # as the answer to another command). None: max(connect timeout, 5 s), for tools without settings.
        self._command_timeout = (
            max(connect_timeout_seconds, 5.0) if command_timeout_seconds is None else command_timeout_seconds
        )
        self._client: aioredis.Redis | None = None
        self._writer = HotWriter(keyspace)

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
            self._client = self._target.client(
                socket_connect_timeout=self._timeout,
                socket_timeout=self._command_timeout,
                decode_responses=False,
                # A cache fails fast: one immediate retry after a connection error (a pooled connection may
                # be stale after a Redis restart), not redis-py's default 10 retries with backoff (seconds per
                # command when down); never after a timeout (a hung server would cost the timeout twice).
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            )
            # The start-up repair EVALs the headers script: loading it here proves scripting is allowed and
            # compiles it before the first call (EVAL finds it in the script cache by its SHA)
            async with asyncio.timeout(self._timeout):
                await self._client.ping()
                await self._client.script_load(_HEADERS_LUA)

    async def ping(self) -> None:
        """PING on a fresh connection and load the scripts, in one round trip. Only probes call this, while
        HOT is down: idle pooled connections are dropped (after a Redis restart each would fail once and
        reconnect), and a restarted Redis has an empty script cache (each script's first call would fail with
        NOSCRIPT and load it): both would cost round trips in the restore that follows."""
        if self._client is None:
            await self.connect()
            return
        client = self.client
        accept_master(client)  # Sentinel: a new master is accepted here; the restore from WARM follows
        with self._translate("PING"):
            await client.connection_pool.disconnect(inuse_connections=False)
            # on a fresh connection of the writer's: the restore's writes then need no connection of their own
            await self._writer.ping(client, _SCRIPTS)

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

    async def versions(self, keys: Sequence[str]) -> dict[str, tuple[int, str] | None]:
        """(version, checksum) from each record's header (values stay in Redis): a Lua script call per
        ``_HEADERS_CHUNK`` keys (each blocks Redis for ~2 ms at most), all in one round trip on one connection,
        encoded here (EVAL: the script text costs nothing next to the keys, and never meets NOSCRIPT)."""
        if not keys:
            return {}
        prefix = self._keys.redis_prefix.encode()
        commands = [
            encode_keys(("EVAL", _HEADERS_LUA, len(chunk)), prefix, chunk)
            for chunk in (keys[i : i + _HEADERS_CHUNK] for i in range(0, len(keys), _HEADERS_CHUNK))
        ]
        with self._translate("headers script"):
            raw = [header for reply in await call(self.client, commands) for header in reply]
        return {
            key: split_record(header if isinstance(header, bytes) else str(header).encode())[0]
            for key, header in zip(keys, raw, strict=True)
            if header is not None
        }

    async def differing(self, records: Sequence[PackedRecord]) -> list[str]:
        """One MGET of the records (encoded here, not by redis-py); the bytes are compared here (hiredis
        parses the reply in C: ~0.1 us a value, where a Lua script reading them costs ~4 us a key and redis-py's
        Python parser ~20 us)."""
        if not records:
            return []
        command = encode_keys(("MGET",), self._keys.redis_prefix.encode(), [r.key for r in records])
        expected = [r.packed for r in records]
        with self._translate("MGET"):
            (held,) = await call(self.client, [command])
        if held == expected:
            return []
        return [r.key for r, got, want in zip(records, held, expected, strict=True) if got != want]

    async def apply(
        self, puts: Sequence[HotRecord], deletes: Sequence[str] = (), *, replace: bool = False
    ) -> int:
        """Version-guarded puts, then deletes (see ``HotTier.apply``): one MULTI/EXEC round trip when this
        tier knows the versions HOT holds, one more to read those it does not (``redis_writes.py``).
        ``replace`` needs no guard: the same transaction without the versions, as cheap as a bare MSET."""
        if not puts:
            await self.delete_many(deletes)
            return 0
        if replace:
            await self.put_packed([packed(r) for r in puts], deletes)
            return 0
        client = self.client
        with self._translate("guarded MULTI MSET"):
            return await self._writer.apply(client, _APPLY_LUA, puts, deletes)

    async def put_packed(
        self, records: Sequence[PackedRecord], deletes: Sequence[str] = (), *, read_back: bool = False
    ) -> list[str]:
        records = [r for r in records if r.packed is not None]
        if not records and not deletes:
            return []
        client = self.client
        with self._translate("MULTI MSET"):
            held = await self._writer.replace(client, records, deletes, read_back=read_back)
        expected = [r.packed for r in records]
        if not read_back or held == expected:
            return []
        return [r.key for r, got, want in zip(records, held, expected, strict=True) if got != want]

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        client = self.client
        with self._translate("DEL"):
            return await self._writer.delete(client, keys)

    async def scan(self, pattern: str = "*", page_size: int = 500) -> AsyncIterator[list[str]]:
        match = self._keys.redis_prefix + pattern
        cursor: int = 0
        while True:
            with self._translate("SCAN"):
                cursor, names = await self.client.scan(cursor=cursor, match=match, count=page_size)
            if names:
                yield self._keys.from_redis_many(cast(list[bytes], names))  # decode_responses=False
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
                await self._writer.reset()
                await client.aclose()
