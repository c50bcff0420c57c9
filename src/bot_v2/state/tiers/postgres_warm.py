"""WARM tier on PostgreSQL (asyncpg): every batch is one statement, so one transaction and one round trip.

This module is the pool, the bounds of one operation (``_conn``: a hung server is told from a slow one and
its connection terminated), the fenced write transaction, and the record I/O. The ownership lease is
``pg_lease.py`` and state checkpoints (the snapshot, the restore, the stored blobs) ``pg_checkpoints.py``:
functions over a connection this tier acquired.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from bot_v2.errors import FencedError, StateError, StateUnavailableError
from bot_v2.monitoring.masking import mask_url
from bot_v2.state.keys import KeySpace, glob_to_regex, literal_prefix
from bot_v2.state.migrations import latest_version, pending
from bot_v2.state.migrations.postgres import MIGRATIONS, VERSION_TABLE
from bot_v2.state.models import (
    CheckpointInfo,
    LeaseClaim,
    LeaseGrant,
    LeaseRecord,
    Tier,
    TierMove,
    WarmRestore,
    WarmRow,
    WarmWrite,
)
from bot_v2.state.tiers import pg_checkpoints as checkpoints
from bot_v2.state.tiers import pg_lease as lease
from bot_v2.state.tiers.hot import PackedRecord
from bot_v2.state.tiers.pg_connect import ServerWatch, connect_any_host
from bot_v2.state.tiers.pg_liveness import Liveness, OperationWatch
from bot_v2.state.tiers.warm import SnapshotPage, versions_by_key

_GET_SQL = """
SELECT key, category, tier, version, checksum, value, cold_ref, updated_at, expires_at FROM
state_records WHERE bot_id = $1 AND (expires_at IS NULL OR expires_at > $2) AND key =
ANY($3::text[])
"""
_VERSIONS_SQL = """
SELECT key, version, checksum FROM state_records WHERE bot_id = $1 AND key = ANY($2::text[])
"""
_DELETE_SQL = """
DELETE FROM state_records WHERE bot_id = $1 AND key = ANY($3::text[]) RETURNING key, (expires_at IS
NULL OR expires_at > $2)
"""
_KEYS_SQL = """
SELECT key FROM state_records WHERE bot_id = $1 AND (expires_at IS NULL OR expires_at > $2) AND key
LIKE $3 AND key ~ $4 ORDER BY key
"""
_PAGE_SQL = """
SELECT key, category, tier, version, checksum, value, cold_ref, updated_at, expires_at FROM
state_records WHERE bot_id = $1 AND (expires_at IS NULL OR expires_at > $2) AND key > $3
AND ($5::text IS NULL OR tier = $5) ORDER BY key LIMIT $4
"""
# page_rows(tier=HOT) packed as HOT stores it (hot.pack_record: '1 <version> <checksum> <updated_us>\n' then
# the value) with the TTL left in ms: the bytes are built here, in C, so the restore builds nothing per row in
# Python. The body's checksum is not checked here: the restore checks it (hot.body_matches) while the page is
# on its way to Redis (in the query it cost ~2 us a row of PostgreSQL time that nothing overlapped: 1,000
# rows 5.1 vs 3.0 ms).
_HOT_PAGE_SQL = """
SELECT key, version,
    CASE WHEN value IS NOT NULL THEN convert_to('1 ' || version
        || ' ' || checksum || ' ' || (extract(epoch FROM updated_at) * 1000000)::bigint || E'\\n', 'UTF8')
        || value END,
    CASE WHEN expires_at IS NOT NULL THEN greatest(1, floor(extract(epoch FROM expires_at - $2) * 1000))::bigint END
FROM state_records WHERE bot_id = $1 AND (expires_at IS NULL OR expires_at > $2) AND key > $3 AND tier = 'hot'
ORDER BY key LIMIT $4
"""
# the hot set's (key, version, checksum): what the start-up repair compares with HOT's headers
_HOT_VERSIONS_SQL = """
SELECT key, version, checksum FROM state_records WHERE bot_id = $1 AND (expires_at IS NULL OR expires_at > $2)
AND key > $3 AND tier = 'hot' ORDER BY key LIMIT $4
"""
_STATS_SQL = """
SELECT tier, count(*), coalesce(sum(length(value)), 0) FROM state_records WHERE bot_id = $1 AND
(expires_at IS NULL OR expires_at > $2) GROUP BY tier
"""
_TIERS = {tier.value: tier for tier in Tier}


async def _keep_session(conn: Any) -> None:
    """The pool's reset on release: nothing to undo. asyncpg rolls back a transaction left open before it calls
    this; its default reset (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) is one more round
    trip per operation for session state this tier never sets (no SET, LISTEN, session advisory lock or cursor
    outside a transaction)."""


# What a batch adds to the command timeout per row it reads or writes: a 1,000-row upsert takes 12-25 ms
# here (12-25 us a row), so this leaves 4-8x headroom for a big batch (start-up, a restore page, a seed)
# while the loop's batches of a few rows stay at the bare command timeout.
SECONDS_PER_ROW = 0.0001
_MIGRATION_LOCK = 0x5E1EC7  # pg_advisory_xact_lock id: one migrator at a time across bots

UPSERT_SQL = """
INSERT INTO state_records AS s
    (bot_id, key, category, tier, version, checksum, value, cold_ref, updated_at, expires_at)
SELECT $1, u.key, u.category, u.tier, 1, u.checksum, u.value, u.cold_ref, $2, u.expires_at
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::text[], $9::timestamptz[])
    AS u(key, category, tier, checksum, value, cold_ref, expires_at)
ON CONFLICT (bot_id, key) DO UPDATE SET
    category = EXCLUDED.category,
    tier = CASE WHEN s.tier = 'hot' AND EXCLUDED.tier = 'warm' THEN 'hot' ELSE EXCLUDED.tier END,
    version = s.version + 1,
    checksum = EXCLUDED.checksum,
    value = EXCLUDED.value,
    cold_ref = EXCLUDED.cold_ref,
    updated_at = EXCLUDED.updated_at,
    expires_at = EXCLUDED.expires_at
RETURNING key, version, tier
"""

# The fenced form of UPSERT_SQL: the lease row is read FOR SHARE in the same statement (so a concurrent
# acquire waits for this batch, or this batch sees the new epoch) and a newer epoch inserts no row at all.
FENCED_UPSERT_SQL = UPSERT_SQL.replace(
    "INSERT INTO state_records AS s",
    "WITH fence AS (SELECT epoch FROM state_leases WHERE bot_id = $1 FOR SHARE)\nINSERT INTO state_records AS s",
).replace(
    "AS u(key, category, tier, checksum, value, cold_ref, expires_at)\n",
    "AS u(key, category, tier, checksum, value, cold_ref, expires_at)\n"
    "WHERE NOT EXISTS (SELECT 1 FROM fence WHERE fence.epoch > $10)\n",
)
_MOVE_SQL = """
UPDATE state_records AS s SET tier = u.tier, value = u.value, cold_ref = u.cold_ref
FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bytea[], $6::text[])
    AS u(key, version, tier, value, cold_ref)
WHERE s.bot_id = $1 AND s.key = u.key AND s.version = u.version
RETURNING s.key
"""


def _row(rec: Any) -> WarmRow:
    return WarmRow(
        rec["key"],
        rec["category"],
        Tier(rec["tier"]),
        rec["version"],
        rec["checksum"],
        rec["value"],
        rec["cold_ref"],
        rec["updated_at"],
        rec["expires_at"],
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class PostgresWarmTier:
    """WARM tier in a (possibly shared) PostgreSQL database; rows are scoped by ``bot_id``."""

    name = "postgres"

    def __init__(
        self,
        url: str,
        keyspace: KeySpace,
        connect_timeout_seconds: float = 5.0,
        *,
        command_timeout_seconds: float = 60.0,
        bulk_timeout_seconds: float = 60.0,
    ) -> None:
        self._url = url
        self._bot = keyspace.bot_id
        self.server_watch = ServerWatch(url)  # which server new connections reach (a promotion is logged)
        self._timeout = connect_timeout_seconds
        # Bounds of one operation, from the acquire to the last row (see _conn): the loop's reads and writes,
        # and the snapshot-sized ones (checkpoints, checkpoint restores, migrations).
        self._command_timeout = command_timeout_seconds
        self._bulk_timeout = max(bulk_timeout_seconds, command_timeout_seconds)
        self._pool: asyncpg.Pool | None = None
        # tells a hung server from a slow one when an operation passes its bound (pg_liveness)
        self.liveness = Liveness(
            lambda: connect_any_host(url, timeout=connect_timeout_seconds), command_timeout_seconds
        )
        self._schema_version = 0
        self._fence: int | None = None

    def __repr__(self) -> str:
        return f"PostgresWarmTier(url={mask_url(self._url)!r}, bot_id={self._bot!r})"

    @property
    def schema_version(self) -> int:
        return self._schema_version

    def _unavailable(self, action: str, exc: BaseException) -> StateUnavailableError:
        return StateUnavailableError(
            f"postgresql at {mask_url(self._url)}: {action} failed: {type(exc).__name__}: {exc}"
        )

    @asynccontextmanager
    async def _conn(self, action: str, *, rows: int = 0, bulk: bool = False) -> AsyncIterator[Any]:
        """Acquire a connection for one operation; the one place asyncpg errors become bot errors (URL
        password masked).

        A hung server (SIGSTOP, a partition) accepts connections and answers nothing. The operation is bounded
        by the command timeout plus ``SECONDS_PER_ROW`` per row of the batch (``bulk``: the bulk timeout),
        from the acquire (which may open a connection) to its last row. When the bound passes on a server that
        did not answer a liveness query sent half-way (pg_liveness: a slow server or a paused bot gets more
        bounds, up to five), the connection is TERMINATED, not cancelled: a cancelled asyncpg call leaves its
        connection mid-operation (the pool's release then waits for a cancel request the hung server never
        answers, a transaction's rollback for a reply), while a terminated one fails the pending call at once
        and the pool drops it (a fresh one is opened once the server answers). The same happens when the
        caller is cancelled mid-operation. What the server does with a statement it received before it stopped
        is unknown to the caller, as after a kill: it may commit when it resumes.
        """
        if self._pool is None:
            raise StateUnavailableError(f"postgresql at {mask_url(self._url)}: not connected")
        limit = self._bulk_timeout if bulk else round(self._command_timeout + rows * SECONDS_PER_ROW, 3)
        watch: OperationWatch | None = None
        try:
            async with self._pool.acquire(timeout=limit) as conn:
                watch = OperationWatch(self.liveness, conn, limit, extend=not bulk)
                try:
                    yield conn
                except asyncio.CancelledError:
                    conn.terminate()  # cancelled mid-operation: never hand this connection out again
                    raise
                finally:
                    watch.cancel()
        except StateError:
            raise
        except (
            TimeoutError,
            OSError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            # a restarting server (57P03 "the database system is starting up", 57P01 admin shutdown) is an
            # outage to ride through, not a halt; so is a connection a cancelled call left mid-operation
            asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.InternalClientError,
        ) as exc:
            if (watch is not None and watch.expired) or isinstance(exc, TimeoutError):  # we dropped it
                raise StateUnavailableError(
                    f"postgresql at {mask_url(self._url)}: {action} failed: no answer within {limit}s"
                ) from None
            raise self._unavailable(action, exc) from None
        except asyncpg.PostgresError as exc:
            raise StateError(
                f"postgresql at {mask_url(self._url)}: {action} failed: {type(exc).__name__}: {exc}"
            ) from None

    @asynccontextmanager
    async def _fenced(self, action: str, *, rows: int = 0, bulk: bool = False) -> AsyncIterator[Any]:
        """A connection in a transaction whose first statement checks the fence (see the port docstring)."""
        async with self._conn(action, rows=rows, bulk=bulk) as conn, conn.transaction():
            if self._fence is not None:
                epoch = await lease.fence_epoch(conn, self._bot)
                if epoch is not None and epoch > self._fence:
                    raise self._fenced_error(action, epoch)
            yield conn

    def _fenced_error(self, action: str, epoch: int | None) -> FencedError:
        newer = "a newer epoch" if epoch is None else f"epoch {epoch}"
        return FencedError(
            f"postgresql: {action} of bot {self._bot!r} rejected: this writer holds epoch {self._fence}, "
            f"{newer} took over"
        )

    def set_fence(self, epoch: int | None) -> None:
        self._fence = epoch

    async def connect(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=1,
                    max_size=4,
                    timeout=self._timeout,
                    command_timeout=60,
                    connect=self.server_watch.connect,  # every host at once; a promotion is logged (pg_connect)
                    reset=_keep_session,
                )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise self._unavailable("connect", exc) from None
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        async with self._conn("migrate", bulk=True) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(VERSION_TABLE)
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM state_schema_version")
            for migration in pending(MIGRATIONS, current, "postgresql"):
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO state_schema_version (version, description) VALUES ($1, $2)",
                    migration.version,
                    migration.description,
                )
        self._schema_version = latest_version(MIGRATIONS)

    async def upsert_many(self, rows: Sequence[WarmWrite], now: datetime) -> dict[str, tuple[int, Tier]]:
        if not rows:
            return {}
        params = (
            self._bot,
            now,
            [r.key for r in rows],
            [r.category for r in rows],
            [r.tier.value for r in rows],
            [r.checksum for r in rows],
            [r.value for r in rows],
            [r.cold_ref for r in rows],
            [r.expires_at for r in rows],
        )
        async with self._conn("upsert", rows=len(rows)) as conn:
            if self._fence is None:
                records = await conn.fetch(UPSERT_SQL, *params)
            else:
                records = await conn.fetch(FENCED_UPSERT_SQL, *params, self._fence)
        if not records:  # a non-empty batch always returns its rows, unless the fence held it back
            raise self._fenced_error("upsert", None)
        tiers = _TIERS
        return {rec[0]: (rec[1], tiers[rec[2]]) for rec in records}

    async def get_many(self, keys: Sequence[str], now: datetime) -> dict[str, WarmRow]:
        if not keys:
            return {}
        async with self._conn("read", rows=len(keys)) as conn:
            records = await conn.fetch(_GET_SQL, self._bot, now, list(keys))
        return {rec["key"]: _row(rec) for rec in records}

    async def get_versions(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        if not keys:
            return {}
        async with self._conn("read versions", rows=len(keys)) as conn:
            records = await conn.fetch(_VERSIONS_SQL, self._bot, list(keys))
        return {rec[0]: (rec[1], rec[2]) for rec in records}

    async def delete_many(self, keys: Sequence[str], now: datetime) -> list[str]:
        if not keys:
            return []
        async with self._fenced("delete", rows=len(keys)) as conn:
            records = await conn.fetch(_DELETE_SQL, self._bot, now, list(keys))
        return [rec[0] for rec in records if rec[1]]

    async def move_many(self, moves: Sequence[TierMove]) -> list[str]:
        if not moves:
            return []
        async with self._fenced("move", rows=len(moves)) as conn:
            records = await conn.fetch(
                _MOVE_SQL,
                self._bot,
                [m.key for m in moves],
                [m.version for m in moves],
                [m.tier.value for m in moves],
                [m.value for m in moves],
                [m.cold_ref for m in moves],
            )
        return [rec[0] for rec in records]

    async def keys_matching(self, pattern: str, now: datetime) -> list[str]:
        prefix = _like_escape(literal_prefix(pattern)) + "%"
        async with self._conn("list keys") as conn:
            records = await conn.fetch(_KEYS_SQL, self._bot, now, prefix, glob_to_regex(pattern))
        return [rec[0] for rec in records]

    async def page_rows(
        self, after_key: str, limit: int, now: datetime, *, tier: Tier | None = None
    ) -> list[WarmRow]:
        tier_name = None if tier is None else tier.value
        async with self._conn("page rows", rows=limit) as conn:
            records = await conn.fetch(_PAGE_SQL, self._bot, now, after_key, limit, tier_name)
        return [_row(rec) for rec in records]

    async def hot_page(self, after_key: str, limit: int, now: datetime) -> list[PackedRecord]:
        async with self._conn("hot page", rows=limit) as conn:
            records = await conn.fetch(_HOT_PAGE_SQL, self._bot, now, after_key, limit)
        return [PackedRecord(rec[0], rec[1], rec[2], rec[3]) for rec in records]

    async def hot_versions(self, after_key: str, limit: int, now: datetime) -> dict[str, tuple[int, str]]:
        async with self._conn("hot versions", rows=limit) as conn:
            records = await conn.fetch(_HOT_VERSIONS_SQL, self._bot, now, after_key, limit)
        return versions_by_key(records)

    async def stats(self, now: datetime) -> tuple[dict[str, int], int]:
        async with self._conn("stats", bulk=True) as conn:
            records = await conn.fetch(_STATS_SQL, self._bot, now)
        return {rec[0]: rec[1] for rec in records}, sum(int(rec[2]) for rec in records)

    async def snapshot_pages(
        self, now: datetime, exclude_categories: Sequence[str], page_size: int
    ) -> AsyncGenerator[SnapshotPage, None]:
        # asyncpg decodes a fetched page on the event loop; the page is handed over as columns (zip in C),
        # never as a row object per row
        async with (
            self._conn("snapshot", bulk=True) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            cursor = await checkpoints.snapshot_cursor(conn, self._bot, now, exclude_categories)
            while True:
                page = await cursor.fetch(page_size)
                if page:
                    yield SnapshotPage(*zip(*page, strict=True))
                if len(page) < page_size:
                    return

    async def replace_rows(
        self, rows: Sequence[WarmRestore], keep_categories: Sequence[str], now: datetime
    ) -> tuple[dict[str, tuple[int, Tier]], list[str]]:
        async with self._fenced("restore", bulk=True) as conn:
            return await checkpoints.replace_rows(conn, self._bot, rows, keep_categories, now)

    async def put_checkpoint(self, info: CheckpointInfo, blob: bytes) -> None:
        async with self._fenced("store checkpoint", bulk=True) as conn:
            await checkpoints.put_checkpoint(conn, self._bot, info, blob)

    async def list_checkpoints(self) -> list[CheckpointInfo]:
        async with self._conn("list checkpoints", bulk=True) as conn:
            return await checkpoints.list_checkpoints(conn, self._bot)

    async def get_checkpoint(self, checkpoint_id: str) -> tuple[CheckpointInfo, bytes] | None:
        async with self._conn("read checkpoint", bulk=True) as conn:
            return await checkpoints.get_checkpoint(conn, self._bot, checkpoint_id)

    async def prune_checkpoints(self, keep: int) -> list[str]:
        async with self._fenced("prune checkpoints", bulk=True) as conn:
            return await checkpoints.prune_checkpoints(conn, self._bot, keep)

    # --- the ownership lease (``pg_lease.py``) -------------------------------------------------------

    async def acquire_lease(self, claim: LeaseClaim, ttl_seconds: float) -> LeaseGrant:
        async with self._conn("acquire lease") as conn:
            grant = await lease.acquire(conn, self._bot, claim, ttl_seconds)
        if grant is None:  # deleted between the two statements: try again
            return await self.acquire_lease(claim, ttl_seconds)
        return grant

    async def renew_lease(self, holder: str, epoch: int, ttl_seconds: float) -> LeaseRecord:
        async with self._conn("renew lease") as conn:
            renewed = await lease.renew(conn, self._bot, holder, epoch, ttl_seconds)
        if renewed is None:
            raise FencedError(f"postgresql: lease of bot {self._bot!r} epoch {epoch} was taken over")
        return renewed

    async def release_lease(self, holder: str, epoch: int) -> bool:
        async with self._conn("release lease") as conn:
            return await lease.release(conn, self._bot, holder, epoch)

    async def request_handover(self, source: str) -> LeaseRecord | None:
        async with self._conn("request handover") as conn:
            return await lease.request_handover(conn, self._bot, source)

    async def read_lease(self) -> LeaseRecord | None:
        async with self._conn("read lease") as conn:
            return await lease.read(conn, self._bot)

    async def close(self) -> None:
        await self.liveness.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(self._timeout):
                    await pool.close()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()
