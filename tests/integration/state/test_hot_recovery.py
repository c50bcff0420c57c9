"""HOT recovery at speed: a real redis-server SIGKILLed and restarted comes back within one probe interval of
answering, with no operation asking for it; the restore verifies what it wrote (docs/STATE.md "Degraded HOT").
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from bot_v2.state import HotState, StateCategory, StateManager
from bot_v2.state.settings import StateSettings
from tests.fixtures.services import RedisServer, ServiceError
from tests.helpers import eventually_async
from tests.integration.state.conftest import spied_tiers

ORDERS = StateCategory.ORDERS


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone (killing it disturbs nobody)."""
    try:
        server = RedisServer()
        server.start()
    except ServiceError as exc:
        pytest.skip(f"redis-server unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_settings(real_state_settings: StateSettings, own_redis: RedisServer) -> StateSettings:
    return replace(real_state_settings, redis_url=own_redis.url, connect_timeout_seconds=1.0)


@pytest.fixture
async def raw(own_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(own_redis.url)
    yield client
    await client.aclose()


async def test_default_probe_brings_hot_back_after_sigkill_and_restart_without_any_operation(
    own_settings: StateSettings, own_redis: RedisServer, raw: aioredis.Redis
) -> None:
    defaults = StateSettings(bot_id="x", data_dir=own_settings.data_dir)
    assert defaults.hot_probe_interval_seconds == defaults.hot_probe_max_interval_seconds <= 0.025
    async with await StateManager.create(own_settings) as sm:
        await sm.batch_set_state({f"orders:{i}": {"i": i} for i in range(500)}, ORDERS)
        own_redis.kill()
        assert await sm.get_state("orders:7") == {"i": 7}  # served from WARM; the manager is degraded now
        assert sm.health().hot_state is HotState.DEGRADED
        await sm.set_state("orders:7", {"i": 70}, ORDERS)  # WARM only: dirty in HOT

        own_redis.start()  # returns once the new server answers PING (empty: no persistence)
        answered = time.monotonic()

        async def up() -> bool:  # health() does no I/O: nothing here asks the manager to probe
            return sm.health().hot_state is HotState.UP

        await eventually_async(up, timeout=5, interval=0.002)
        elapsed = time.monotonic() - answered
        recovery = sm.health().last_hot_recovery
        assert recovery is not None and recovery.keys_restored == 500 and recovery.keys_verified == 500
        # one probe interval (20 ms) + the restore, with slack for a loaded CI machine
        assert elapsed < 0.5 + recovery.restore_seconds, elapsed
        assert await raw.dbsize() == 500 + 1  # + the bot's write token, state:<bot_id>
        assert await sm.get_state("orders:7") == {"i": 70}
        assert (await sm.verify_coherence()).ok


async def test_restore_verification_catches_a_value_corrupted_in_redis_between_pages(
    own_settings: StateSettings, own_redis: RedisServer, raw: aioredis.Redis
) -> None:
    """A second client writes a wrong record over a key the restore wrote in its first page, after that page
    was written and before it is read back (while the second page is written): the read-back (MGET compared
    with the bytes written) finds it and rewrites it from WARM, and HOT is up only with every record as WARM
    has it."""
    settings = replace(own_settings, hot_restore_page_size=100, hot_probe_interval_seconds=3600.0)
    settings = replace(settings, hot_probe_max_interval_seconds=3600.0)  # this test probes by hand
    hot, warm, cold = spied_tiers(settings)
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        await sm.batch_set_state({f"orders:{i:03d}": {"i": i} for i in range(300)}, ORDERS)
        name = f"state:{sm.bot_id}:orders:042"
        good = await raw.get(name)
        assert isinstance(good, bytes)
        own_redis.kill()
        await sm.get_state("orders:001")
        assert sm.health().degraded_hot
        own_redis.start()
        read_backs = 0

        async def corrupt_before_first_read_back(*_: object, **__: object) -> None:
            nonlocal read_backs
            read_backs += 1
            if read_backs == 1:  # page 1 (orders:000-099) is in Redis; its read-back is about to run
                assert await raw.get(name) is not None  # written by the restore's first page
                header, _, value = good.partition(b"\n")
                await raw.set(name, header + b"\n" + value.replace(b"42", b"24"))  # same header, other bytes

        hot.before["differing"] = corrupt_before_first_read_back
        await raw.connection_pool.disconnect()
        assert await sm.recover_hot()
        recovery = sm.health().last_hot_recovery
        assert recovery is not None and read_backs >= 3
        assert recovery.keys_restored == 300 and recovery.keys_verified == 300
        assert recovery.mismatches_repaired == 1
        restored = await raw.get(name)
        assert isinstance(restored, bytes)
        assert restored.partition(b"\n")[2] == good.partition(b"\n")[2]  # WARM's bytes again
        assert (await sm.verify_coherence()).ok
        assert await sm.get_state("orders:042") == {"i": 42}
