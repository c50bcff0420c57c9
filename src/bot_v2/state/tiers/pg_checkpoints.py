"""State checkpoints on the PostgreSQL WARM tier: the snapshot query, the restore, the stored blobs.

Why a module of its own: a checkpoint touches the whole state at once and has its own rules -- the snapshot is
one REPEATABLE READ read-only transaction read through a server-side cursor page by page; a restore replaces
every row in one statement with versions that never go back (max(current, checkpoint) + 1); and the
checkpoints themselves are blobs in ``state_checkpoints``. ``PostgresWarmTier`` calls these functions on a
connection it acquired (bulk bounds; the fenced transaction where they write).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot_v2.state.models import CheckpointInfo, RestoreRows, Tier, WarmRestore

_TIERS = {tier.value: tier for tier in Tier}
_SNAPSHOT_SQL = """
SELECT key, category, tier, version, checksum, value, cold_ref, expires_at FROM state_records
WHERE bot_id = $1 AND (expires_at IS NULL OR expires_at > $2) AND category <> ALL($3::text[]) ORDER BY key
"""
# One statement: the upsert (EXCLUDED.version is the checkpoint's version + 1: the result is max(current,
# checkpoint) + 1) and the delete of every other row of the bot outside $11. Both see the statement's one
# snapshot and touch disjoint rows (the keys of $3, the others); the deleted keys come back with a NULL
# version. cold_ref ($9) and expires_at ($10) may be NULL for "all NULL": unnest pads them.
_RESTORE_SQL = """
WITH written AS (
    INSERT INTO state_records AS s
        (bot_id, key, category, tier, version, checksum, value, cold_ref, updated_at, expires_at)
    SELECT $1, u.key, u.category, u.tier, u.version + 1, u.checksum, u.value, u.cold_ref, $2, u.expires_at
    FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::bytea[], $9::text[],
                $10::timestamptz[])
        AS u(key, category, tier, version, checksum, value, cold_ref, expires_at)
    ON CONFLICT (bot_id, key) DO UPDATE SET
        category = EXCLUDED.category,
        tier = EXCLUDED.tier,
        version = greatest(s.version + 1, EXCLUDED.version),
        checksum = EXCLUDED.checksum,
        value = EXCLUDED.value,
        cold_ref = EXCLUDED.cold_ref,
        updated_at = EXCLUDED.updated_at,
        expires_at = EXCLUDED.expires_at
    RETURNING s.key, s.version, s.tier
), deleted AS (
    DELETE FROM state_records AS d WHERE d.bot_id = $1 AND d.category <> ALL($11::text[])
    AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) AS k(key) WHERE k.key = d.key)
    RETURNING d.key
)
SELECT key, version, tier FROM written UNION ALL SELECT key, NULL, NULL FROM deleted
"""
_PUT_CHECKPOINT_SQL = """
INSERT INTO state_checkpoints (bot_id, checkpoint_id, created_at, reason, key_count,
raw_bytes, compressed_bytes, sha256, duration_seconds, blob)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""
_LIST_CHECKPOINTS_SQL = """
SELECT checkpoint_id, created_at, reason, key_count,
raw_bytes, compressed_bytes, sha256, duration_seconds FROM state_checkpoints WHERE bot_id = $1
ORDER BY created_at DESC, checkpoint_id DESC
"""
_GET_CHECKPOINT_SQL = """
SELECT checkpoint_id, created_at, reason, key_count,
raw_bytes, compressed_bytes, sha256, duration_seconds, blob FROM state_checkpoints
WHERE bot_id = $1 AND checkpoint_id = $2
"""
_PRUNE_CHECKPOINTS_SQL = """
DELETE FROM state_checkpoints WHERE bot_id = $1 AND checkpoint_id NOT IN (
    SELECT checkpoint_id FROM state_checkpoints WHERE bot_id = $1
    ORDER BY created_at DESC, checkpoint_id DESC LIMIT $2
) RETURNING checkpoint_id
"""


def _info(rec: Any) -> CheckpointInfo:
    return CheckpointInfo(
        rec["checkpoint_id"],
        rec["created_at"],
        rec["reason"],
        rec["key_count"],
        rec["raw_bytes"],
        rec["compressed_bytes"],
        rec["sha256"],
        rec["duration_seconds"],
    )


async def snapshot_cursor(conn: Any, bot: str, now: datetime, exclude_categories: Sequence[str]) -> Any:
    """A server-side cursor over the live rows outside ``exclude_categories``, in key order (open it inside the
    caller's REPEATABLE READ transaction: every page then comes from one snapshot)."""
    return await conn.cursor(_SNAPSHOT_SQL, bot, now, list(exclude_categories))


async def replace_rows(
    conn: Any, bot: str, rows: Sequence[WarmRestore], keep_categories: Sequence[str], now: datetime
) -> tuple[dict[str, tuple[int, Tier]], list[str]]:
    """Make the bot's rows (outside ``keep_categories``) exactly ``rows``, in the caller's transaction (one
    statement, planned without nested loops): return key -> (version, tier) of the rows written and the keys
    deleted. ``RestoreRows`` are sent by column as they are."""
    keys, categories, tiers, versions, checksums, values, cold_refs, expires_at = RestoreRows.of(rows).columns
    # The delete is an anti-join of the bot's rows against the keys of $3. With statistics that know no row of
    # the bot (a new bot id, or rows written since the last ANALYZE) the planner made it a nested loop scanning
    # all N keys again for each of the bot's N rows: ~25 s of server CPU for 20,000 keys (command_timeout is 60
    # s). Nested loops are off for this transaction only: a hash or merge anti-join whatever the statistics.
    await conn.execute("SET LOCAL enable_nestloop = off")
    records = await conn.fetch(
        _RESTORE_SQL,
        bot,
        now,
        keys,
        categories,
        tiers,  # Tier members: a StrEnum is sent as its value
        versions,
        checksums,
        values,
        cold_refs if any(cold_refs) else None,  # all NULL: unnest pads a NULL array (less to encode)
        expires_at if any(expires_at) else None,
        list(keep_categories),
    )
    tiers_of = _TIERS
    written = {rec[0]: (rec[1], tiers_of[rec[2]]) for rec in records if rec[1] is not None}
    return written, [rec[0] for rec in records if rec[1] is None]


async def put_checkpoint(conn: Any, bot: str, info: CheckpointInfo, blob: bytes) -> None:
    """Store one checkpoint blob."""
    await conn.execute(
        _PUT_CHECKPOINT_SQL,
        bot,
        info.checkpoint_id,
        info.created_at,
        info.reason,
        info.key_count,
        info.raw_bytes,
        info.compressed_bytes,
        info.sha256,
        info.duration_seconds,
        blob,
    )


async def list_checkpoints(conn: Any, bot: str) -> list[CheckpointInfo]:
    """The bot's checkpoints, newest first."""
    return [_info(rec) for rec in await conn.fetch(_LIST_CHECKPOINTS_SQL, bot)]


async def get_checkpoint(conn: Any, bot: str, checkpoint_id: str) -> tuple[CheckpointInfo, bytes] | None:
    """One checkpoint and its blob (None: no such checkpoint)."""
    rec = await conn.fetchrow(_GET_CHECKPOINT_SQL, bot, checkpoint_id)
    return None if rec is None else (_info(rec), bytes(rec["blob"]))


async def prune_checkpoints(conn: Any, bot: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` checkpoints; return the ids deleted."""
    return [rec[0] for rec in await conn.fetch(_PRUNE_CHECKPOINTS_SQL, bot, keep)]
