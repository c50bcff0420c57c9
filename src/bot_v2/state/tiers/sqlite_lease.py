"""The ownership lease and write fence of the SQLite WARM tier: SQL and functions over one connection.

Why a module of its own: the lease (DESIGN.md "Ownership") is a different idea from storing records -- one row
per bot in ``state_leases`` whose epoch grows with every new holder, and the fence every WARM write checks
against it -- and it is the part a reader of the ownership rules needs to find. ``SqliteWarmTier`` runs each
function on its worker thread, inside a ``BEGIN IMMEDIATE`` transaction where it writes (the write lock is
held, so no acquire can slip between a check and a write). The store's clock is the host's (the file is
local); times are integer microseconds since the epoch.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

from bot_v2.errors import FencedError
from bot_v2.state.models import LeaseClaim, LeaseGrant, LeaseRecord

_READ_SQL = """
SELECT bot_id, holder, host, pid, role, epoch,
    acquired_at_us, renewed_at_us, expires_at_us, handover_requested, handover_source
FROM state_leases WHERE bot_id = ?
"""
_ACQUIRE_SQL = """
INSERT INTO state_leases AS l
    (bot_id, holder, host, pid, role, epoch, acquired_at_us, renewed_at_us, expires_at_us, handover_requested)
VALUES (?1, ?2, ?3, ?4, ?5, max(1, ?8), ?6, ?6, ?7, 0)
ON CONFLICT (bot_id) DO UPDATE SET
    holder = excluded.holder, host = excluded.host, pid = excluded.pid, role = excluded.role,
    epoch = max(l.epoch + 1, ?8), acquired_at_us = excluded.acquired_at_us, renewed_at_us = excluded.renewed_at_us,
    expires_at_us = excluded.expires_at_us, handover_requested = 0, handover_source = NULL
WHERE l.expires_at_us <= ?6
RETURNING bot_id, holder, host, pid, role, epoch,
    acquired_at_us, renewed_at_us, expires_at_us, handover_requested, handover_source
"""
_RENEW_SQL = """
UPDATE state_leases SET renewed_at_us = ?4, expires_at_us = ?5 WHERE bot_id = ?1 AND holder = ?2 AND epoch = ?3
RETURNING bot_id, holder, host, pid, role, epoch,
    acquired_at_us, renewed_at_us, expires_at_us, handover_requested, handover_source
"""
_RELEASE_SQL = """
UPDATE state_leases SET expires_at_us = min(expires_at_us, ?4), handover_requested = 0, handover_source = NULL
WHERE bot_id = ?1 AND holder = ?2 AND epoch = ?3 RETURNING epoch
"""
_HANDOVER_SQL = """
UPDATE state_leases SET handover_requested = 1, handover_source = ?3 WHERE bot_id = ?1 AND expires_at_us > ?2
RETURNING bot_id, holder, host, pid, role, epoch,
    acquired_at_us, renewed_at_us, expires_at_us, handover_requested, handover_source
"""
_EPOCH_SQL = "SELECT epoch FROM state_leases WHERE bot_id = ?"


def _now_us() -> int:
    """The store's clock: SQLite is a local file, so the clock of the host that owns it."""
    return time.time_ns() // 1000


def _dt(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def _lease(rec: tuple[Any, ...], now_us: int) -> LeaseRecord:
    times = [_dt(us) for us in (rec[6], rec[7], rec[8], now_us)]
    acquired, renewed, expires, now = (t for t in times if t is not None)
    return LeaseRecord(
        rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], acquired, renewed, expires, now, bool(rec[9]), rec[10]
    )


def check_fence(db: sqlite3.Connection, bot: str, fence: int | None, where: str, action: str) -> None:
    """Raise ``FencedError`` if a holder newer than epoch ``fence`` took the lease (None: unfenced); call it
    inside the write transaction."""
    if fence is None:
        return
    row = db.execute(_EPOCH_SQL, (bot,)).fetchone()
    if row is not None and row[0] > fence:
        raise FencedError(
            f"{where}: {action} of bot {bot!r} rejected: this writer holds epoch {fence}, epoch {row[0]} took over"
        )


def acquire(db: sqlite3.Connection, bot: str, claim: LeaseClaim, ttl_seconds: float) -> LeaseGrant:
    """Take the lease if nobody holds a live one (a new epoch), else report the live holder."""
    now = _now_us()
    expires = now + int(ttl_seconds * 1_000_000)
    rec = db.execute(
        _ACQUIRE_SQL, (bot, claim.holder, claim.host, claim.pid, claim.role, now, expires, claim.min_epoch)
    ).fetchone()
    if rec is not None:
        return LeaseGrant(True, _lease(rec, now))
    return LeaseGrant(False, _lease(db.execute(_READ_SQL, (bot,)).fetchone(), now))


def renew(
    db: sqlite3.Connection, bot: str, holder: str, epoch: int, ttl_seconds: float, where: str
) -> LeaseRecord:
    """Extend the lease of ``holder`` at ``epoch``; ``FencedError`` if it was taken over."""
    now = _now_us()
    rec = db.execute(_RENEW_SQL, (bot, holder, epoch, now, now + int(ttl_seconds * 1_000_000))).fetchone()
    if rec is None:
        raise FencedError(f"{where}: lease of bot {bot!r} epoch {epoch} was taken over")
    return _lease(rec, now)


def release(db: sqlite3.Connection, bot: str, holder: str, epoch: int) -> bool:
    """Expire the lease now (if ``holder`` still holds ``epoch``); return whether it did."""
    return db.execute(_RELEASE_SQL, (bot, holder, epoch, _now_us())).fetchone() is not None


def request_handover(db: sqlite3.Connection, bot: str, source: str) -> LeaseRecord | None:
    """Flag the live lease for handover, recording who asked and why (None: nobody holds a live one)."""
    now = _now_us()
    rec = db.execute(_HANDOVER_SQL, (bot, now, source)).fetchone()
    return None if rec is None else _lease(rec, now)


def read(db: sqlite3.Connection, bot: str) -> LeaseRecord | None:
    """The lease row with the store's clock (None: never held)."""
    rec = db.execute(_READ_SQL, (bot,)).fetchone()
    return None if rec is None else _lease(rec, _now_us())
