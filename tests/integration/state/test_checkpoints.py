"""Checkpoints over both combos (memory/SQLite/directory and Redis/PostgreSQL/S3): create, restore, retention,
corruption, consistency under a concurrent writer, atomicity for readers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from bot_v2.errors import StateIntegrityError
from bot_v2.state import StateCategory, StateManager, StateWrite, codec
from bot_v2.state.checkpoint import decode_checkpoint, encode_checkpoint
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import RestoreRows, Tier, WarmRestore, WarmWrite
from bot_v2.state.settings import StateSettings, WarmBackend
from bot_v2.state.tiers.factory import build_tiers
from tests.helpers import eventually_async

ORDERS, FILLS, ARCHIVE = StateCategory.ORDERS, StateCategory.FILLS, StateCategory.ARCHIVE
HOUR = timedelta(hours=1)


@pytest.fixture
async def csm(state_settings: StateSettings) -> AsyncIterator[StateManager]:
    async with await StateManager.create(state_settings) as manager:
        yield manager
        await manager.checkpoints.prune(0)  # the shared database / bucket keep no checkpoints of ours


async def _warm_sql(settings: StateSettings, sqlite_sql: str, pg_sql: str, *args: Any) -> None:
    if settings.warm_backend is WarmBackend.POSTGRES:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(pg_sql, *args)
        finally:
            await conn.close()
    else:
        db = sqlite3.connect(settings.sqlite_path)
        try:
            db.execute(sqlite_sql, args)
            db.commit()
        finally:
            db.close()


async def _rewrite_blob(
    settings: StateSettings, checkpoint_id: str, change: Callable[[bytes], bytes]
) -> None:
    _, warm, _ = build_tiers(settings, KeySpace(settings.bot_id))
    await warm.connect()
    try:
        found = await warm.get_checkpoint(checkpoint_id)
        assert found is not None
        blob = change(found[1])
    finally:
        await warm.close()
    await _warm_sql(
        settings,
        "UPDATE state_checkpoints SET blob = ? WHERE bot_id = ? AND checkpoint_id = ?",
        "UPDATE state_checkpoints SET blob = $1 WHERE bot_id = $2 AND checkpoint_id = $3",
        blob,
        settings.bot_id,
        checkpoint_id,
    )


async def _snapshot(sm: StateManager) -> dict[str, Any]:
    keys = await sm.get_keys_by_pattern("*")
    return await sm.batch_get_state(keys)


async def test_create_mutate_restore_gives_the_earlier_state(csm: StateManager) -> None:
    sm = csm
    await sm.batch_write(
        [StateWrite(f"orders:{i}", {"qty": i, "v": 1}, ORDERS) for i in range(20)]
        + [StateWrite(f"fills:{i}", {"fill": i}, FILLS) for i in range(5)]
        + [StateWrite("archive:0", {"old": True}, ARCHIVE)]
        + [StateWrite("marks:BTC", "100.5", StateCategory.MARKS, ttl_seconds=600)]
    )
    await sm.demote_to_cold(["orders:19"])
    await sm.set_state("orders:0", {"qty": 0, "v": 2}, ORDERS)  # version 2
    before = await _snapshot(sm)
    info = await sm.checkpoints.create_checkpoint("test")
    assert info.key_count == len(before) == 27
    assert info.compressed_bytes < info.raw_bytes

    await sm.batch_set_state({f"orders:{i}": {"qty": -1} for i in range(10)}, ORDERS)
    await sm.batch_delete_state(["fills:0", "archive:0", "orders:19", "marks:BTC"])
    await sm.set_state("orders:new", 1, ORDERS)
    await sm.set_state("intents:new", 1, StateCategory.INTENTS)
    await sm.set_state("checkpoints:note", {"kept": True}, StateCategory.CHECKPOINTS)
    versions_before_restore = {
        k: v for k, (v, _) in (await sm._warm.get_versions(["orders:0", "orders:5"])).items()
    }

    report = await sm.checkpoints.restore_checkpoint("latest")
    assert report.checkpoint_id == info.checkpoint_id
    assert (report.keys_in_checkpoint, report.keys_restored, report.keys_expired) == (27, 27, 0)
    assert report.keys_deleted == 2  # orders:new, intents:new (checkpoints:* is not checkpoint state)
    after = await _snapshot(sm)
    after.pop("checkpoints:note")
    assert after == before
    assert await sm.get_state("checkpoints:note") == {"kept": True}
    # versions only grow: max(current, checkpoint) + 1
    versions = {k: v for k, (v, _) in (await sm._warm.get_versions(["orders:0", "orders:5"])).items()}
    assert versions["orders:0"] == versions_before_restore["orders:0"] + 1 == 4
    assert versions["orders:5"] == versions_before_restore["orders:5"] + 1 == 3
    assert (await sm._warm.get_versions(["archive:0"]))["archive:0"][0] == 2  # deleted at 1: 1 + 1
    assert (await sm.repair_coherence()).ok  # HOT agrees with WARM, key by key
    # reading orders:19 promoted it back before the checkpoint; archive:0 stays COLD (a new segment)
    assert len(await sm.get_keys_by_pattern("orders:*", hot_only=True)) == 20
    stats = await sm.get_storage_stats()
    assert stats.warm_records_by_tier.get("cold") == 2  # archive:0 and checkpoints:note


async def test_list_retention_and_metadata(state_settings: StateSettings) -> None:
    settings = replace(state_settings, checkpoint_retention=2)
    async with await StateManager.create(settings) as sm:
        try:
            await sm.batch_set_state({f"orders:{i}": i for i in range(10)}, ORDERS)
            made = [await sm.checkpoints.create_checkpoint(f"n{n}") for n in range(4)]
            listed = await sm.checkpoints.list_checkpoints()
            assert [i.checkpoint_id for i in listed] == [made[3].checkpoint_id, made[2].checkpoint_id]
            assert listed[0] == made[3]
            assert listed[0].reason == "n3" and listed[0].key_count == 10 and len(listed[0].sha256) == 64
            _, _, cold = build_tiers(settings, KeySpace(settings.bot_id))
            await cold.connect()
            try:
                names = await cold.list_checkpoints()
            finally:
                await cold.close()
            assert names == [f"{made[2].checkpoint_id}.ckpt", f"{made[3].checkpoint_id}.ckpt"]
            with pytest.raises(Exception, match="not found"):
                await sm.checkpoints.restore_checkpoint(made[0].checkpoint_id)
        finally:
            await sm.checkpoints.prune(0)


async def test_corrupt_blob_is_rejected_and_nothing_is_written(
    csm: StateManager, state_settings: StateSettings
) -> None:
    sm = csm
    await sm.batch_set_state({f"orders:{i}": i for i in range(30)}, ORDERS)
    info = await sm.checkpoints.create_checkpoint("test")
    await sm.batch_set_state({f"orders:{i}": -i for i in range(30)}, ORDERS)
    before = await _snapshot(sm)
    versions = await sm._warm.get_versions(list(before))

    def flip(blob: bytes) -> bytes:
        out = bytearray(blob)
        out[len(out) // 2] ^= 0x01
        return bytes(out)

    await _rewrite_blob(state_settings, info.checkpoint_id, flip)
    for verify_only in (True, False):
        with pytest.raises(StateIntegrityError, match=info.checkpoint_id):
            await sm.checkpoints.restore_checkpoint(info.checkpoint_id, verify_only=verify_only)
    assert await _snapshot(sm) == before
    assert await sm._warm.get_versions(list(before)) == versions


async def test_record_failing_its_checksum_is_rejected(
    csm: StateManager, state_settings: StateSettings
) -> None:
    sm = csm
    await sm.batch_set_state({f"orders:{i}": i for i in range(10)}, ORDERS)
    info = await sm.checkpoints.create_checkpoint("test")
    await sm.set_state("orders:3", "changed", ORDERS)
    decoded = decode_checkpoint(
        info.checkpoint_id, sm.bot_id, await _blob(state_settings, info.checkpoint_id)
    )
    records = [r._replace(value=b"42") if r.key == "orders:3" else r for r in decoded.records]
    blob, _, digest = encode_checkpoint(sm.bot_id, info.checkpoint_id, decoded.created_at, records)
    await _rewrite_blob(state_settings, info.checkpoint_id, lambda _: blob)
    await _warm_sql(
        state_settings,
        "UPDATE state_checkpoints SET sha256 = ? WHERE checkpoint_id = ?",
        "UPDATE state_checkpoints SET sha256 = $1 WHERE checkpoint_id = $2",
        digest,
        info.checkpoint_id,
    )
    with pytest.raises(StateIntegrityError, match=rf"{info.checkpoint_id}.*orders:3"):
        await sm.checkpoints.restore_checkpoint("latest")
    assert await sm.get_state("orders:3") == "changed"


async def test_a_corrupt_record_is_never_checkpointed(
    csm: StateManager, state_settings: StateSettings
) -> None:
    sm = csm
    await sm.batch_set_state({f"orders:{i}": {"n": i} for i in range(600)}, ORDERS)
    await _warm_sql(  # past the first slices of the checks; the checksum stays the old one
        state_settings,
        "UPDATE state_records SET value = ? WHERE bot_id = ? AND key = ?",
        "UPDATE state_records SET value = $1 WHERE bot_id = $2 AND key = $3",
        b'{"n":0}',
        sm.bot_id,
        "orders:517",
    )
    with pytest.raises(StateIntegrityError, match="orders:517"):
        await sm.checkpoints.create_checkpoint("test")
    assert await sm.checkpoints.list_checkpoints() == []


async def _blob(settings: StateSettings, checkpoint_id: str) -> bytes:
    _, warm, _ = build_tiers(settings, KeySpace(settings.bot_id))
    await warm.connect()
    try:
        found = await warm.get_checkpoint(checkpoint_id)
    finally:
        await warm.close()
    assert found is not None
    return found[1]


async def test_restore_from_cold_when_warm_lost_the_checkpoint(
    csm: StateManager, state_settings: StateSettings
) -> None:
    sm = csm
    await sm.batch_set_state({f"orders:{i}": i for i in range(10)}, ORDERS)
    info = await sm.checkpoints.create_checkpoint("test")
    await sm.set_state("orders:1", "later", ORDERS)
    await _warm_sql(
        state_settings,
        "DELETE FROM state_checkpoints WHERE bot_id = ?",
        "DELETE FROM state_checkpoints WHERE bot_id = $1",
        sm.bot_id,
    )
    report = await sm.checkpoints.restore_checkpoint("latest")
    assert (report.checkpoint_id, report.source) == (info.checkpoint_id, "cold")
    assert await sm.get_state("orders:1") == 1


@pytest.mark.parametrize("background", [False, True], ids=["awaited", "background"])
async def test_concurrent_writer_never_produces_a_torn_snapshot(csm: StateManager, background: bool) -> None:
    """Each writer batch is one transaction moving every key to the same new value: a consistent snapshot
    holds one value for all keys. The snapshot reads 2500 rows in pages (100-row pages in the background
    mode) while the writer commits."""
    sm = csm
    keys = [f"orders:{i:05d}" for i in range(2500)]
    await sm.batch_set_state(dict.fromkeys(keys, 0), ORDERS)
    stop = asyncio.Event()
    commits = 0

    async def writer() -> None:
        nonlocal commits
        n = 0
        while not stop.is_set():
            n += 1
            await sm.batch_set_state(dict.fromkeys(keys, n), ORDERS)
            commits += 1

    task = asyncio.create_task(writer())
    interleaved = 0
    try:
        infos = []
        # a checkpoint of 2500 rows can be quicker than one writer batch: take them until some overlapped a
        # commit; each one's values are checked as it is taken (older ones are pruned)
        for _ in range(60):
            before = commits
            info = await sm.checkpoints.create_checkpoint("race", background=background)
            interleaved += commits > before
            infos.append(info)
            found = await sm._warm.get_checkpoint(info.checkpoint_id)
            assert found is not None
            values = set(decode_checkpoint(info.checkpoint_id, sm.bot_id, found[1]).columns.values)
            assert len(values) == 1, f"torn snapshot: {sorted(values)[:5]}..."
            if len(infos) >= 3 and interleaved >= 2:
                break
            await asyncio.sleep(0)
    finally:
        stop.set()
        await task
    assert interleaved >= 1  # the writer did commit while checkpoints were being taken
    for info in infos[-3:]:
        report = await sm.checkpoints.restore_checkpoint(info.checkpoint_id)
        assert report.keys_in_checkpoint == 2500
        values = set((await sm.batch_get_state(keys)).values())
        assert len(values) == 1, f"torn snapshot: {sorted(values)[:5]}..."


async def test_restore_is_atomic_for_readers(csm: StateManager) -> None:
    sm = csm
    orders = [f"orders:{i:04d}" for i in range(400)]
    fills = [f"fills:{i:04d}" for i in range(400)]
    await sm.batch_write(
        [StateWrite(k, "old", ORDERS) for k in orders] + [StateWrite(k, "old", FILLS) for k in fills]
    )
    await sm.checkpoints.create_checkpoint("test")
    await sm.batch_write(
        [StateWrite(k, "new", ORDERS) for k in orders] + [StateWrite(k, "new", FILLS) for k in fills]
    )
    done = asyncio.Event()
    polls = 0

    async def reader(keys: list[str]) -> None:
        nonlocal polls
        while not done.is_set():
            got = await sm.batch_get_state(keys)
            assert set(got) == set(keys), f"missing during restore: {sorted(set(keys) - set(got))[:3]}"
            assert len(set(got.values())) == 1, "half-restored state visible"
            polls += 1
            # not a bare sleep(0): a poll served from the in-memory HOT never waits on I/O, and a loop that
            # never idles starves the SQLite worker thread of the GIL (each statement waits a switch interval)
            await asyncio.sleep(0.001)

    async def _more_polls(seen: int) -> bool:
        return polls > seen + 1

    readers = [asyncio.create_task(reader(orders)), asyncio.create_task(reader(fills))]
    try:
        await asyncio.sleep(0)
        await sm.checkpoints.restore_checkpoint("latest")
        after_restore = polls
        await eventually_async(lambda: _more_polls(after_restore))
    finally:
        done.set()
        await asyncio.gather(*readers)
    assert after_restore >= 1 and polls > after_restore
    assert set((await sm.batch_get_state(orders + fills)).values()) == {"old"}


async def test_restore_leaves_out_records_expired_since_the_checkpoint(csm: StateManager) -> None:
    sm = csm
    await sm.batch_write(
        [StateWrite(f"orders:{i}", {"qty": i}, ORDERS) for i in range(5)]
        + [StateWrite("marks:short", "1.5", StateCategory.MARKS, ttl_seconds=0.3)]
        + [StateWrite("marks:long", "2.5", StateCategory.MARKS, ttl_seconds=600)]
    )
    await sm.checkpoints.create_checkpoint("test")
    await sm.batch_set_state({f"orders:{i}": {"qty": -1} for i in range(5)}, ORDERS)
    await asyncio.sleep(0.5)  # marks:short expires
    report = await sm.checkpoints.restore_checkpoint("latest")
    assert (report.keys_in_checkpoint, report.keys_restored, report.keys_expired) == (7, 6, 1)
    assert await sm.batch_get_state([f"orders:{i}" for i in range(5)]) == {
        f"orders:{i}": {"qty": i} for i in range(5)
    }
    assert await sm.get_state("marks:short") is None
    assert await sm.get_state("marks:long") == "2.5"
    assert (await sm.repair_coherence()).ok


async def test_replace_rows_by_column_or_by_row(warm_tier: Any) -> None:
    """``RestoreRows`` (by column, as a restore sends them) and a list of ``WarmRestore`` write alike."""
    now = datetime.now(UTC)
    await warm_tier.upsert_many([_write("orders:1"), _write("orders:gone")], now)
    await warm_tier.upsert_many([_write("orders:1")], now)  # version 2
    rows = [
        WarmRestore("orders:1", "orders", Tier.HOT, 1, codec.checksum(b"a"), b"a", None, None),
        WarmRestore("orders:2", "orders", Tier.WARM, 5, codec.checksum(b"b"), b"b", None, now + HOUR),
    ]
    stored, deleted = await warm_tier.replace_rows(RestoreRows(*map(list, zip(*rows, strict=True))), [], now)
    assert stored == {"orders:1": (3, Tier.HOT), "orders:2": (6, Tier.WARM)} and deleted == ["orders:gone"]
    stored, deleted = await warm_tier.replace_rows(rows[:1], [], now)
    assert stored == {"orders:1": (4, Tier.HOT)} and deleted == ["orders:2"]
    got = await warm_tier.get_many(["orders:1", "orders:2", "orders:gone"], now)
    assert list(got) == ["orders:1"] and got["orders:1"].value == b"a"


def _write(key: str) -> Any:
    return WarmWrite(key, "orders", Tier.HOT, codec.checksum(b"x"), b"x", None, None)


async def test_a_restore_never_scans_the_checkpoints_keys_once_per_row(
    postgres_server: Any, state_bot_id: str
) -> None:
    """PostgreSQL: the restore deletes every row of the bot that is not in the checkpoint (an anti-join of the
    bot's rows against the checkpoint's keys). With statistics that know no row of the bot -- a new bot id, or
    rows written since the last ANALYZE, as in the suite's shared database -- the planner made it a nested loop
    that scans all N keys again for each of the bot's N rows: a 20,000-key restore cost ~25 s of server CPU
    (test_big_hot_writes took 40-50 s in the full suite, 3-6 s alone). The plan, as auto_explain gives it,
    must have no nested loop whatever the statistics."""
    from bot_v2.state.tiers import pg_checkpoints
    from bot_v2.state.tiers.postgres_warm import PostgresWarmTier

    other = f"{state_bot_id}-other"
    now = datetime.now(UTC)
    tiers = [PostgresWarmTier(postgres_server.url, KeySpace(bot)) for bot in (other, state_bot_id)]
    conn = await asyncpg.connect(postgres_server.url)
    plans: list[str] = []
    conn.add_log_listener(lambda _conn, message: plans.append(str(message)))
    try:
        for tier in tiers:
            await tier.connect()  # migrated
        await tiers[0].upsert_many([_write(f"orders:{i}") for i in range(50)], now)
        await conn.execute("ANALYZE state_records")  # statistics in which the bot has no row
        await tiers[1].upsert_many([_write(f"orders:{i:04d}") for i in range(1000)], now)
        restore = [
            WarmRestore(f"orders:{i:04d}", "orders", Tier.HOT, 1, codec.checksum(b"x"), b"x", None, None)
            for i in range(0, 1000, 2)
        ]
        await conn.execute("LOAD 'auto_explain'")
        await conn.execute("SET auto_explain.log_min_duration = 0")
        await conn.execute("SET auto_explain.log_level = notice")
        async with conn.transaction():
            stored, deleted = await pg_checkpoints.replace_rows(conn, state_bot_id, restore, [], now)
        assert (len(stored), len(deleted)) == (500, 500)
        (plan,) = [p for p in plans if "Delete on state_records" in p]
        assert "Anti Join" in plan and "Nested Loop" not in plan, plan
    finally:
        await conn.execute("DELETE FROM state_records WHERE bot_id = ANY($1::text[])", [other, state_bot_id])
        await conn.close()
        for tier in tiers:
            await tier.close()
