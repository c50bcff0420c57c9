"""The ownership lease and write fence of the PostgreSQL WARM tier: SQL and functions over one connection.

Why a module of its own: the lease (DESIGN.md "Ownership") is a different idea from storing records -- one row
per bot in ``state_leases`` whose epoch grows with every new holder, timed by the database's clock (never a
host's), and the fence every WARM write checks against it -- and it is the part a reader of the ownership
rules needs to find. ``PostgresWarmTier`` calls these functions on a connection it acquired (its bounds,
error translation and hung-server handling stay in one place there). The fenced form of the upsert is
``postgres_warm.FENCED_UPSERT_SQL``: the fence inside the batch's own statement.
"""

from __future__ import annotations

from typing import Any

from bot_v2.state.models import LeaseClaim, LeaseGrant, LeaseRecord

_ACQUIRE_SQL = """
INSERT INTO state_leases AS l
    (bot_id, holder, host, pid, role, epoch, acquired_at, renewed_at, expires_at, handover_requested)
VALUES ($1, $2, $3, $4, $5, greatest(1, $7::bigint), now(), now(), now() + $6::float8 * interval '1 second', false)
ON CONFLICT (bot_id) DO UPDATE SET
    holder = EXCLUDED.holder, host = EXCLUDED.host, pid = EXCLUDED.pid, role = EXCLUDED.role,
    epoch = greatest(l.epoch + 1, $7::bigint), acquired_at = EXCLUDED.acquired_at, renewed_at = EXCLUDED.renewed_at,
    expires_at = EXCLUDED.expires_at, handover_requested = false, handover_source = NULL
WHERE l.expires_at <= now()
RETURNING bot_id, holder, host, pid, role, epoch,
    acquired_at, renewed_at, expires_at, handover_requested, handover_source, now() AS db_now
"""
_RENEW_SQL = """
UPDATE state_leases SET renewed_at = now(), expires_at = now() + $4::float8 * interval '1 second'
WHERE bot_id = $1 AND holder = $2 AND epoch = $3
RETURNING bot_id, holder, host, pid, role, epoch,
    acquired_at, renewed_at, expires_at, handover_requested, handover_source, now() AS db_now
"""
_RELEASE_SQL = """
UPDATE state_leases SET expires_at = least(expires_at, now()), handover_requested = false, handover_source = NULL
WHERE bot_id = $1 AND holder = $2 AND epoch = $3 RETURNING epoch
"""
_HANDOVER_SQL = """
UPDATE state_leases SET handover_requested = true, handover_source = $2 WHERE bot_id = $1 AND expires_at > now()
RETURNING bot_id, holder, host, pid, role, epoch,
    acquired_at, renewed_at, expires_at, handover_requested, handover_source, now() AS db_now
"""
_READ_SQL = """
SELECT bot_id, holder, host, pid, role, epoch,
    acquired_at, renewed_at, expires_at, handover_requested, handover_source, now() AS db_now
FROM state_leases WHERE bot_id = $1
"""
# in a write's transaction, before it writes: a concurrent acquire waits for the transaction (FOR SHARE)
_FENCE_SQL = "SELECT epoch FROM state_leases WHERE bot_id = $1 FOR SHARE"


def _lease(rec: Any) -> LeaseRecord:
    return LeaseRecord(
        rec["bot_id"],
        rec["holder"],
        rec["host"],
        rec["pid"],
        rec["role"],
        rec["epoch"],
        rec["acquired_at"],
        rec["renewed_at"],
        rec["expires_at"],
        rec["db_now"],
        rec["handover_requested"],
        rec["handover_source"],
    )


async def fence_epoch(conn: Any, bot: str) -> int | None:
    """The lease epoch, read FOR SHARE inside the caller's transaction (None: no lease row)."""
    epoch: int | None = await conn.fetchval(_FENCE_SQL, bot)
    return epoch


async def acquire(conn: Any, bot: str, claim: LeaseClaim, ttl_seconds: float) -> LeaseGrant | None:
    """Take the lease if nobody holds a live one (a new epoch), else report the live holder; None: the row
    was deleted between the two statements (the caller tries again)."""
    rec = await conn.fetchrow(
        _ACQUIRE_SQL, bot, claim.holder, claim.host, claim.pid, claim.role, ttl_seconds, claim.min_epoch
    )
    if rec is not None:
        return LeaseGrant(True, _lease(rec))
    held = await conn.fetchrow(_READ_SQL, bot)
    return None if held is None else LeaseGrant(False, _lease(held))


async def renew(conn: Any, bot: str, holder: str, epoch: int, ttl_seconds: float) -> LeaseRecord | None:
    """Extend the lease of ``holder`` at ``epoch``; None if it was taken over."""
    rec = await conn.fetchrow(_RENEW_SQL, bot, holder, epoch, ttl_seconds)
    return None if rec is None else _lease(rec)


async def release(conn: Any, bot: str, holder: str, epoch: int) -> bool:
    """Expire the lease now (if ``holder`` still holds ``epoch``); return whether it did."""
    return await conn.fetchval(_RELEASE_SQL, bot, holder, epoch) is not None


async def request_handover(conn: Any, bot: str, source: str) -> LeaseRecord | None:
    """Flag the live lease for handover, recording who asked and why (None: nobody holds a live one)."""
    rec = await conn.fetchrow(_HANDOVER_SQL, bot, source)
    return None if rec is None else _lease(rec)


async def read(conn: Any, bot: str) -> LeaseRecord | None:
    """The lease row with the database's clock (None: never held)."""
    rec = await conn.fetchrow(_READ_SQL, bot)
    return None if rec is None else _lease(rec)
