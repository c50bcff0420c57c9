"""HOT recovery at speed: a real redis-server SIGKILLed and restarted comes back within one probe interval of
answering, with no operation asking for it; the restore verifies what it wrote (docs/STATE.md "Degraded HOT").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
import redis.asyncio as aioredis

from bot_v2.errors import StateIntegrityError
from bot_v2.state import HotState, StateCategory, StateManager
from bot_v2.state.settings import StateSettings
from tests.fixtures.services import RedisServer
from tests.helpers import eventually_async

ORDERS = StateCategory.ORDERS


@pytest.fixture
def own_settings(real_state_settings: StateSettings, private_redis: RedisServer) -> StateSettings:
    return replace(real_state_settings, redis_url=private_redis.url, connect_timeout_seconds=1.0)


@pytest.fixture
async def raw(private_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(private_redis.url)
    yield client
    await client.aclose()


async def test_default_probe_brings_hot_back_after_sigkill_and_restart_without_any_operation(
    own_settings: StateSettings, private_redis: RedisServer, raw: aioredis.Redis
) -> None:
    defaults = StateSettings(bot_id="x", data_dir=own_settings.data_dir)
    assert defaults.hot_probe_interval_seconds == defaults.hot_probe_max_interval_seconds <= 0.025
    async with await StateManager.create(own_settings) as sm:
        await sm.batch_set_state({f"orders:{i}": {"i": i} for i in range(500)}, ORDERS)
        private_redis.kill()
        assert await sm.get_state("orders:7") == {"i": 7}  # served from WARM; the manager is degraded now
        assert sm.health().hot_state is HotState.DEGRADED
        await sm.set_state("orders:7", {"i": 70}, ORDERS)  # WARM only: dirty in HOT

        private_redis.start()  # returns once the new server answers PING (empty: no persistence)
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


class CorruptingProxy:
    """A TCP proxy in front of a redis-server that, once armed, changes the first occurrence of ``needle`` in
    what a client sends (same length, so the command stays well-formed): Redis then holds bytes other than
    the ones the bot sent, whatever the bot does between its write and its read-back."""

    def __init__(self, upstream_port: int, needle: bytes, replacement: bytes) -> None:
        assert len(needle) == len(replacement)
        self.upstream_port, self.needle, self.replacement = upstream_port, needle, replacement
        self.armed = False
        self.corrupted = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, corrupt=True),
            self._pump(up_reader, writer, corrupt=False),
            return_exceptions=True,
        )

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, corrupt: bool) -> None:
        try:
            while data := await src.read(1 << 16):
                if corrupt and self.armed and self.needle in data:
                    data, self.armed = data.replace(self.needle, self.replacement, 1), False
                    self.corrupted += 1
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()


async def test_restore_read_back_catches_a_value_redis_does_not_hold_as_written(
    own_settings: StateSettings, private_redis: RedisServer, raw: aioredis.Redis
) -> None:
    """The restore writes each page and reads it back in the same round trip (MGET after the EXEC, compared
    with the bytes sent). A proxy between the bot and Redis changes one value of the first page on its way in
    (Redis holds other bytes than the bot wrote): the read-back finds it and rewrites it from WARM, and HOT
    is up only with every record as WARM has it."""
    proxy = CorruptingProxy(private_redis.port, b'{"i":42}', b'{"i":24}')
    settings = replace(own_settings, redis_url=await proxy.start(), hot_restore_page_size=100)
    settings = replace(settings, hot_probe_interval_seconds=3600.0, hot_probe_max_interval_seconds=3600.0)
    try:
        async with await StateManager.create(settings) as sm:
            await sm.batch_set_state({f"orders:{i:03d}": {"i": i} for i in range(300)}, ORDERS)
            name = f"state:{sm.bot_id}:orders:042"
            good = await raw.get(name)
            assert isinstance(good, bytes) and good.endswith(b'{"i":42}')
            private_redis.kill()
            await sm.get_state("orders:001")
            assert sm.health().degraded_hot
            private_redis.start()
            await raw.connection_pool.disconnect()
            proxy.armed = True
            assert await sm.recover_hot()  # this test probes by hand
            assert proxy.corrupted == 1
            recovery = sm.health().last_hot_recovery
            assert recovery is not None
            assert recovery.keys_restored == 300 and recovery.keys_verified == 300
            assert recovery.mismatches_repaired == 1
            assert await raw.get(name) == good.partition(b"\n")[0] + b"\n" + b'{"i":42}'  # WARM's bytes
            assert (await sm.verify_coherence()).ok
            assert await sm.get_state("orders:042") == {"i": 42}
    finally:
        await proxy.close()


async def test_restore_never_caches_a_warm_body_that_fails_its_checksum(
    own_settings: StateSettings, private_redis: RedisServer, raw: aioredis.Redis
) -> None:
    """A hot-set row whose body no longer matches its checksum in PostgreSQL (a disk or an operator changed
    it) is checked while its page is on its way to Redis: the restore deletes it from HOT again before HOT
    serves anything, counts it as corrupt in WARM, and every other key is restored and verified."""
    assert own_settings.database_url is not None
    settings = replace(own_settings, hot_restore_page_size=100)
    settings = replace(settings, hot_probe_interval_seconds=3600.0, hot_probe_max_interval_seconds=3600.0)
    async with await StateManager.create(settings) as sm:
        await sm.batch_set_state({f"orders:{i:03d}": {"i": i} for i in range(300)}, ORDERS)
        private_redis.kill()
        await sm.get_state("orders:001")
        assert sm.health().degraded_hot
        conn = await asyncpg.connect(own_settings.database_url)
        try:
            await conn.execute(
                "UPDATE state_records SET value = $2 WHERE bot_id = $1 AND key = 'orders:142'",
                sm.bot_id,
                b'{"i":241}',
            )
        finally:
            await conn.close()
        private_redis.start()
        await raw.connection_pool.disconnect()
        assert await sm.recover_hot()  # this test probes by hand
        recovery = sm.health().last_hot_recovery
        assert recovery is not None
        assert (recovery.keys_restored, recovery.keys_verified, recovery.corrupt_in_warm) == (299, 299, 1)
        assert await raw.exists(f"state:{sm.bot_id}:orders:142") == 0
        assert await raw.dbsize() == 299 + 1  # + the bot's write token
        with pytest.raises(StateIntegrityError, match="'orders:142'"):
            await sm.get_state("orders:142")
        assert await sm.get_state("orders:143") == {"i": 143}
