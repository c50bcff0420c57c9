"""SQLite WARM: WAL checkpoints stay off the commit path, yet the WAL stays bounded and close() leaves none."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from bot_v2.state import codec
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import Tier, WarmWrite
from bot_v2.state.tiers.sqlite_warm import SqliteWarmTier
from tests.helpers import eventually_async

PAGE = 4096 + 24  # one WAL frame


def _rows(n: int, round_: int) -> list[WarmWrite]:
    out = []
    for i in range(n):
        value = codec.encode_value({"i": i, "round": round_, "pad": "x" * 300})
        out.append(WarmWrite(f"orders:{i:05d}", "orders", Tier.HOT, codec.checksum(value), value, None, None))
    return out


def _wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_background_checkpoint_keeps_the_wal_bounded(tmp_path: Path) -> None:
    path = tmp_path / "warm.sqlite3"
    tier = SqliteWarmTier(path, KeySpace("b1"), wal_checkpoint_pages=64, wal_hard_limit_pages=256)
    await tier.connect()
    try:
        sizes = []
        for round_ in range(200):  # ~7 pages per commit: ~1400 pages written in all, back to back
            await tier.upsert_many(_rows(40, round_), datetime.now(UTC))
            sizes.append(_wal_bytes(path))
        await tier.checkpoint_wal()
        assert tier.wal_checkpoints >= 3
        # without checkpoints the WAL would hold every frame written (~1400 pages); the hard limit bounds it
        # even when back-to-back writes never leave the background checkpoint a gap to start the WAL over.
        # The bound is loose on purpose: a commit racing the checkpoint thread may land a few frames past it.
        assert max(sizes) < 2 * 256 * PAGE
        got = await tier.get_many(["orders:00007"], datetime.now(UTC))
        assert codec.decode_value(got["orders:00007"].value or b"")["round"] == 199
    finally:
        await tier.close()


async def test_hard_limit_checkpoints_inside_the_write(tmp_path: Path) -> None:
    path = tmp_path / "warm.sqlite3"
    # the hard limit is reached before the background checkpoint is even started
    tier = SqliteWarmTier(path, KeySpace("b1"), wal_checkpoint_pages=64, wal_hard_limit_pages=64)
    await tier.connect()
    try:
        sizes = []
        for round_ in range(60):
            await tier.upsert_many(_rows(40, round_), datetime.now(UTC))
            sizes.append(tier.wal_pages())
        assert tier.wal_blocking_checkpoints >= 3
        assert max(sizes) < 64  # TRUNCATE inside the write that crossed the limit
    finally:
        await tier.close()


async def test_close_leaves_no_wal_and_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "warm.sqlite3"
    tier = SqliteWarmTier(path, KeySpace("b1"), wal_checkpoint_pages=16, wal_hard_limit_pages=10**6)
    await tier.connect()
    for round_ in range(30):
        await tier.upsert_many(_rows(40, round_), datetime.now(UTC))  # checkpoints are likely running
    await tier.close()
    assert _wal_bytes(path) == 0  # TRUNCATE at close (the last connection also removes the file)
    assert not os.path.exists(str(path) + "-wal") or _wal_bytes(path) == 0

    reopened = SqliteWarmTier(path, KeySpace("b1"))
    await reopened.connect()
    try:
        rows = await reopened.get_many([f"orders:{i:05d}" for i in range(40)], datetime.now(UTC))
        assert len(rows) == 40
        assert all(row.version == 30 for row in rows.values())
        assert codec.decode_value(rows["orders:00039"].value or b"")["round"] == 29
    finally:
        await reopened.close()


async def test_checkpoint_never_runs_inside_a_commit(tmp_path: Path) -> None:
    """SQLite's auto-checkpoint is off: the WAL grows past 1000 pages until our checkpointer runs."""
    path = tmp_path / "warm.sqlite3"
    tier = SqliteWarmTier(path, KeySpace("b1"), wal_checkpoint_pages=10**9, wal_hard_limit_pages=10**9)
    await tier.connect()
    try:
        for round_ in range(200):
            await tier.upsert_many(_rows(40, round_), datetime.now(UTC))
        assert tier.wal_pages() > 1000  # the default auto-checkpoint would have reset it
        assert tier.wal_checkpoints == 0
    finally:
        await tier.close()
    assert _wal_bytes(path) == 0


async def test_background_checkpoint_completes(tmp_path: Path) -> None:
    path = tmp_path / "warm.sqlite3"
    tier = SqliteWarmTier(path, KeySpace("b1"), wal_checkpoint_pages=8, wal_hard_limit_pages=10**6)
    await tier.connect()
    try:
        await tier.upsert_many(_rows(80, 0), datetime.now(UTC))

        async def checkpointed() -> bool:
            await tier.checkpoint_wal()
            return tier.wal_checkpoints >= 1

        await eventually_async(checkpointed, timeout=5)
        await tier.upsert_many(_rows(1, 1), datetime.now(UTC))  # starts the WAL over: truncated
        assert tier.wal_pages() < 80
    finally:
        await tier.close()
