"""WARM tier on SQLite (the dev profile default): stdlib sqlite3 on one dedicated worker thread.

The event loop never touches the database file: every call is shipped to a single-thread executor that owns
the connection, and each batch runs in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction.

WAL checkpoints are kept off the commit path and the WAL is kept bounded (``sqlite_wal.py``): a background
checkpoint on a connection and thread of its own, a blocking one only past a hard limit.

This module is the connection, its threads, the write transaction with its fence, and the record I/O; the
ownership lease is ``sqlite_lease.py`` and state checkpoints (the paged snapshot, the restore, the stored
blobs) ``sqlite_checkpoints.py``: functions over a connection that the tier runs on its threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bot_v2.errors import StateError, StateUnavailableError
from bot_v2.state.keys import KeySpace
from bot_v2.state.migrations import latest_version, pending
from bot_v2.state.migrations.sqlite import MIGRATIONS, VERSION_TABLE
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
from bot_v2.state.tiers import sqlite_checkpoints as checkpoints
from bot_v2.state.tiers import sqlite_lease as lease
from bot_v2.state.tiers.hot import PackedRecord
from bot_v2.state.tiers.sqlite_wal import WAL_CHECKPOINT_PAGES, WAL_HARD_LIMIT_PAGES, WalKeeper
from bot_v2.state.tiers.warm import SnapshotPage, pack_rows, versions_by_key

T = TypeVar("T")
logger = logging.getLogger(__name__)

_GET_SQL = """
SELECT key, category, tier, version, checksum, value, cold_ref, updated_at_us, expires_at_us FROM
state_records WHERE bot_id = ? AND (expires_at_us IS NULL OR expires_at_us > ?) AND key IN (SELECT
value FROM json_each(?))
"""
_VERSIONS_SQL = """
SELECT key, version, checksum FROM state_records WHERE bot_id = ? AND key IN (SELECT value FROM
json_each(?))
"""
_DELETE_SQL = """
DELETE FROM state_records WHERE bot_id = ? AND key IN (SELECT value FROM json_each(?))
RETURNING key, expires_at_us
"""
_MOVE_SQL = """
UPDATE state_records SET tier = ?, value = ?, cold_ref = ? WHERE bot_id = ? AND key = ? AND version
= ? RETURNING key
"""
_KEYS_SQL = """
SELECT key FROM state_records WHERE bot_id = ? AND (expires_at_us IS NULL OR expires_at_us > ?) AND
key GLOB ? ORDER BY key
"""
_PAGE_SQL = """
SELECT key, category, tier, version, checksum, value, cold_ref, updated_at_us, expires_at_us FROM
state_records WHERE bot_id = ?1 AND (expires_at_us IS NULL OR expires_at_us > ?2) AND key > ?3
AND (?5 IS NULL OR tier = ?5) ORDER BY key LIMIT ?4
"""
_HOT_VERSIONS_SQL = """
SELECT key, version, checksum FROM state_records WHERE bot_id = ?1 AND (expires_at_us IS NULL OR
expires_at_us > ?2) AND key > ?3 AND tier = 'hot' ORDER BY key LIMIT ?4
"""
_STATS_SQL = """
SELECT tier, count(*), coalesce(sum(length(value)), 0) FROM state_records WHERE bot_id = ? AND
(expires_at_us IS NULL OR expires_at_us > ?) GROUP BY tier
"""

_UPSERT_SQL = """
INSERT INTO state_records
    (bot_id, key, category, tier, version, checksum, value, cold_ref, updated_at_us, expires_at_us)
VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?)
ON CONFLICT (bot_id, key) DO UPDATE SET
    category = excluded.category,
    tier = CASE WHEN state_records.tier = 'hot' AND excluded.tier = 'warm' THEN 'hot' ELSE excluded.tier END,
    version = state_records.version + 1,
    checksum = excluded.checksum,
    value = excluded.value,
    cold_ref = excluded.cold_ref,
    updated_at_us = excluded.updated_at_us,
    expires_at_us = excluded.expires_at_us
RETURNING version, tier
"""


def _us(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1_000_000)


def _dt(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def _row(rec: tuple[Any, ...]) -> WarmRow:
    updated = _dt(rec[7])
    assert updated is not None
    value = None if rec[5] is None else bytes(rec[5])
    return WarmRow(rec[0], rec[1], Tier(rec[2]), rec[3], rec[4], value, rec[6], updated, _dt(rec[8]))


def _glob(pattern: str) -> str:
    """Redis negated classes are ``[^a]``; SQLite GLOB spells them the same, but also map ``[!a]``."""
    return pattern.replace("[!", "[^")


class SqliteWarmTier:
    """WARM tier in a local SQLite file (WAL mode), rows scoped by ``bot_id``."""

    name = "sqlite"

    def __init__(
        self,
        path: Path,
        keyspace: KeySpace,
        connect_timeout_seconds: float = 5.0,
        *,
        wal_checkpoint_pages: int = WAL_CHECKPOINT_PAGES,
        wal_hard_limit_pages: int = WAL_HARD_LIMIT_PAGES,
    ) -> None:
        self._wal = WalKeeper(path, wal_checkpoint_pages, wal_hard_limit_pages, connect_timeout_seconds)
        self._path = path
        self._bot = keyspace.bot_id
        self._timeout = connect_timeout_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        # checkpoint snapshots: a read transaction on a connection and thread of their own (neither the writer
        # nor the WAL checkpointer waits for a snapshot read page by page); one snapshot at a time
        self._snap_executor: ThreadPoolExecutor | None = None
        self._snap_db: sqlite3.Connection | None = None
        self._snap_lock = asyncio.Lock()
        self._schema_version = 0
        self._fence: int | None = None

    def __repr__(self) -> str:
        return f"SqliteWarmTier(path={str(self._path)!r}, bot_id={self._bot!r})"

    @property
    def schema_version(self) -> int:
        return self._schema_version

    @property
    def wal_checkpoints(self) -> int:
        """Background WAL checkpoints completed."""
        return self._wal.checkpoints

    @property
    def wal_blocking_checkpoints(self) -> int:
        """Hard-limit WAL checkpoints run inside a write."""
        return self._wal.blocking_checkpoints

    async def _run(self, action: str, fn: Callable[[sqlite3.Connection], T], *, snap: bool = False) -> T:
        """Run ``fn(connection)`` on the worker thread (``snap``: on the snapshot connection and thread, which
        never delay the writer); the one place sqlite3 errors are translated."""
        executor, db = (self._snap_executor, self._snap_db) if snap else (self._executor, self._db)
        if executor is None or db is None:
            raise StateUnavailableError(f"sqlite at {self._path}: not connected")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, db)
        except StateError:
            raise
        except sqlite3.OperationalError as exc:
            raise StateUnavailableError(f"sqlite at {self._path}: {action} failed: {exc}") from None
        except sqlite3.Error as exc:
            raise StateError(
                f"sqlite at {self._path}: {action} failed: {type(exc).__name__}: {exc}"
            ) from None

    @staticmethod
    def _transaction(db: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = body(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def wal_pages(self) -> int:
        """Frames in the WAL file not yet reused (blocking ``stat``: call it from the worker threads)."""
        return self._wal.pages()

    def set_fence(self, epoch: int | None) -> None:
        self._fence = epoch

    def _check_fence(self, db: sqlite3.Connection, action: str) -> None:
        """Inside the write transaction (BEGIN IMMEDIATE holds the write lock, so no acquire can slip in)."""
        lease.check_fence(db, self._bot, self._fence, f"sqlite at {self._path}", action)

    async def _write(self, action: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one fenced write transaction; then keep the WAL bounded (module docstring)."""

        def fenced(db: sqlite3.Connection) -> T:
            self._check_fence(db, action)
            return body(db)

        def job(db: sqlite3.Connection) -> tuple[T, int]:
            result = self._transaction(db, fenced)
            return result, self._wal.after_write(db)

        result, pages = await self._run(action, job)
        self._wal.written(pages)
        return result

    async def checkpoint_wal(self) -> None:
        """Wait for a running background checkpoint (tests and benchmarks; writes never need this)."""
        await self._wal.wait()

    async def connect(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-sqlite")
        loop = asyncio.get_running_loop()

        def open_db() -> sqlite3.Connection:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._wal.configure(db)  # no automatic checkpoint inside a commit (sqlite_wal.py)
            return db

        def open_aux() -> sqlite3.Connection:
            aux = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            aux.execute("PRAGMA wal_autocheckpoint=0")
            return aux

        try:
            self._db = await loop.run_in_executor(self._executor, open_db)
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StateUnavailableError(f"sqlite at {self._path}: open failed: {exc}") from None
        try:
            self._schema_version = await self._run("migrate", self._migrate)
            await self._wal.open(open_aux)
            self._snap_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-sqlite-snap")
            self._snap_db = await loop.run_in_executor(self._snap_executor, open_aux)
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StateUnavailableError(f"sqlite at {self._path}: open failed: {exc}") from None
        except BaseException:
            await self.close()
            raise

    @classmethod
    def _migrate(cls, db: sqlite3.Connection) -> int:
        def body(db: sqlite3.Connection) -> int:
            db.execute(VERSION_TABLE)
            current = db.execute("SELECT coalesce(max(version), 0) FROM state_schema_version").fetchone()[0]
            for migration in pending(MIGRATIONS, current, "sqlite"):
                for statement in migration.statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO state_schema_version (version, description, applied_at_us) VALUES (?, ?, ?)",
                    (migration.version, migration.description, int(time.time() * 1_000_000)),
                )
            return latest_version(MIGRATIONS)

        return cls._transaction(db, body)

    async def upsert_many(self, rows: Sequence[WarmWrite], now: datetime) -> dict[str, tuple[int, Tier]]:
        if not rows:
            return {}
        now_us = _us(now)

        def body(db: sqlite3.Connection) -> dict[str, tuple[int, Tier]]:
            out: dict[str, tuple[int, Tier]] = {}
            for r in rows:
                params = (self._bot, r.key, r.category, r.tier.value, r.checksum, r.value, r.cold_ref)
                version, tier = db.execute(_UPSERT_SQL, (*params, now_us, _us(r.expires_at))).fetchone()
                out[r.key] = (version, Tier(tier))
            return out

        return await self._write("upsert", body)

    async def get_many(self, keys: Sequence[str], now: datetime) -> dict[str, WarmRow]:
        if not keys:
            return {}
        params = (self._bot, _us(now), json.dumps(list(keys)))
        rows = await self._run("read", lambda db: db.execute(_GET_SQL, params).fetchall())
        return {rec[0]: _row(rec) for rec in rows}

    async def get_versions(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        if not keys:
            return {}
        params = (self._bot, json.dumps(list(keys)))
        rows = await self._run("read versions", lambda db: db.execute(_VERSIONS_SQL, params).fetchall())
        return {rec[0]: (rec[1], rec[2]) for rec in rows}

    async def delete_many(self, keys: Sequence[str], now: datetime) -> list[str]:
        if not keys:
            return []
        params = (self._bot, json.dumps(list(keys)))
        now_us = _us(now) or 0

        def body(db: sqlite3.Connection) -> list[str]:
            # liveness is computed here: SQLite 3.40 returns NULL for expressions in RETURNING on
            # WITHOUT ROWID tables after DELETE
            rows = db.execute(_DELETE_SQL, params).fetchall()
            return [rec[0] for rec in rows if rec[1] is None or rec[1] > now_us]

        return await self._write("delete", body)

    async def move_many(self, moves: Sequence[TierMove]) -> list[str]:
        if not moves:
            return []

        def body(db: sqlite3.Connection) -> list[str]:
            moved: list[str] = []
            for m in moves:
                row = db.execute(
                    _MOVE_SQL, (m.tier.value, m.value, m.cold_ref, self._bot, m.key, m.version)
                ).fetchone()
                if row is not None:
                    moved.append(row[0])
            return moved

        return await self._write("move", body)

    async def keys_matching(self, pattern: str, now: datetime) -> list[str]:
        params = (self._bot, _us(now), _glob(pattern))
        rows = await self._run("list keys", lambda db: db.execute(_KEYS_SQL, params).fetchall())
        return [rec[0] for rec in rows]

    async def page_rows(
        self, after_key: str, limit: int, now: datetime, *, tier: Tier | None = None
    ) -> list[WarmRow]:
        params = (self._bot, _us(now), after_key, limit, None if tier is None else tier.value)
        rows = await self._run("page rows", lambda db: db.execute(_PAGE_SQL, params).fetchall())
        return [_row(rec) for rec in rows]

    async def hot_page(self, after_key: str, limit: int, now: datetime) -> list[PackedRecord]:
        return pack_rows(await self.page_rows(after_key, limit, now, tier=Tier.HOT), now)

    async def hot_versions(self, after_key: str, limit: int, now: datetime) -> dict[str, tuple[int, str]]:
        params = (self._bot, _us(now), after_key, limit)
        rows = await self._run("hot versions", lambda db: db.execute(_HOT_VERSIONS_SQL, params).fetchall())
        return versions_by_key(rows)

    async def stats(self, now: datetime) -> tuple[dict[str, int], int]:
        params = (self._bot, _us(now))
        rows = await self._run("stats", lambda db: db.execute(_STATS_SQL, params).fetchall())
        return {rec[0]: rec[1] for rec in rows}, sum(int(rec[2]) for rec in rows)

    async def snapshot_pages(
        self, now: datetime, exclude_categories: Sequence[str], page_size: int
    ) -> AsyncGenerator[SnapshotPage, None]:
        """A WAL read transaction on the snapshot connection, one page per trip to its thread: the thread holds
        the GIL only while it turns one page into Python objects (a whole 10,000-row snapshot read in one go
        held it for tens of milliseconds, and the event loop and the writer thread waited for it)."""
        bot, exclude = self._bot, list(exclude_categories)
        async with self._snap_lock:
            try:
                cursor = await self._run(
                    "snapshot", lambda db: checkpoints.snapshot_begin(db, bot, now, exclude), snap=True
                )

                def fetch(_db: sqlite3.Connection) -> SnapshotPage | None:
                    return checkpoints.snapshot_page(cursor, page_size)

                while (page := await self._run("snapshot", fetch, snap=True)) is not None:
                    yield page
                    if len(page.keys) < page_size:
                        return
            finally:
                with contextlib.suppress(StateError):
                    await self._run("snapshot end", checkpoints.snapshot_end, snap=True)

    async def replace_rows(
        self, rows: Sequence[WarmRestore], keep_categories: Sequence[str], now: datetime
    ) -> tuple[dict[str, tuple[int, Tier]], list[str]]:
        return await self._write(
            "restore", lambda db: checkpoints.replace_rows(db, self._bot, rows, keep_categories, now)
        )

    async def put_checkpoint(self, info: CheckpointInfo, blob: bytes) -> None:
        await self._write(
            "store checkpoint", lambda db: checkpoints.put_checkpoint(db, self._bot, info, blob)
        )

    async def list_checkpoints(self) -> list[CheckpointInfo]:
        return await self._run("list checkpoints", lambda db: checkpoints.list_checkpoints(db, self._bot))

    async def get_checkpoint(self, checkpoint_id: str) -> tuple[CheckpointInfo, bytes] | None:
        return await self._run(
            "read checkpoint", lambda db: checkpoints.get_checkpoint(db, self._bot, checkpoint_id)
        )

    async def prune_checkpoints(self, keep: int) -> list[str]:
        return await self._write(
            "prune checkpoints", lambda db: checkpoints.prune_checkpoints(db, self._bot, keep)
        )

    # --- the ownership lease (``sqlite_lease.py``): each change is one write transaction ----------------

    async def acquire_lease(self, claim: LeaseClaim, ttl_seconds: float) -> LeaseGrant:
        return await self._run(
            "acquire lease",
            lambda db: self._transaction(db, lambda db: lease.acquire(db, self._bot, claim, ttl_seconds)),
        )

    async def renew_lease(self, holder: str, epoch: int, ttl_seconds: float) -> LeaseRecord:
        bot, where = self._bot, f"sqlite at {self._path}"

        def body(db: sqlite3.Connection) -> LeaseRecord:
            return lease.renew(db, bot, holder, epoch, ttl_seconds, where)

        return await self._run("renew lease", lambda db: self._transaction(db, body))

    async def release_lease(self, holder: str, epoch: int) -> bool:
        return await self._run(
            "release lease",
            lambda db: self._transaction(db, lambda db: lease.release(db, self._bot, holder, epoch)),
        )

    async def request_handover(self, source: str) -> LeaseRecord | None:
        return await self._run(
            "request handover",
            lambda db: self._transaction(db, lambda db: lease.request_handover(db, self._bot, source)),
        )

    async def read_lease(self) -> LeaseRecord | None:
        return await self._run("read lease", lambda db: lease.read(db, self._bot))

    async def close(self) -> None:
        """Stop the background checkpoint, checkpoint with TRUNCATE (no WAL left behind), close."""
        executor, db = self._executor, self._db
        snap_executor, snap = self._snap_executor, self._snap_db
        self._snap_executor, self._snap_db = None, None
        self._executor, self._db = None, None
        loop = asyncio.get_running_loop()
        await self._wal.close()
        if snap_executor is not None:
            if snap is not None:
                snap.interrupt()  # a snapshot still reading stops at its next step
                await loop.run_in_executor(snap_executor, snap.close)
            snap_executor.shutdown(wait=False)
        if executor is None:
            return
        if db is not None:

            def finish() -> None:
                try:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:  # e.g. another process reads: it checkpoints later
                    logger.warning("sqlite at %s: final WAL checkpoint failed: %s", self._path, exc)
                finally:
                    db.close()

            await loop.run_in_executor(executor, finish)
        executor.shutdown(wait=False)
