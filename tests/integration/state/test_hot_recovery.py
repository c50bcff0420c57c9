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
        assert await raw.dbsize() == 500
        assert await sm.get_state("orders:7") == {"i": 70}
        assert (await sm.verify_coherence()).ok
