"""A hung server (SIGSTOP: it accepts connections and answers nothing) is an outage the bot bounds, not a stall.

Each test stops a private redis-server or PostgreSQL of its own (stopping the session ones would stall every
other test) and checks what the state layer promises (docs/STATE.md "Hung servers"): the operation that meets
the hang returns within its bound -- served from WARM (Redis hung), failed as ``StateUnavailableError`` or journaled (a
WARM write, PostgreSQL hung) -- instead of the old socket timeout (5 s) or forever; after SIGCONT the stuck
connections are gone (not reused with a late reply pending) and nothing written is lost. The bounds asserted
here are the configured ones plus slack for a loaded CI machine; the drills measure the real figures
(``scripts/benchmarks/*_failover_drill.py --mode hang``).
"""

from __future__ import annotations

import signal
import time
from dataclasses import replace

from bot_v2.errors import StateUnavailableError
from bot_v2.state import HotState, StateCategory, StateManager
from bot_v2.state.settings import StateSettings
from tests.fixtures.services import PostgresServer, RedisServer
from tests.helpers import eventually_async

ORDERS = StateCategory.ORDERS
SLACK = 0.6  # scheduling on a loaded 2-CPU runner; the bound itself is 0.15 s


def hang_settings(settings: StateSettings) -> StateSettings:
    return replace(
        settings,
        hot_command_timeout_seconds=0.15,
        warm_command_timeout_seconds=0.15,
        hot_probe_interval_seconds=0.02,
        hot_probe_max_interval_seconds=0.02,
        hot_probe_timeout_seconds=0.25,
        connect_timeout_seconds=2.0,
    )


async def timed(coro: object) -> tuple[object, float]:
    started = time.monotonic()
    result = await coro  # type: ignore[misc]
    return result, time.monotonic() - started


async def test_a_hung_redis_degrades_hot_within_the_bound_then_recovers_after_sigcont(
    real_state_settings: StateSettings, private_redis: RedisServer
) -> None:
    settings = hang_settings(replace(real_state_settings, redis_url=private_redis.url))
    async with await StateManager.create(settings) as sm:
        await sm.batch_set_state({f"orders:{i}": i for i in range(50)}, ORDERS)
        private_redis.send_signal(signal.SIGSTOP)
        try:
            value, read_s = await timed(sm.get_state("orders:7"))  # meets the hang: served from WARM
            assert value == 7 and read_s < 0.15 + SLACK, read_s
            assert sm.health().degraded_hot
            version, write_s = await timed(sm.set_state("orders:7", "during the hang", ORDERS))
            assert version == 2 and write_s < 0.15 + SLACK, write_s  # WARM only: HOT is not touched
            for _ in range(10):  # probes keep meeting the hang in the background; operations never wait
                assert (await timed(sm.get_state("orders:8")))[1] < 0.15 + SLACK
            assert sm.health().hot_state is HotState.DEGRADED
        finally:
            private_redis.send_signal(signal.SIGCONT)

        async def hot_up() -> bool:
            return sm.health().hot_state is HotState.UP

        await eventually_async(hot_up, timeout=10, interval=0.02)  # the probe timer, no operation needed
        recovery = sm.health().last_hot_recovery
        assert recovery is not None and recovery.keys_restored == 50
        assert await sm.get_state("orders:7") == "during the hang"
        assert await sm.batch_get_state([f"orders:{i}" for i in range(50)]) == {
            f"orders:{i}": ("during the hang" if i == 7 else i) for i in range(50)
        }
        report = await sm.verify_coherence()
        assert report.ok and report.checked == 50


async def test_a_hung_postgres_fails_writes_within_the_bound_then_recovers_after_sigcont(
    real_state_settings: StateSettings, private_postgres: PostgresServer
) -> None:
    settings = hang_settings(replace(real_state_settings, database_url=private_postgres.url))
    async with await StateManager.create(settings) as sm:
        await sm.batch_set_state({f"orders:{i}": i for i in range(50)}, ORDERS)
        private_postgres.send_signal(signal.SIGSTOP)
        accepted: list[str] = []  # a state layer with a WARM-outage journal accepts them; without, refused
        try:
            for attempt in range(3):  # each meets the hang on a pooled or a new connection: same bound
                started = time.monotonic()
                try:
                    await sm.set_state("orders:7", f"refused {attempt}", ORDERS)
                    accepted.append(f"refused {attempt}")
                except StateUnavailableError as exc:
                    assert "no answer within" in str(exc)
                assert time.monotonic() - started < 0.15 + SLACK
            value, read_s = await timed(sm.get_state("orders:8"))  # HOT still serves what it holds
            assert value == 8 and read_s < 0.15 + SLACK
        finally:
            private_postgres.send_signal(signal.SIGCONT)

        async def writes_again() -> bool:
            try:
                await sm.set_state("orders:9", "after", ORDERS)
            except StateUnavailableError:
                return False
            return True

        await eventually_async(writes_again, timeout=10, interval=0.05)
        for _ in range(8):  # every pooled connection in turn: none is left mid-operation
            await sm.batch_set_state({"orders:10": "again"}, ORDERS)
        values = await sm.batch_get_state([f"orders:{i}" for i in range(50)])
        assert {k: v for k, v in values.items() if k not in ("orders:7", "orders:9", "orders:10")} == {
            f"orders:{i}": i for i in range(50) if i not in (7, 9, 10)
        }
        # a write refused during the hang may still have committed when the server resumed (as after a
        # kill): what the caller must never see is a value nobody wrote; an accepted one is never lost
        if accepted:
            assert values["orders:7"] == accepted[-1]
        else:
            assert values["orders:7"] in (7, "refused 0", "refused 1", "refused 2")
        assert values["orders:9"] == "after" and values["orders:10"] == "again"
        report = await sm.verify_coherence()
        assert report.ok, report
