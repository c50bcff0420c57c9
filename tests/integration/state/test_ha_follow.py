"""High availability: HOT follows a Redis Sentinel promotion (never serving what the promoted replica missed),
WARM follows a PostgreSQL replica promoted with ``pg_ctl promote`` (multi-host DATABASE_URL,
``target_session_attrs=read-write``). Real processes: tests/fixtures/ha.py."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from bot_v2.errors import StateUnavailableError
from bot_v2.state import HotState, StateCategory, StateManager
from bot_v2.state.keys import KeySpace
from bot_v2.state.settings import StateSettings
from bot_v2.state.tiers.factory import build_tiers
from tests.fixtures.ha import SENTINEL_MASTER, PostgresReplicaPair, RedisSentinelSet
from tests.fixtures.services import ServiceError, unavailable
from tests.helpers import eventually_async

ORDERS = StateCategory.ORDERS


def _fast(settings: StateSettings) -> StateSettings:
    return replace(
        settings,
        hot_probe_interval_seconds=0.02,
        hot_probe_max_interval_seconds=0.1,
        hot_probe_timeout_seconds=1.0,
        connect_timeout_seconds=1.0,
    )


async def test_sentinel_promotion_is_followed_and_what_the_replica_missed_is_never_served(
    real_state_settings: StateSettings, redis_sentinel_set: RedisSentinelSet
) -> None:
    cluster = redis_sentinel_set
    settings = _fast(
        replace(
            real_state_settings,
            redis_url=None,
            redis_sentinels=cluster.addresses,
            redis_sentinel_master=SENTINEL_MASTER,
        )
    )
    assert "sentinel://" in repr(_hot_tier(settings))  # logs name the sentinels and the master, no password
    keys = [f"orders:{i}" for i in range(40)]
    async with await StateManager.create(settings) as sm:
        await sm.batch_set_state(dict.fromkeys(keys, "v1"), ORDERS)
        master = aioredis.Redis(port=cluster.master.port)
        await master.execute_command("WAIT", 1, 2000)  # the replica holds v1 of every key
        await master.aclose()
        cluster.cut_replication()  # the replica misses what follows (asynchronous replication's window)
        missed = keys[:10]
        await sm.batch_set_state(dict.fromkeys(missed, "v2"), ORDERS)  # acknowledged by the old master only
        old_port = cluster.master.port
        cluster.master.kill()
        cluster.replica.send_signal(signal.SIGCONT)
        # the bot is idle through the whole failover: no operation notices the outage before the new master
        await asyncio.to_thread(cluster.wait_for_promotion, old_port)
        assert cluster.master_port() == cluster.replica.port
        promoted = aioredis.Redis(port=cluster.replica.port)
        held = await promoted.get(f"state:{settings.bot_id}:{missed[0]}")
        assert held is not None and held.endswith(b'"v1"')  # the new master holds the older copy

        # the promoted replica still holds v1 of the missed keys; the bot must serve v2
        assert await sm.batch_get_state(missed) == dict.fromkeys(missed, "v2")

        async def hot_back() -> bool:
            assert await sm.get_state(missed[0]) == "v2"
            return sm.health().hot_state is HotState.UP

        await eventually_async(hot_back, timeout=15, interval=0.02)
        recovery = sm.health().last_hot_recovery
        assert recovery is not None and recovery.keys_restored == len(keys)
        report = await sm.verify_coherence()
        assert report.ok and report.checked == len(keys)
        assert await sm.batch_get_state(keys) == {k: "v2" if k in missed else "v1" for k in keys}
        await sm.set_state("orders:new", "after", ORDERS)  # writes land on the new master
        assert await promoted.exists(f"state:{settings.bot_id}:orders:new") == 1
        await promoted.aclose()


async def test_a_sentinel_that_is_down_is_skipped_at_once(
    real_state_settings: StateSettings, redis_sentinel_set: RedisSentinelSet
) -> None:
    """redis-py's default client retries a refused sentinel with a backoff (~3.5 s per discovery); the bot's
    sentinel clients do not retry, so a dead first sentinel fits in a 1 s connect timeout."""
    cluster = redis_sentinel_set
    cluster.sentinels[0].stop()
    settings = _fast(
        replace(
            real_state_settings,
            redis_url=None,
            redis_sentinels=cluster.addresses,
            redis_sentinel_master=SENTINEL_MASTER,
            connect_timeout_seconds=1.0,
        )
    )
    async with await StateManager.create(settings) as sm:
        await sm.set_state("orders:1", "x", ORDERS)
        assert await sm.get_state("orders:1") == "x"
        assert sm.health().hot_state is HotState.UP


async def test_password_protected_sentinels_and_nodes_are_followed(
    real_state_settings: StateSettings,
) -> None:
    """REDIS_PASSWORD (the data nodes' requirepass) and REDIS_SENTINEL_PASSWORD (the sentinels' own): the bot
    discovers the master through authenticated sentinels, writes to it, and follows a promotion. Without the
    sentinels' password it cannot even find the master."""
    try:
        cluster = RedisSentinelSet(password="node-pw-7f3a", sentinel_password="sentinel-pw-91c2")
        cluster.start()
    except ServiceError as exc:
        unavailable("redis sentinel with passwords", exc)
    try:
        base = replace(
            real_state_settings,
            redis_url=None,
            redis_sentinels=cluster.addresses,
            redis_sentinel_master=SENTINEL_MASTER,
            redis_password="node-pw-7f3a",
        )
        with pytest.raises(StateUnavailableError):  # the sentinels refuse a client without their password
            await _hot_tier_connected(_fast(base))
        settings = _fast(replace(base, redis_sentinel_password="sentinel-pw-91c2"))
        async with await StateManager.create(settings) as sm:
            assert sm.health().hot_state is HotState.UP
            await sm.set_state("orders:1", "v1", ORDERS)
            old_port = cluster.master.port
            cluster.master.kill()
            await asyncio.to_thread(cluster.wait_for_promotion, old_port)

            async def follows() -> bool:
                await sm.set_state("orders:2", "after", ORDERS)
                return sm.health().hot_state is HotState.UP and sm.health().last_hot_recovery is not None

            await eventually_async(follows, timeout=15, interval=0.05)
            promoted = aioredis.Redis(port=cluster.replica.port, password="node-pw-7f3a")
            try:
                assert await promoted.exists(f"state:{settings.bot_id}:orders:2") == 1
            finally:
                await promoted.aclose()
            assert await sm.batch_get_state(["orders:1", "orders:2"]) == {
                "orders:1": "v1",
                "orders:2": "after",
            }
    finally:
        cluster.stop()


async def _hot_tier_connected(settings: StateSettings) -> None:
    hot: Any = _hot_tier(settings)
    try:
        await hot.connect()
    finally:
        await hot.close()


def _hot_tier(settings: StateSettings) -> object:
    hot, _warm, _cold = build_tiers(settings, KeySpace(settings.bot_id))
    return hot


async def test_warm_follows_a_promoted_postgres_replica(
    real_state_settings: StateSettings,
    postgres_replica_pair: PostgresReplicaPair,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot_v2.state.tiers.pg_connect")
    pair = postgres_replica_pair
    pair.set_synchronous(True)  # zero loss: a commit waits for the replica's flush
    settings = _fast(replace(real_state_settings, database_url=pair.multi_host_url()))
    async with await StateManager.create(settings) as sm:
        await sm.batch_set_state({f"orders:{i}": i for i in range(20)}, ORDERS)
        pair.primary.kill()

        # with no primary the write goes to the outage journal, to be replayed onto the promoted replica
        await sm.set_state("orders:during", "x", ORDERS)
        assert sm.health().journal_records == 1
        await asyncio.to_thread(pair.promote)

        async def follows() -> bool:
            try:
                await sm.set_state("orders:after", "y", ORDERS)
            except StateUnavailableError:
                return False
            return True

        await eventually_async(follows, timeout=15, interval=0.05)
        assert await sm.batch_get_state([f"orders:{i}" for i in range(20)]) == {
            f"orders:{i}": i for i in range(20)
        }
        url = f"postgresql://postgres@127.0.0.1:{pair.replica.port}/postgres"

        async def rows_on_new_primary() -> int:  # a journaled write is replayed in the background
            conn = await asyncpg.connect(url)
            try:
                count: int = await conn.fetchval(
                    "SELECT count(*) FROM state_records WHERE bot_id = $1 AND key LIKE 'orders:%'",
                    settings.bot_id,
                )
            finally:
                await conn.close()
            return count

        await eventually_async(lambda: _equals(rows_on_new_primary(), 22), timeout=10)
        assert await rows_on_new_primary() == 22  # the 20, the journaled write and the one after
        assert sm.health().journal_records == 0
        assert await sm.get_state("orders:during") == "x"
    promotions = [r.getMessage() for r in caplog.records if "WARM is now on a promoted" in r.getMessage()]
    assert len(promotions) == 1 and "timeline 1 -> 2" in promotions[0], promotions


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_warm_follows_a_promotion_while_the_old_primary_hangs(
    real_state_settings: StateSettings, postgres_replica_pair: PostgresReplicaPair
) -> None:
    """A partitioned (here: SIGSTOPped) old primary accepts TCP and answers nothing. The DSN names it first;
    asyncpg alone spends its whole connect timeout on it and never tries the promoted replica."""
    pair = postgres_replica_pair
    settings = _fast(
        replace(real_state_settings, database_url=pair.multi_host_url(), connect_timeout_seconds=2.0)
    )
    async with await StateManager.create(settings) as sm:
        await sm.set_state("orders:before", 1, ORDERS)
        pair.primary.send_signal(signal.SIGSTOP)
        try:
            await asyncio.to_thread(pair.promote)

            async def follows() -> bool:
                try:
                    await sm.set_state("orders:after", 2, ORDERS)
                except StateUnavailableError:
                    return False
                return True

            await eventually_async(follows, timeout=15, interval=0.05)
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pair.replica.port}/postgres")
            try:

                async def on_new_primary() -> bool:
                    return bool(
                        await conn.fetchval(
                            "SELECT count(*) FROM state_records WHERE bot_id = $1 AND key = 'orders:after'",
                            settings.bot_id,
                        )
                    )

                await eventually_async(on_new_primary, timeout=10)
            finally:
                await conn.close()
        finally:
            pair.primary.send_signal(signal.SIGCONT)
