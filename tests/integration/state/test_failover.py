"""HOT is a cache that never serves stale data and never stops the bot (DESIGN.md "Recovery": Redis down).

Kill tests use a private ``redis-server`` per test (the session one is shared by every other test); the
spy tests run over the embedded and the real combos.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot_v2.errors import StateUnavailableError
from bot_v2.state import HotState, StateCategory, StateManager, StateWrite
from bot_v2.state.settings import StateSettings
from tests.fixtures.services import RedisServer, free_port
from tests.helpers import eventually_async
from tests.integration.state.conftest import spied_tiers
from tests.unit.state.fakes import TierSpy, down

ORDERS, FILLS = StateCategory.ORDERS, StateCategory.FILLS
HOT_CALLS = ("get_many", "apply", "put_packed", "differing", "delete_many", "scan", "count", "ping")


def fast_probes(settings: StateSettings) -> StateSettings:
    return replace(
        settings,
        hot_probe_interval_seconds=0.02,
        hot_probe_max_interval_seconds=0.1,
        hot_probe_timeout_seconds=1.0,
        connect_timeout_seconds=1.0,
    )


def break_hot(hot: TierSpy) -> None:
    for name in HOT_CALLS:
        hot.fail[name] = down("hot")


def heal_hot(hot: TierSpy) -> None:
    hot.fail.clear()


@pytest.fixture
def private_settings(real_state_settings: StateSettings, private_redis: RedisServer) -> StateSettings:
    return fast_probes(replace(real_state_settings, redis_url=private_redis.url))


@pytest.fixture
async def raw_redis(private_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(private_redis.url)
    yield client
    await client.aclose()


async def raw_get(client: aioredis.Redis, name: str) -> bytes:
    data = await client.get(name)
    assert isinstance(data, bytes), data
    return data


async def until_hot_up(sm: StateManager, probe_key: str) -> None:
    """Keep operating (each operation may start a probe) until the manager serves from HOT again."""

    async def up() -> bool:
        await sm.get_state(probe_key)
        return sm.health().hot_state is HotState.UP

    await eventually_async(up, timeout=10, interval=0.02)


# --- HOT down: degraded, then restored (spies; embedded + real) ------------------------------------------


async def test_hot_errors_degrade_to_warm_then_restore(
    state_settings: StateSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fast_probes(state_settings)
    hot, warm, cold = spied_tiers(settings)
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        await sm.batch_set_state({f"orders:{i}": i for i in range(20)}, ORDERS)
        await sm.set_state("fills:1", "f", FILLS)
        break_hot(hot)
        caplog.set_level(logging.WARNING, logger="bot_v2.state.manager")

        assert await sm.get_state("orders:3") == 3  # HOT error on read: served from WARM, no exception
        assert sm.health().degraded_hot
        assert await sm.batch_get_state(["orders:4", "fills:1", "orders:none"]) == {
            "orders:4": 4,
            "fills:1": "f",
        }
        assert await sm.set_state("orders:3", 33, ORDERS) == 2  # writes still succeed (WARM is durable)
        assert await sm.batch_write([StateWrite("orders:new", 1, ORDERS), StateWrite("fills:2", 2, FILLS)])
        assert await sm.delete_state("orders:5") is True
        assert await sm.get_state("orders:3") == 33
        assert await sm.get_state("orders:5") is None
        hot_set = [f"orders:{i}" for i in range(20) if i != 5] + ["orders:new"]
        assert await sm.get_keys_by_pattern("orders:*", hot_only=True) == sorted(hot_set)  # from WARM
        stats = await sm.get_storage_stats()
        assert stats.degraded_hot and stats.hot_keys is None and stats.hot_dirty_keys >= 3
        with pytest.raises(StateUnavailableError):
            await sm.verify_coherence()
        for _ in range(5):  # probes keep failing: backoff grows, the warning is throttled
            await sm.recover_hot()
        health = sm.health()
        assert health.hot_state is HotState.DEGRADED and health.next_probe_in_seconds is not None
        assert "hot down" in (health.last_hot_error or "")
        degraded_warnings = [r for r in caplog.records if "degraded" in r.getMessage()]
        assert len(degraded_warnings) == 1, [r.getMessage() for r in degraded_warnings]

        heal_hot(hot)
        await until_hot_up(sm, "orders:3")
        stats = await sm.get_storage_stats()
        recovery = stats.last_hot_recovery
        assert recovery is not None and stats.hot_recoveries == 1 and not stats.degraded_hot
        assert recovery.keys_restored == len(hot_set)
        assert recovery.keys_evicted == 1  # orders:5, deleted while degraded
        assert recovery.keys_verified == len(hot_set) and recovery.mismatches_repaired == 0
        assert recovery.outage_seconds > 0 and recovery.restore_seconds > 0
        assert stats.hot_keys == len(hot_set) and stats.hot_dirty_keys == 0
        report = await sm.verify_coherence()
        assert report.ok and report.checked == len(hot_set)
        assert any("HOT tier recovered" in r.getMessage() for r in caplog.records)
        hot.calls.clear()
        warm.calls.clear()
        assert await sm.get_state("orders:3") == 33
        assert (hot.calls, warm.calls) == (["get_many"], [])  # served from HOT again


async def test_restore_rewrites_stale_hot_copies_and_evicts_keys_that_left(
    state_settings: StateSettings,
) -> None:
    """A partition, not a crash: HOT keeps its old data while the bot writes to WARM only."""
    settings = fast_probes(state_settings)
    hot, warm, cold = spied_tiers(settings)
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        await sm.batch_set_state({"orders:a": 1, "orders:b": 1, "orders:c": 1}, ORDERS)
        break_hot(hot)
        await sm.set_state("orders:a", 2, ORDERS)
        await sm.delete_state("orders:b")
        assert await sm.demote_to_cold(["orders:c"]) == 1
        stale = await hot.inner.get_many(["orders:a", "orders:b", "orders:c"])
        assert {k: r.version for k, r in stale.items()} == {"orders:a": 1, "orders:b": 1, "orders:c": 1}
        assert await sm.get_state("orders:a") == 2
        heal_hot(hot)
        assert await sm.recover_hot()
        after = await hot.inner.get_many(["orders:a", "orders:b", "orders:c"])
        assert {k: r.version for k, r in after.items()} == {"orders:a": 2}
        recovery = sm.health().last_hot_recovery
        assert recovery is not None and (recovery.keys_restored, recovery.keys_evicted) == (1, 2)
        assert (await sm.verify_coherence()).ok


async def test_write_through_failure_during_restore_stays_safe(state_settings: StateSettings) -> None:
    settings = fast_probes(state_settings)
    hot, warm, cold = spied_tiers(settings)
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        await sm.batch_set_state({f"orders:{i}": i for i in range(3)}, ORDERS)
        break_hot(hot)
        await sm.set_state("orders:1", 11, ORDERS)
        assert await sm.delete_state("orders:2")  # a dirty key out of the hot set: the restore evicts it
        del hot.fail["ping"]
        del hot.fail["put_packed"]  # the restore writes (and reads back) the hot set, then fails to evict
        assert not await sm.recover_hot()
        assert sm.health().hot_state is HotState.DEGRADED and sm.health().dirty_keys == 2
        assert await sm.get_state("orders:1") == 11 and await sm.get_state("orders:2") is None
        heal_hot(hot)
        assert await sm.recover_hot()
        assert (await sm.verify_coherence()).ok and sm.health().dirty_keys == 0
        assert await hot.inner.get_many(["orders:2"]) == {}


async def test_warm_down_still_serves_cached_keys_from_hot(state_settings: StateSettings) -> None:
    settings = replace(state_settings, warm_probe_interval_seconds=3600.0)  # probed when the test says
    hot, warm, cold = spied_tiers(settings)
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        await sm.batch_set_state({"orders:1": 1, "orders:2": 2}, ORDERS)
        await sm.set_state("fills:1", 1, FILLS)
        for name in ("get_many", "upsert_many", "delete_many", "get_versions", "move_many"):
            warm.fail[name] = down("warm")
        assert await sm.batch_get_state(["orders:1", "orders:2"]) == {"orders:1": 1, "orders:2": 2}
        with pytest.raises(StateUnavailableError):
            await sm.get_state("fills:1")  # not cached: needs WARM
        await sm.set_state("orders:1", 9, ORDERS)  # durable in the local journal (test_warm_journal.py)
        assert not sm.health().degraded_hot and sm.health().degraded_warm
        assert await sm.get_state("orders:1") == 9
        warm.fail.clear()
        assert await sm.recover_warm()
        assert await sm.get_state("orders:1") == 9
        assert (await sm.verify_coherence()).ok


# --- restarts never serve a stale HOT copy ------------------------------------------------------------


async def test_new_manager_never_serves_a_version_older_than_warm(real_state_settings: StateSettings) -> None:
    """Process A's cache update fails after its WARM commit (HOT keeps v1); process B starts: it must repair."""
    async with await StateManager.create(real_state_settings) as first:
        await first.batch_set_state({"orders:a": "v1", "orders:b": "v1"}, ORDERS)
    hot, warm, cold = spied_tiers(real_state_settings)
    async with await StateManager.create(real_state_settings, tiers=(hot, warm, cold)) as second:
        hot.fail["apply"] = down("hot")
        assert await second.set_state("orders:a", "v2", ORDERS) == 2  # WARM has v2, Redis still v1
    client = aioredis.Redis.from_url(real_state_settings.redis_url or "")
    try:
        name = f"state:{real_state_settings.bot_id}:orders:a"
        assert (await raw_get(client, name)).startswith(b"1 1 ")  # the stale record really is there
        async with await StateManager.create(
            replace(real_state_settings, repair_hot_at_start=False)
        ) as naive:
            assert await naive.get_state("orders:a") == "v1"  # what a restart would serve without the repair
        async with await StateManager.create(real_state_settings) as third:
            assert await third.get_state("orders:a") == "v2"
            assert third.health().hot_repaired_at_start == 1
            stats = await third.get_storage_stats()
            assert stats.hot_repaired_at_start == 1 and stats.hot_keys == 2
            assert (await raw_get(client, name)).startswith(b"1 2 ")  # rewritten from WARM
            assert (await third.verify_coherence()).ok
    finally:
        await client.aclose()


async def test_repair_coherence_on_demand_fixes_every_kind(
    real_state_settings: StateSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with await StateManager.create(real_state_settings) as sm:
        await sm.batch_set_state({f"orders:{i}": i for i in range(10)}, ORDERS)
        await sm.set_state("orders:8", 80, ORDERS, ttl_seconds=60)
        client = aioredis.Redis.from_url(real_state_settings.redis_url or "")
        try:
            prefix = f"state:{sm.bot_id}:"
            stale = await raw_get(client, prefix + "orders:3")
            await sm.set_state("orders:3", 33, ORDERS)
            await client.set(prefix + "orders:3", stale)  # older version
            await client.set(prefix + "orders:99", stale)  # not in WARM
            await client.set(prefix + "orders:5", b"garbage")  # malformed
            await client.set(prefix + "orders:8", b"1 2 " + b"0" * 64 + b" 0\n80")  # bad checksum
            report = await sm.repair_coherence(page_size=3)
            assert sorted((m.key, m.kind) for m in report.mismatches) == [
                ("orders:3", "version"),
                ("orders:5", "corrupt_hot"),
                ("orders:8", "corrupt_hot"),
                ("orders:99", "missing_in_warm"),
            ]
            assert report.repaired == 4 and report.checked == 11
            assert await client.exists(prefix + "orders:99") == 0
            assert 0 < await client.pttl(prefix + "orders:8") <= 60_000  # rewritten with its remaining TTL
            assert await sm.batch_get_state(["orders:3", "orders:5", "orders:8"]) == {
                "orders:3": 33,
                "orders:5": 5,
                "orders:8": 80,
            }
            assert (await sm.verify_coherence()).ok
        finally:
            await client.aclose()


# --- the real redis-server killed and restarted -------------------------------------------------------


async def test_redis_killed_mid_run_serves_warm_then_restores_hot_set(
    private_settings: StateSettings, private_redis: RedisServer, raw_redis: aioredis.Redis
) -> None:
    async with await StateManager.create(private_settings) as sm:
        await sm.batch_set_state({f"orders:{i}": {"i": i} for i in range(300)}, ORDERS)
        await sm.batch_set_state({f"fills:{i}": i for i in range(50)}, FILLS)
        await sm.set_state("marks:BTC", {"px": "1"}, StateCategory.MARKS, ttl_seconds=60)

        private_redis.kill()
        assert await sm.get_state("orders:7") == {"i": 7}  # no exception: WARM serves
        assert sm.health().degraded_hot
        assert len(await sm.batch_get_state([f"orders:{i}" for i in range(300)])) == 300
        assert await sm.set_state("orders:7", {"i": 70}, ORDERS) == 2
        await sm.batch_set_state({f"orders:{i}": {"i": i} for i in range(300, 320)}, ORDERS)
        assert await sm.batch_delete_state(["orders:0", "orders:1"]) == 2
        assert await sm.get_state("orders:7") == {"i": 70}
        stats = await sm.get_storage_stats()
        assert stats.degraded_hot and stats.hot_keys is None

        private_redis.start()  # same port, empty (no persistence)
        await until_hot_up(sm, "orders:7")
        stats = await sm.get_storage_stats()
        recovery = stats.last_hot_recovery
        assert recovery is not None and stats.hot_recoveries == 1
        hot_set = 318 + 1  # orders 2..319 and marks:BTC
        assert recovery.keys_restored == hot_set and recovery.keys_verified == hot_set
        assert recovery.keys_moved >= hot_set and recovery.corrupt_in_warm == 0
        assert stats.hot_keys == hot_set and stats.hot_dirty_keys == 0
        assert await raw_redis.dbsize() == hot_set + 1  # + the bot's write token, state:<bot_id>
        assert 0 < await raw_redis.pttl(f"state:{sm.bot_id}:marks:BTC") <= 60_000
        report = await sm.verify_coherence()
        assert report.ok and report.checked == hot_set
        assert await sm.get_state("orders:7") == {"i": 70}

        private_redis.kill()  # a second outage is handled the same way
        assert await sm.set_state("orders:7", {"i": 700}, ORDERS) == 3
        private_redis.restart()
        await until_hot_up(sm, "orders:7")
        assert (await sm.get_storage_stats()).hot_recoveries == 2
        assert await sm.get_state("orders:7") == {"i": 700}
        assert (await sm.verify_coherence()).ok


async def test_restart_with_stale_redis_data_never_serves_it(
    private_settings: StateSettings, private_redis: RedisServer, raw_redis: aioredis.Redis
) -> None:
    """Redis misses an update while down and comes back holding the old record (written back raw here,
    since this redis-server has no persistence); a new process must never return the stale value."""
    name = f"state:{private_settings.bot_id}:orders:a"
    async with await StateManager.create(private_settings) as sm:
        await sm.set_state("orders:a", "v1", ORDERS)
        old = await raw_get(raw_redis, name)
        private_redis.kill()
        assert await sm.set_state("orders:a", "v2", ORDERS) == 2  # WARM only
    private_redis.start()
    await raw_redis.connection_pool.disconnect()  # the test's own client: drop connections to the dead server
    await raw_redis.set(name, old)  # Redis returns with its old data
    async with await StateManager.create(private_settings) as fresh:
        assert await fresh.get_state("orders:a") == "v2"
        assert (await fresh.get_storage_stats()).hot_repaired_at_start == 1
        assert (await raw_get(raw_redis, name)).startswith(b"1 2 ")
        assert (await fresh.verify_coherence()).ok


class SlowScan(TierSpy):
    """A HOT tier whose SCAN answers 50 ms late (as a big key space does): WARM's pages arrive first."""

    def scan(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("scan")

        async def late() -> AsyncIterator[list[str]]:
            await asyncio.sleep(0.05)
            async for page in self.inner.scan(*args, **kwargs):
                yield page

        return late()


@pytest.mark.parametrize("first", ["hot_names", "warm_page"])
async def test_repair_at_start_finds_stale_strays_and_malformed_and_leaves_other_bots_alone(
    private_settings: StateSettings, raw_redis: aioredis.Redis, first: str
) -> None:
    """The start-up pass (WARM's hot set by key range, HOT's headers, SCAN for strays): a stale record is
    rewritten, a malformed one too, a key WARM no longer caches (a stray) is deleted, a key HOT does not hold
    is left to reads, and another bot's keys in the same Redis are never touched. Whichever answers first:
    HOT's names (all their headers asked for at once) or WARM's first page (headers asked for page by page,
    the strays at the end)."""
    prefix = f"state:{private_settings.bot_id}:"
    other = "state:" + private_settings.bot_id + "-other:orders:a"
    async with await StateManager.create(private_settings) as sm:
        await sm.batch_set_state({f"orders:{i}": i for i in range(5)}, ORDERS)
        old = await raw_get(raw_redis, prefix + "orders:0")
        await sm.set_state("orders:0", 10, ORDERS)
    await raw_redis.set(prefix + "orders:0", old)  # stale: version 1 under WARM's 2
    await raw_redis.set(prefix + "orders:1", b"not a record")  # malformed
    await raw_redis.set(prefix + "orders:stray", old)  # not in WARM
    await raw_redis.delete(prefix + "orders:2")  # not held: not a mismatch
    await raw_redis.set(other, b"another bot's bytes")
    hot, warm, cold = spied_tiers(private_settings)
    if first == "warm_page":
        hot = SlowScan(hot.inner)
    else:

        async def late(*_: Any) -> None:
            await asyncio.sleep(0.05)

        warm.before["hot_versions"] = late
    async with await StateManager.create(private_settings, tiers=(hot, warm, cold)) as fresh:
        assert hot.calls.count("versions") == (
            1 if first == "hot_names" else 2
        )  # all at once / page + strays
        assert fresh.health().hot_repaired_at_start == 3
        assert (await raw_get(raw_redis, prefix + "orders:0")).startswith(b"1 2 ")
        assert (await raw_get(raw_redis, prefix + "orders:1")).startswith(b"1 1 ")
        assert await raw_redis.exists(prefix + "orders:stray", prefix + "orders:2") == 0
        assert await raw_get(raw_redis, other) == b"another bot's bytes"
        assert await fresh.batch_get_state([f"orders:{i}" for i in range(5)]) == {
            "orders:0": 10, "orders:1": 1, "orders:2": 2, "orders:3": 3, "orders:4": 4
        }  # fmt: skip
        assert (await fresh.verify_coherence()).ok


async def test_start_degraded_when_redis_is_down_and_recover(real_state_settings: StateSettings) -> None:
    server = RedisServer(port=free_port())  # not started yet
    settings = fast_probes(replace(real_state_settings, redis_url=server.url, hot_required_at_start=False))
    try:
        async with await StateManager.create(settings) as sm:
            assert sm.health().hot_state is HotState.DEGRADED
            await sm.batch_set_state({f"orders:{i}": i for i in range(10)}, ORDERS)
            assert await sm.get_state("orders:3") == 3
            server.start()
            await until_hot_up(sm, "orders:3")
            recovery = sm.health().last_hot_recovery
            assert recovery is not None and recovery.keys_restored == 10
            assert (await sm.verify_coherence()).checked == 10
    finally:
        server.stop()
    with pytest.raises(StateUnavailableError, match="redis"):  # the default still fails fast at start
        await StateManager.create(replace(settings, hot_required_at_start=True))


async def test_close_cancels_a_pending_background_probe(embedded_state_settings: StateSettings) -> None:
    settings = fast_probes(replace(embedded_state_settings, hot_probe_timeout_seconds=30.0))
    hot, warm, cold = spied_tiers(settings)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(*_: Any) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a Redis that accepts the connection and never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sm = await StateManager.create(settings, tiers=(hot, warm, cold))
    await sm.set_state("orders:1", 1, ORDERS)
    hot.fail["apply"] = down("hot")
    await sm.set_state("orders:1", 2, ORDERS)
    hot.before["ping"] = hang

    async def probing() -> bool:
        assert await sm.get_state("orders:1") == 2  # operations never wait for the probe
        return started.is_set()

    await eventually_async(probing, timeout=5, interval=0.02)
    await asyncio.wait_for(sm.close(), 2)
    assert cancelled.is_set() and sm.health().degraded_hot
