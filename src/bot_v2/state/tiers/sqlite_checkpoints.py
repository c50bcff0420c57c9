"""State checkpoints on the SQLite WARM tier (not WAL checkpoints): the paged snapshot, the restore, the blobs.

Why a module of its own: a checkpoint touches the whole state at once and has its own rules -- the snapshot is
one WAL read transaction on a connection and thread of its own (neither the writer nor the WAL checkpointer
waits for it), read one page per trip to that thread so it holds the GIL only while it turns one page into
Python objects; a restore replaces every row in one write transaction with versions that never go back; and
the checkpoints themselves are blobs in ``state_checkpoints``. ``SqliteWarmTier`` runs these functions on
its threads (the restore and the blob writes inside its fenced write transaction).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot_v2.state.models import CheckpointInfo, RestoreRows, Tier, WarmRestore
from bot_v2.state.tiers.warm import SnapshotPage

_SNAPSHOT_SQL = """
SELECT key, category, tier, version, checksum, value, cold_ref, expires_at_us FROM state_records
WHERE bot_id = ? AND (expires_at_us IS NULL OR expires_at_us > ?) AND category NOT IN (SELECT value FROM
json_each(?)) ORDER BY key
"""
# a restore writes each row whole, with version max(current, checkpoint) + 1 computed from _CURRENT_SQL
_RESTORE_SQL = """
INSERT OR REPLACE INTO state_records
    (bot_id, key, category, tier, version, checksum, value, cold_ref, updated_at_us, expires_at_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_CURRENT_SQL = "SELECT key, version FROM state_records WHERE bot_id = ?"
_RESTORE_DELETE_SQL = """
DELETE FROM state_records WHERE bot_id = ? AND category NOT IN (SELECT value FROM json_each(?)) AND key
NOT IN (SELECT value FROM json_each(?)) RETURNING key
"""
_PUT_CHECKPOINT_SQL = """
INSERT INTO state_checkpoints (bot_id, checkpoint_id, created_at_us, reason, key_count,
raw_bytes, compressed_bytes, sha256, duration_seconds, blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_LIST_CHECKPOINTS_SQL = """
SELECT checkpoint_id, created_at_us, reason, key_count,
raw_bytes, compressed_bytes, sha256, duration_seconds FROM state_checkpoints WHERE bot_id = ?
ORDER BY created_at_us DESC, checkpoint_id DESC
"""
_GET_CHECKPOINT_SQL = """
SELECT checkpoint_id, created_at_us, reason, key_count,
raw_bytes, compressed_bytes, sha256, duration_seconds, blob FROM state_checkpoints
WHERE bot_id = ? AND checkpoint_id = ?
"""
_PRUNE_CHECKPOINTS_SQL = """
DELETE FROM state_checkpoints WHERE bot_id = ?1 AND checkpoint_id NOT IN (
    SELECT checkpoint_id FROM state_checkpoints WHERE bot_id = ?1
    ORDER BY created_at_us DESC, checkpoint_id DESC LIMIT ?2
) RETURNING checkpoint_id
"""


def _us(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1_000_000)


def _dt(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def _info(rec: tuple[Any, ...]) -> CheckpointInfo:
    created = _dt(rec[1])
    assert created is not None
    return CheckpointInfo(rec[0], created, rec[2], rec[3], rec[4], rec[5], rec[6], rec[7])


# --- the snapshot: begin, one page per call, end (all on the snapshot connection's thread) -----------------


def snapshot_begin(
    db: sqlite3.Connection, bot: str, now: datetime, exclude_categories: Sequence[str]
) -> sqlite3.Cursor:
    """Open the read transaction and the key-ordered query of live rows outside ``exclude_categories``."""
    params = (bot, _us(now), json.dumps(list(exclude_categories)))
    db.execute("BEGIN")  # the snapshot is taken at the first read; later commits stay invisible
    return db.execute(_SNAPSHOT_SQL, params)


def snapshot_page(cursor: sqlite3.Cursor, page_size: int) -> SnapshotPage | None:
    """The next page of the snapshot as columns (None: no rows left)."""
    rows = cursor.fetchmany(page_size)
    if not rows:
        return None
    keys, categories, tiers, versions, checksums, values, cold_refs, expires = zip(*rows, strict=True)
    if any(e is not None for e in expires):
        expires = tuple(map(_dt, expires))
    return SnapshotPage(keys, categories, tiers, versions, checksums, values, cold_refs, expires)


def snapshot_end(db: sqlite3.Connection) -> None:
    """Release the read snapshot (read-only: nothing to commit)."""
    if db.in_transaction:
        db.execute("COMMIT")


# --- the restore and the stored checkpoints (inside the tier's write transaction where they write) -------


def replace_rows(
    db: sqlite3.Connection,
    bot: str,
    rows: Sequence[WarmRestore],
    keep_categories: Sequence[str],
    now: datetime,
) -> tuple[dict[str, tuple[int, Tier]], list[str]]:
    """Make the bot's rows (outside ``keep_categories``) exactly ``rows``: return key -> (version, tier) of the
    rows written and the keys deleted. One executemany of whole rows (INSERT OR REPLACE: SQLite's upsert cost
    1.3x as much, and a statement per row from Python 2x), the versions computed from the current ones read
    in the same write transaction (expired rows count, as for every write)."""
    keys, categories, tiers, versions, checksums, values, cold_refs, expires_at = RestoreRows.of(rows).columns
    now_us = _us(now)
    keep = json.dumps(list(keep_categories))
    current = dict(db.execute(_CURRENT_SQL, (bot,)))
    deleted = [rec[0] for rec in db.execute(_RESTORE_DELETE_SQL, (bot, keep, json.dumps(keys)))]
    find = current.get
    params = [
        (
            bot,
            key,
            category,
            tier.value,
            max(find(key, 0), version) + 1,
            checksum,
            value,
            ref,
            now_us,
            _us(ex),
        )
        for key, category, tier, version, checksum, value, ref, ex in zip(
            keys, categories, tiers, versions, checksums, values, cold_refs, expires_at, strict=True
        )
    ]
    db.executemany(_RESTORE_SQL, params)
    return {p[1]: (p[4], tier) for p, tier in zip(params, tiers, strict=True)}, deleted


def put_checkpoint(db: sqlite3.Connection, bot: str, info: CheckpointInfo, blob: bytes) -> int:
    """Store one checkpoint blob; return the rows inserted."""
    params = (
        bot,
        info.checkpoint_id,
        _us(info.created_at),
        info.reason,
        info.key_count,
        info.raw_bytes,
        info.compressed_bytes,
        info.sha256,
        info.duration_seconds,
        blob,
    )
    return db.execute(_PUT_CHECKPOINT_SQL, params).rowcount


def list_checkpoints(db: sqlite3.Connection, bot: str) -> list[CheckpointInfo]:
    """The bot's checkpoints, newest first."""
    return [_info(rec) for rec in db.execute(_LIST_CHECKPOINTS_SQL, (bot,)).fetchall()]


def get_checkpoint(
    db: sqlite3.Connection, bot: str, checkpoint_id: str
) -> tuple[CheckpointInfo, bytes] | None:
    """One checkpoint and its blob (None: no such checkpoint)."""
    rec = db.execute(_GET_CHECKPOINT_SQL, (bot, checkpoint_id)).fetchone()
    return None if rec is None else (_info(rec), bytes(rec[8]))


def prune_checkpoints(db: sqlite3.Connection, bot: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` checkpoints; return the ids deleted."""
    return [rec[0] for rec in db.execute(_PRUNE_CHECKPOINTS_SQL, (bot, keep)).fetchall()]
