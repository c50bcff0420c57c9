"""DESIGN.md state rules, each proven against the real services (and the embedded combo where it applies)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from bot_v2.errors import StateIntegrityError, StateUnavailableError
from bot_v2.state import HotState, StateCategory, StateManager, StateWrite
from bot_v2.state.migrations import latest_version
from bot_v2.state.migrations.postgres import MIGRATIONS as PG_MIGRATIONS
from bot_v2.state.settings import StateSettings, WarmBackend
from tests.helpers import eventually_async
from tests.integration.state.conftest import break_journal, break_spool, spied_tiers
from tests.unit.state.fakes import down

ORDERS = StateCategory.ORDERS


async def _commandstats(client: aioredis.Redis) -> dict[str, int]:
    info = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in info.items()}


@pytest.fixture
async def redis_client(real_state_settings: StateSettings) -> Any:
    client = aioredis.Redis.from_url(real_state_settings.redis_url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def pg(real_state_settings: StateSettings) -> Any:
    conn = await asyncpg.connect(real_state_settings.database_url)
    yield conn
    await conn.close()


async def test_batch_is_one_pg_transaction_and_one_redis_multi(
    real_state_settings: StateSettings, redis_client: aioredis.Redis, pg: Any
) -> None:
    async with await StateManager.create(real_state_settings) as sm:
        writes = [StateWrite(f"orders:{i}", i, ORDERS) for i in range(200)]
        writes += [StateWrite(f"marks:{i}", i, StateCategory.MARKS, ttl_seconds=60) for i in range(3)]
        writes += [StateWrite(f"fills:{i}", i, StateCategory.FILLS) for i in range(50)]
        before = await _commandstats(redis_client)
        await sm.batch_write(writes)
        after = await _commandstats(redis_client)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # keys this writer never wrote: one script reads their versions (record headers only), then one
        # MULTI/EXEC writes the batch (EXEC is refused if another writer changed HOT in between)
        assert delta.get("eval") == 1 and delta.get("multi") == delta.get("exec") == 1
        assert delta.get("evalsha", 0) == 0 and delta.get("mset") == 1
        assert delta.get("keys", 0) == 0
        xmins = await pg.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM state_records WHERE bot_id = $1", sm.bot_id
        )
        assert xmins == 1  # every row written by the same transaction
        assert await redis_client.pttl(f"state:{sm.bot_id}:orders:1") == -1  # ttl None: no expiry
        assert 0 < await redis_client.pttl(f"state:{sm.bot_id}:marks:1") <= 60_000
        assert await redis_client.exists(f"state:{sm.bot_id}:fills:1") == 0  # WARM-only kinds not cached
        raw = await pg.fetchval(
            "SELECT value FROM state_records WHERE bot_id = $1 AND key = 'orders:7'", sm.bot_id
        )
        assert raw == b"7"  # exact canonical bytes in bytea


async def test_hot_pattern_listing_uses_scan_not_keys(
    real_state_settings: StateSettings, redis_client: aioredis.Redis
) -> None:
    async with await StateManager.create(real_state_settings) as sm:
        await sm.batch_set_state({f"orders:{i}": i for i in range(30)}, ORDERS)
        before = await _commandstats(redis_client)
        assert len(await sm.get_keys_by_pattern("orders:*", hot_only=True)) == 30
        assert (await sm.verify_coherence(page_size=7)).checked == 30
        after = await _commandstats(redis_client)
        assert after.get("scan", 0) > before.get("scan", 0)
        assert after.get("keys", 0) == before.get("keys", 0)


async def test_cache_is_written_only_after_the_durable_commit(state_settings: StateSettings) -> None:
    hot, warm, cold = spied_tiers(state_settings)
    seen_in_hot_during_commit: list[dict[str, Any]] = []

    async def look_at_hot(rows: Any, now: Any) -> None:
        seen_in_hot_during_commit.append(await hot.inner.get_many([r.key for r in rows]))

    warm.before["upsert_many"] = look_at_hot
    shared_log: list[str] = []
    hot.calls = warm.calls = shared_log
    async with await StateManager.create(state_settings, tiers=(hot, warm, cold)) as sm:
        await sm.batch_set_state({"orders:1": 1, "orders:2": 2}, ORDERS)
        assert seen_in_hot_during_commit == [{}]
        assert shared_log.index("apply") > shared_log.index("upsert_many")


async def test_failed_commit_caches_nothing_and_earlier_batches_stay(state_settings: StateSettings) -> None:
    """WARM down AND its outage journal unwritable (a WARM write is journaled when only WARM is down:
    test_warm_journal)."""
    hot, warm, cold = spied_tiers(state_settings)
    async with await StateManager.create(state_settings, tiers=(hot, warm, cold)) as sm:
        await sm.batch_set_state({"orders:a": 1}, ORDERS)
        warm.fail["upsert_many"] = down("warm")
        break_journal(state_settings)
        with pytest.raises(StateUnavailableError):
            await sm.batch_set_state({"orders:a": 2, "orders:b": 2}, ORDERS)
        (state_settings.journal_dir / state_settings.bot_id).unlink()  # the disk is back...
        del warm.fail["upsert_many"]  # ...and WARM: the probe timer ends the outage

        async def warm_up() -> bool:
            return not sm.health().degraded_warm

        await eventually_async(warm_up, timeout=10, interval=0.02)
        assert set(await hot.inner.get_many(["orders:a", "orders:b"])) == {"orders:a"}
        assert await sm.batch_get_state(["orders:a", "orders:b"]) == {"orders:a": 1}
        assert (await sm.verify_coherence()).ok


async def test_failed_cache_update_after_commit_serves_warm(state_settings: StateSettings) -> None:
    hot, warm, cold = spied_tiers(state_settings)
    async with await StateManager.create(state_settings, tiers=(hot, warm, cold)) as sm:
        await sm.set_state("orders:a", 1, ORDERS)
        hot.fail["apply"] = down("hot")
        assert await sm.set_state("orders:a", 2, ORDERS) == 2  # durable: the write succeeded
        assert (await hot.inner.get_many(["orders:a"]))["orders:a"].version == 1  # HOT now stale...
        assert await sm.get_state("orders:a") == 2  # ...and the stale copy is never served
        health = sm.health()
        assert health.degraded_hot and health.dirty_keys == 1
        with pytest.raises(StateUnavailableError, match="degraded"):
            await sm.verify_coherence()  # no cache to verify while degraded
        del hot.fail["apply"]
        assert await sm.recover_hot()
        assert (await sm.verify_coherence()).ok
        assert sm.health().dirty_keys == 0
        await sm.set_state("orders:a", 3, ORDERS)
        assert (await sm.verify_coherence()).ok


async def test_failed_cold_write_in_mixed_batch_writes_nothing(state_settings: StateSettings) -> None:
    """COLD down AND its spool unwritable (a COLD write spools when only COLD is down: test_cold_failover)."""
    hot, warm, cold = spied_tiers(state_settings)
    cold.fail["put_segment"] = down("cold")
    async with await StateManager.create(state_settings, tiers=(hot, warm, cold)) as sm:
        break_spool(state_settings)
        with pytest.raises(StateUnavailableError):
            await sm.batch_write(
                [StateWrite("orders:1", 1, ORDERS), StateWrite("archive:1", 1, StateCategory.ARCHIVE)]
            )
        assert await sm.get_keys_by_pattern("*") == []
        assert await hot.inner.count() == 0


async def test_demotion_writes_cold_before_dropping_hotter_copies(state_settings: StateSettings) -> None:
    hot, warm, cold = spied_tiers(state_settings)
    still_there: list[Any] = []

    async def check_hotter_tiers(name: str, data: bytes) -> None:
        still_there.append(set(await hot.inner.get_many(["orders:1"])))

    cold.before["put_segment"] = check_hotter_tiers
    async with await StateManager.create(state_settings, tiers=(hot, warm, cold)) as sm:
        await sm.set_state("orders:1", {"x": 1}, ORDERS)
        assert await sm.demote_to_cold(["orders:1"]) == 1
        assert still_there == [{"orders:1"}]
        cold.fail["put_segment"] = down("cold")
        break_spool(state_settings)  # COLD down and no spool either
        await sm.set_state("orders:2", 2, ORDERS)
        with pytest.raises(StateUnavailableError):
            await sm.demote_to_cold(["orders:2"])
        assert (await sm.get_storage_stats()).warm_records_by_tier == {"cold": 1, "hot": 1}
        assert await sm.get_state("orders:2") == 2


async def test_read_miss_falls_through_and_promotes(
    real_state_settings: StateSettings, redis_client: aioredis.Redis
) -> None:
    async with await StateManager.create(real_state_settings) as sm:
        await sm.set_state("orders:1", {"v": 1}, ORDERS, ttl_seconds=120)
        name = f"state:{sm.bot_id}:orders:1"
        await redis_client.delete(name)  # as if Redis lost it
        assert await sm.get_state("orders:1") == {"v": 1}
        assert await redis_client.exists(name) == 1
        assert 0 < await redis_client.pttl(name) <= 120_000  # promoted with the remaining TTL
        assert (await sm.verify_coherence()).ok


async def test_corrupt_hot_record_is_an_error_naming_the_key(
    real_state_settings: StateSettings, redis_client: aioredis.Redis
) -> None:
    async with await StateManager.create(real_state_settings) as sm:
        await sm.set_state("orders:1", {"qty": "1"}, ORDERS)
        name = f"state:{sm.bot_id}:orders:1"
        raw = await redis_client.get(name)
        await redis_client.set(name, raw.replace(b'"1"', b'"9"'))
        with pytest.raises(StateIntegrityError, match="'orders:1'"):
            await sm.get_state("orders:1")
        with pytest.raises(StateIntegrityError, match="'orders:1'"):
            await sm.batch_get_state(["orders:1"])
        report = await sm.verify_coherence()
        assert [(m.key, m.kind) for m in report.mismatches] == [("orders:1", "corrupt_hot")]


async def test_corrupt_warm_record_is_never_returned_or_cached(
    real_state_settings: StateSettings, redis_client: aioredis.Redis, pg: Any
) -> None:
    async with await StateManager.create(real_state_settings) as sm:
        await sm.set_state("orders:1", {"qty": "1"}, ORDERS)
        await pg.execute(
            "UPDATE state_records SET value = $2 WHERE bot_id = $1 AND key = 'orders:1'",
            sm.bot_id,
            b'{"qty":"9"}',
        )
        await redis_client.delete(f"state:{sm.bot_id}:orders:1")
        with pytest.raises(StateIntegrityError, match="'orders:1'"):
            await sm.get_state("orders:1")
        assert await redis_client.exists(f"state:{sm.bot_id}:orders:1") == 0


async def test_coherence_reports_each_mismatch_kind(
    real_state_settings: StateSettings, redis_client: aioredis.Redis
) -> None:
    async with await StateManager.create(real_state_settings) as sm:
        # the test edits HOT behind the bot's back: HOT must be up first (on a loaded CI runner the start-up
        # SCAN once overran the 0.1 s command bound, HOT started degraded and orders:3 was never in Redis)
        async def hot_up() -> bool:
            return sm.health().hot_state is HotState.UP

        await eventually_async(hot_up, timeout=10)
        await sm.batch_set_state({f"orders:{i}": i for i in range(20)}, ORDERS)
        await sm.set_state("orders:3", 33, ORDERS)
        prefix = f"state:{sm.bot_id}:"
        stale = await redis_client.get(prefix + "orders:3")
        await sm.set_state("orders:3", 34, ORDERS)
        await redis_client.set(prefix + "orders:3", stale)  # older version back in HOT
        await redis_client.set(
            prefix + "orders:99", await redis_client.get(prefix + "orders:4")
        )  # not in WARM
        await redis_client.set(prefix + "orders:5", b"garbage")  # malformed
        report = await sm.verify_coherence(page_size=4)
        assert report.checked == 21
        assert sorted((m.key, m.kind) for m in report.mismatches) == [
            ("orders:3", "version"),
            ("orders:5", "corrupt_hot"),
            ("orders:99", "missing_in_warm"),
        ]
        assert report.mismatch_count == 3 and not report.ok


async def test_sqlite_io_never_blocks_the_event_loop(embedded_state_settings: StateSettings) -> None:
    import sqlite3

    async with await StateManager.create(embedded_state_settings) as sm:
        await sm.set_state("orders:0", 0, ORDERS)
        locked, release = threading.Event(), threading.Event()

        def hold_write_lock() -> None:
            db = sqlite3.connect(embedded_state_settings.sqlite_path, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(5)
            db.execute("ROLLBACK")
            db.close()

        holder = threading.Thread(target=hold_write_lock)
        holder.start()
        await asyncio.to_thread(locked.wait, 5)
        write = asyncio.create_task(sm.set_state("orders:1", 1, ORDERS))
        ticks: list[float] = []
        for _ in range(10):  # the loop keeps ticking while the write waits for the lock in its thread
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)
        assert not write.done()
        release.set()
        assert await write == 1
        holder.join(5)
        assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.1


async def test_schema_newer_than_code_is_refused(
    embedded_state_settings: StateSettings, postgres_server: Any
) -> None:
    from bot_v2.errors import StateSchemaError

    async with await StateManager.create(embedded_state_settings):
        pass
    import sqlite3

    db = sqlite3.connect(embedded_state_settings.sqlite_path)
    db.execute("INSERT INTO state_schema_version VALUES (99, 'future', 0)")
    db.commit()
    db.close()
    with pytest.raises(StateSchemaError, match="version 99"):
        await StateManager.create(embedded_state_settings)

    admin = await asyncpg.connect(postgres_server.url)
    dbname = f"schema_{embedded_state_settings.bot_id.replace('-', '_')}"
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        url = postgres_server.url.rsplit("/", 1)[0] + f"/{dbname}"
        pg_settings = replace(embedded_state_settings, warm_backend=WarmBackend.POSTGRES, database_url=url)
        async with await StateManager.create(pg_settings) as sm:
            assert (await sm.get_storage_stats()).schema_version == latest_version(PG_MIGRATIONS)
        conn = await asyncpg.connect(url)
        await conn.execute("INSERT INTO state_schema_version (version, description) VALUES (99, 'future')")
        await conn.close()
        with pytest.raises(StateSchemaError, match="version 99"):
            await StateManager.create(pg_settings)
    finally:
        await admin.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
        await admin.close()
