"""WARM tier on SQLite (the dev profile default): stdlib sqlite3 on one dedicated worker thread.

The event loop never touches the database file: every call is shipped to a single-thread executor that owns
the connection, and each batch runs in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bot_v2.errors import StateError, StateUnavailableError
from bot_v2.state.keys import KeySpace
from bot_v2.state.migrations import latest_version, pending
from bot_v2.state.migrations.sqlite import MIGRATIONS, VERSION_TABLE
from bot_v2.state.models import Tier, TierMove, WarmRow, WarmWrite

T = TypeVar("T")

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

    def __init__(self, path: Path, keyspace: KeySpace, connect_timeout_seconds: float = 5.0) -> None:
        self._path = path
        self._bot = keyspace.bot_id
        self._timeout = connect_timeout_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._schema_version = 0

    def __repr__(self) -> str:
        return f"SqliteWarmTier(path={str(self._path)!r}, bot_id={self._bot!r})"

    @property
    def schema_version(self) -> int:
        return self._schema_version

    async def _run(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the worker thread; the one place sqlite3 errors are translated."""
        if self._executor is None or self._db is None:
            raise StateUnavailableError(f"sqlite at {self._path}: not connected")
        db = self._db
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, db)
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
            return db

        try:
            self._db = await loop.run_in_executor(self._executor, open_db)
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StateUnavailableError(f"sqlite at {self._path}: open failed: {exc}") from None
        try:
            self._schema_version = await self._run("migrate", self._migrate)
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

        return await self._run("upsert", lambda db: self._transaction(db, body))

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

        return await self._run("delete", lambda db: self._transaction(db, body))

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

        return await self._run("move", lambda db: self._transaction(db, body))

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

    async def stats(self, now: datetime) -> tuple[dict[str, int], int]:
        params = (self._bot, _us(now))
        rows = await self._run("stats", lambda db: db.execute(_STATS_SQL, params).fetchall())
        return {rec[0]: rec[1] for rec in rows}, sum(int(rec[2]) for rec in rows)

    async def close(self) -> None:
        executor, db = self._executor, self._db
        self._executor, self._db = None, None
        if executor is None:
            return
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(executor, db.close)
        executor.shutdown(wait=False)
