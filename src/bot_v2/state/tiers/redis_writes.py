"""Every write of one ``RedisHotTier``: the version guard (``HotTier.apply``) at the cost of a plain MSET.

Why not one Lua script per batch (the previous design): a script must read each held record into Lua to find
its version, and receive each new value as a Lua string, and Redis converts both ways; for 1,000 records that
cost 1.7x (200 B) to 3.2x (2 KB) a plain MSET. Here values go to Redis in a plain MSET, inside MULTI/EXEC,
and the guard compares small integers in Python:

- The bot's *write token* ``state:<bot_id>`` (outside the ``state:<bot_id>:`` key space, so never listed or
  counted as a record) names the writer that changed HOT last. Every transaction of every writer sets it to
  its own id, so a writer that WATCHes it learns of any other writer's change: its EXEC is refused.
- ``_known`` maps keys to the version HOT holds (0: none), for keys this writer wrote or read. It is valid while
  the held connection WATCHes the token since a moment ``_known`` was exact (``_watching``): each transaction
  ends with ``EXEC, WATCH token, GET token``, and the GET returning this writer's id proves nobody wrote between
  the EXEC and the WATCH. While valid, a put whose version is above the known one is stored without reading
  anything; keys not known have their versions read (``_VERSIONS_LUA``: one GETRANGE of the header per key)
  after the WATCH. If another writer changed HOT since, EXEC refuses the whole transaction, ``_known`` is
  dropped and the batch is decided again from versions read under a fresh WATCH.
- A put of the version HOT already holds (the same record, or the same version with other bytes) needs the
  value bytes compared: that rare batch goes through the atomic Lua script (``_APPLY_LUA`` in redis_hot.py),
  as does a batch whose EXEC was refused three times in a row (two writers racing).

Steady state (the keys were written before by this writer): one round trip, ``MULTI, MSET, SET token, EXEC,
WATCH token, GET token``. A writer that is not a ``RedisHotTier`` (redis-cli, a test writing raw bytes) does not
set the token: the guard protects records from perps-bot writers, which is what fencing needs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.connection import AbstractConnection

from bot_v2.state.keys import KeySpace
from bot_v2.state.models import HotRecord
from bot_v2.state.tiers.hot import PackedRecord, pack_headers, pack_record

# The version of each key's record from the first 24 bytes of its header ('1 <version> ...'): 0 for a missing
# key, -1 for a value that is no record (another format, a malformed header, another type). One call per key
# inside the script, but only the header moves: ~1 us a key, whatever the value size.
VERSIONS_LUA = """
local out, find, sub, byte = {}, string.find, string.sub, string.byte
for i = 1, #KEYS do
    local head = redis.pcall('GETRANGE', KEYS[i], 0, 23)
    local version = -1
    if type(head) == 'string' then
        if head == '' then
            version = 0
        elseif byte(head, 1) == 49 and byte(head, 2) == 32 then
            local stop = find(head, ' ', 3, true)
            version = stop and tonumber(sub(head, 3, stop - 1)) or -1
        end
    end
    out[i] = version
end
return out
"""

T = TypeVar("T")

_MAX_KNOWN = 200_000  # keys remembered; past this the map is dropped (always safe: keys are read again)
_SEND_BYTES = 1 << 20  # bytes per socket write of a transaction (each bounded by the command timeout)
# What a transaction adds to the command timeout per key (or value) it carries, for each socket write and
# reply read: a 10,000-key MULTI/MSET takes 10-40 ms on this 2-CPU machine and several times that with both
# CPUs busy, where the bare 0.1 s would cut it off as a hung Redis (HOT degraded, a restore). The loop's
# batches of a few keys keep the bare timeout; a 20,000-key seed gets 2.1 s. As PostgreSQL's SECONDS_PER_ROW.
SECONDS_PER_KEY = 0.0001
_ATTEMPTS = 3  # refused EXECs (another writer in between) before the batch goes through the Lua script


class HotWriter:
    """Writes of one tier through one held connection; callers translate redis errors (``RedisHotTier``)."""

    def __init__(self, keyspace: KeySpace) -> None:
        self._prefix = keyspace.redis_prefix
        self.token_key = keyspace.redis_prefix[:-1]  # 'state:<bot_id>': no relative key maps to it
        self._me = uuid.uuid4().hex.encode()
        self._conn: AbstractConnection | None = None
        self._pool: Any = None
        self._watching = False
        self._known: dict[str, int] = {}
        self._lock = asyncio.Lock()  # one transaction at a time on the held connection

    # --- the three writes ---------------------------------------------------------------------------

    async def apply(self, client: aioredis.Redis, apply_lua: str, puts: Sequence[HotRecord],
                    deletes: Sequence[str]) -> int:  # fmt: skip
        """Version-guarded puts, then deletes (``HotTier.apply``); return how many puts were refused."""

        async def run() -> int:
            for _ in range(_ATTEMPTS):
                decided = await self._decide(client, puts)
                if decided is None:
                    break  # a put of the version HOT holds: compare bytes in the script
                store, refused = decided
                # all refused: an empty transaction proves nobody changed HOT since the versions were known
                # (EXEC is refused otherwise) without moving the token, so a zombie refused again and again
                # does not make the owner read its versions again
                touch = bool(store or deletes)
                items = zip(
                    [r.key for r in store], pack_headers(store), [r.value for r in store], strict=True
                )
                commands = self._commands(list(items), [r.ttl_ms for r in store], deletes)
                if await self._commit(client, commands, watched=True, touch=touch) is None:
                    continue  # another writer changed HOT since the versions were known: decide again
                self._remember(store, deletes, refused)
                return len(refused)
            return await self._apply_script(client, apply_lua, puts, deletes)

        return await self._once_more(run)

    async def replace(
        self, client: aioredis.Redis, puts: Sequence[PackedRecord], deletes: Sequence[str], *,
        read_back: bool = False,
    ) -> list[bytes | None]:  # fmt: skip
        """Store every put (``packed`` set) and delete ``deletes``, unguarded (WARM's records, under the
        manager's lock). ``read_back``: return what Redis holds for the puts afterwards (an MGET sent after
        the transaction in the same round trip; Redis runs one connection's commands in order), else []."""
        keys = [r.key for r in puts]
        after = [encode_keys(("MGET",), self._prefix.encode(), keys)] if read_back and keys else []

        async def run() -> list[bytes | None]:
            items = [(r.key, b"", r.packed or b"") for r in puts]
            held: list[Any] = []
            commands = self._commands(items, [r.ttl_ms for r in puts], deletes)
            await self._commit(client, commands, watched=False, after=after, replies=held)
            self._remember(puts, deletes, {})
            return held[0] if held else []

        return await self._once_more(run)

    async def delete(self, client: aioredis.Redis, keys: Sequence[str]) -> int:
        """Delete ``keys``; return how many existed."""
        commands = [_encode("DEL", *[self._prefix + key for key in keys])]

        async def run() -> int:
            done = await self._commit(client, commands, watched=self._watching)
            if done is None:  # another writer in between: _known is gone, delete all the same
                done = await self._commit(client, commands, watched=False)
            self._remember((), keys, {})
            return int(done[0]) if done is not None else 0

        return await self._once_more(run)

    async def ping(self, client: aioredis.Redis, scripts: Sequence[str]) -> None:
        """PING and load ``scripts`` on a fresh held connection, in one round trip (probes while HOT is down):
        the restore that follows writes on the connection the probe opened instead of opening one first."""
        async with self._lock:
            await self.drop()
            try:
                await self._roundtrip(
                    client, [_encode("PING"), *[_encode("SCRIPT", "LOAD", s) for s in scripts]]
                )
            except BaseException:
                await self.drop()
                raise

    async def reset(self) -> None:
        """Close the held connection (probes after an outage; close): the next write opens a fresh one."""
        async with self._lock:
            await self.drop()

    async def drop(self) -> None:
        """``reset`` for a caller holding the lock."""
        conn, pool, self._conn, self._pool = self._conn, self._pool, None, None
        self._watching = False
        self._known.clear()
        if conn is not None:
            await conn.disconnect()
            await pool.release(conn)

    async def _once_more(self, run: Callable[[], Awaitable[T]]) -> T:
        """Run one write under the lock. Any failure closes the held connection (replies may be left unread,
        a WATCH pending). After a refused or reset connection (a Redis restart) the whole write runs once more
        on a fresh one, deciding again from what HOT holds (a transaction that did run reads back as the same
        records: nothing changes); never after a timeout (a hung server would cost it twice)."""
        async with self._lock:
            try:
                return await run()
            except redis.exceptions.ConnectionError:
                await self.drop()
            except BaseException:
                await self.drop()
                raise
            try:
                return await run()
            except BaseException:
                await self.drop()
                raise

    # --- deciding a batch ---------------------------------------------------------------------------

    async def _decide(
        self, client: aioredis.Redis, puts: Sequence[HotRecord]
    ) -> tuple[list[HotRecord], dict[str, int]] | None:
        """(the puts to store, {refused key: version HOT holds}), or None if a put has the version HOT holds.
        Versions not known are read after a WATCH of the token (a fresh one unless ``_watching``)."""
        first: list[Wire] = []
        if not self._watching:
            self._known.clear()
            first.append(_encode("WATCH", self.token_key))
        known = self._known
        unknown = [p.key for p in puts if p.key not in known]
        if unknown:
            first.append(self._versions_command(unknown))
        if first:
            replies = await self._roundtrip(client, first)
            self._watching = True  # whatever changes HOT from here on refuses our EXEC
            if unknown:
                known.update(zip(unknown, map(int, replies[-1]), strict=True))
        store: list[HotRecord] = []
        refused: dict[str, int] = {}
        for put in puts:
            held = known[put.key]
            if held < put.version:  # 0: nothing held, -1: no record (malformed, another type)
                store.append(put)
            elif held > put.version:
                refused[put.key] = held
            else:
                return None
        return store, refused

    def _versions_command(self, keys: Sequence[str]) -> Wire:
        # EVAL, not EVALSHA: the script text costs nothing next to the keys, and never meets NOSCRIPT
        return _encode("EVAL", VERSIONS_LUA, len(keys), *[self._prefix + key for key in keys])

    def _commands(
        self, items: Sequence[tuple[str, bytes, bytes]], ttls: Sequence[int | None], deletes: Sequence[str]
    ) -> list[Wire]:
        """MSET of the puts without TTL, SET PX per put with one, DEL of the expired puts and ``deletes``.
        ``items[i]``: (key, header, body) whose record is header + body; ``ttls[i]`` its TTL."""
        prefix = self._prefix
        plain: list[tuple[str, bytes, bytes]] = []
        commands: list[Wire] = []
        gone = [prefix + key for key in deletes]
        for item, ttl in zip(items, ttls, strict=True):
            if ttl is None:
                plain.append(item)
            elif ttl > 0:
                commands.append(_encode("SET", prefix + item[0], item[1] + item[2], "PX", ttl))
            else:
                gone.append(prefix + item[0])
        if plain:
            commands.insert(0, _encode_mset(prefix.encode(), plain))
        if gone:
            commands.append(_encode("DEL", *gone))
        return commands

    def _remember(
        self, stored: Sequence[HotRecord | PackedRecord], deletes: Sequence[str], refused: dict[str, int]
    ) -> None:
        """What HOT holds after a transaction; a TTL'd record is forgotten (it may expire)."""
        known = self._known
        if len(known) > _MAX_KNOWN:
            known.clear()
        for r in stored:
            if r.ttl_ms is None:
                known[r.key] = r.version
            elif r.ttl_ms > 0:
                known.pop(r.key, None)
            else:
                known[r.key] = 0
        known.update(refused)
        known.update(dict.fromkeys(deletes, 0))

    # --- the wire -----------------------------------------------------------------------------------

    async def _commit(
        self, client: aioredis.Redis, commands: list[Wire], *, watched: bool, touch: bool = True,
        after: Sequence[Wire] = (), replies: list[Any] | None = None,
    ) -> list[Any] | None:  # fmt: skip
        """One round trip: ``[UNWATCH] MULTI <commands> SET token EXEC WATCH token GET token <after>``.
        ``watched``: rely on the WATCH held since ``_known`` was exact (EXEC is refused, None, if anyone wrote
        since); otherwise UNWATCH first and start ``_known`` afresh. ``touch=False`` leaves the token out (a
        transaction that writes nothing). Returns EXEC's replies for ``commands``; the replies to ``after``
        (commands outside the transaction: a read-back) are appended to ``replies``."""
        if not watched:
            self._known.clear()
        head = [] if watched else [_encode("UNWATCH")]
        tail = [_encode("SET", self.token_key, self._me)] if touch else []
        tail.append(_encode("EXEC"))
        tail += [_encode("WATCH", self.token_key), _encode("GET", self.token_key)]
        got = await self._roundtrip(client, [*head, _encode("MULTI"), *commands, *tail, *after])
        if after:
            if replies is not None:
                replies += got[len(got) - len(after) :]
            got = got[: len(got) - len(after)]
        done, token = got[-3], got[-1]
        # the GET proves nobody wrote between our EXEC and our WATCH: then _known stays exact
        self._watching = done is not None and token == self._me
        if done is None:
            self._known.clear()
            return None
        for reply in done:
            if isinstance(reply, Exception):
                raise reply
        return list(done[:-1]) if touch else list(done)

    async def _apply_script(
        self, client: aioredis.Redis, apply_lua: str, puts: Sequence[HotRecord], deletes: Sequence[str]
    ) -> int:
        """The batch through the atomic Lua script (compares value bytes), inside the same transaction
        shape so the token moves; ``_known`` starts afresh after it."""
        plain = [r for r in puts if r.ttl_ms is None]
        expiring = [r for r in puts if r.ttl_ms is not None]
        prefix = self._prefix
        keys = [prefix + r.key for r in plain] + [prefix + r.key for r in expiring]
        keys += [prefix + key for key in deletes]
        args: list[Any] = [len(plain), len(expiring), 1, *[pack_record(r) for r in plain]]
        for r in expiring:
            args += (r.ttl_ms or 0, pack_record(r))
        done = await self._commit(
            client, [_encode("EVAL", apply_lua, len(keys), *keys, *args)], watched=False
        )
        assert done is not None  # unwatched: EXEC always runs
        self._known.clear()
        return int(done[0])

    async def _roundtrip(self, client: aioredis.Redis, commands: list[Wire]) -> list[Any]:
        """Send ``commands`` (encoded) on the held connection, then read every reply. Sent in writes of about
        ``_SEND_BYTES``: the command timeout bounds each write (a hung Redis is still found within it), not the
        whole of a 10,000-record batch, which a loaded machine may take longer than that to push through. Each
        write and read gets ``SECONDS_PER_KEY`` per key of the transaction on top of the command timeout (the
        held connection is this writer's alone, under its lock)."""
        conn = await self._connection(client)
        base = conn.socket_timeout
        if base:  # three pieces on the wire per argument, or per key + value of an MSET: see SECONDS_PER_KEY
            conn.socket_timeout = base + sum(map(len, commands)) // 3 * SECONDS_PER_KEY
        try:
            chunk: list[bytes] = []
            size = 0
            for command in commands:
                for piece in command:
                    chunk.append(piece)
                    size += len(piece)
                    if size >= _SEND_BYTES:
                        await conn.send_packed_command(chunk, check_health=False)
                        chunk, size = [], 0
            if chunk:
                await conn.send_packed_command(chunk, check_health=False)
            return [await conn.read_response() for _ in commands]
        finally:
            conn.socket_timeout = base

    async def _connection(self, client: aioredis.Redis) -> AbstractConnection:
        if self._conn is None:
            pool = client.connection_pool
            self._conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            self._pool = pool
            self._watching = False
        return self._conn


# --- RESP encoding ----------------------------------------------------------------------------------------
# What redis-py's pack_command does, without its repeated buffer joins (~1 us a value, most of a bare MSET's
# client time): every piece is a reference to existing bytes, joined once by the transport.

Wire = list[bytes]  # one command, encoded: its pieces in order


def _encode(*args: bytes | str | int) -> Wire:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return out


def encode_keys(head: Sequence[bytes | str | int], prefix: bytes, keys: Sequence[str]) -> Wire:
    """``head`` then every key under ``prefix`` (an MGET, a script's KEYS): redis-py's encoder costs several
    microseconds an argument, most of a 10,000-key read's client time."""
    out = _encode(*head)
    out[0] = b"*%d\r\n" % (len(head) + len(keys))
    for key in keys:
        name = prefix + key.encode()
        out += (b"$%d\r\n" % len(name), name, b"\r\n")
    return out


async def call(client: aioredis.Redis, commands: Sequence[Wire]) -> list[Any]:
    """Send encoded commands, pipelined on one pooled connection (a fresh connection costs round trips of its
    own), and return their replies (an error reply raises). Like the client's own commands: one immediate
    retry after a connection error (a pooled connection is stale after a Redis restart), never after a
    timeout; a connection that failed is dropped. For reads only: a retry sends them again."""
    pool = client.connection_pool
    wire = [piece for command in commands for piece in command]
    for attempt in range(2):
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(wire, check_health=False)
            return [await conn.read_response() for _ in commands]
        except redis.exceptions.ResponseError:
            raise  # the connection is in step: keep it
        except redis.exceptions.ConnectionError:
            await conn.disconnect()
            if attempt:
                raise
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
    raise AssertionError("unreachable")


def _encode_mset(prefix: bytes, items: Sequence[tuple[str, bytes, bytes]]) -> Wire:
    """MSET of (key, header, body) items: each value is header + body, sent without joining the two."""
    out = [b"*%d\r\n$4\r\nMSET\r\n" % (1 + 2 * len(items))]
    for key, head, body in items:
        name = prefix + key.encode()
        out += (b"$%d\r\n%s\r\n$%d\r\n%s" % (len(name), name, len(head) + len(body), head), body, b"\r\n")
    return out
