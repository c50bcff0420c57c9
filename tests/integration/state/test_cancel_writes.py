"""A cancelled writer ends: no part of the state write path swallows ``CancelledError``.

A task looping on ``batch_set_state`` while PostgreSQL is killed, frozen (SIGSTOP) or failed over to a promoted
replica (multi-host ``DATABASE_URL``) goes through the WARM bound, the liveness query, the outage journal, its
probe and replay, and the multi-host connect. ``task.cancel()`` must end it within about a second whatever
it is awaiting at that moment (a swallowed cancel is lost for good: the loop would keep writing). Each case
cancels the writer at several points of the outage.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from bot_v2.state import StateCategory, StateManager
from bot_v2.state.settings import ColdBackend, StateSettings
from tests.fixtures.ha import PostgresReplicaPair
from tests.fixtures.services import PostgresServer

ORDERS = StateCategory.ORDERS
CANCEL_BOUND = 1.0  # seconds from task.cancel() to the task's end (a loaded 2-CPU runner included)


def outage_settings(settings: StateSettings, url: str) -> StateSettings:
    return replace(
        settings,
        database_url=url,
        cold_backend=ColdBackend.DIRECTORY,
        warm_command_timeout_seconds=0.15,
        warm_probe_interval_seconds=0.02,
        warm_probe_timeout_seconds=0.3,
        connect_timeout_seconds=1.0,
    )


async def writer(state: StateManager, writes: list[int]) -> None:
    """The drill's writer: one write after another, failures counted and retried, never a cancel caught."""
    i = 0
    while True:
        try:
            await state.batch_set_state({f"cancel:{i % 16}": i, f"cancel:n:{i % 7}": i}, ORDERS)
        except Exception:
            await asyncio.sleep(0.001)
        writes.append(i)
        i += 1


async def cancel_during(state: StateManager, rounds: int, seed: int) -> None:
    """Start the writer ``rounds`` times, cancel it at a random point, and check it ends within the bound."""
    rng = random.Random(seed)
    for n in range(rounds):
        writes: list[int] = []
        task = asyncio.create_task(writer(state, writes))
        await asyncio.sleep(rng.uniform(0.0, 0.12))
        task.cancel()
        started = time.monotonic()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_BOUND)
        took = time.monotonic() - started
        assert done, f"round {n}: writer still running {CANCEL_BOUND}s after cancel ({len(writes)} writes)"
        assert task.cancelled(), f"round {n}: writer ended without CancelledError: {task.exception()!r}"
        assert took < CANCEL_BOUND


async def through_outage(
    settings: StateSettings, outage: Callable[[], Awaitable[None]], restore: Callable[[], Awaitable[None]]
) -> None:
    state = await StateManager.create(settings)
    try:
        await state.batch_set_state({"cancel:seed": 1}, ORDERS)
        await cancel_during(state, 3, 1)  # WARM up
        await outage()
        await cancel_during(state, 10, 2)  # WARM killed / frozen / failing over
        await restore()
        await cancel_during(state, 6, 3)  # WARM back: probe, replay, writes to WARM
    finally:
        await state.close()


async def test_cancel_ends_a_writer_while_postgres_is_killed(
    real_state_settings: StateSettings, private_postgres: PostgresServer
) -> None:
    settings = outage_settings(real_state_settings, private_postgres.url)
    await through_outage(
        settings,
        lambda: asyncio.to_thread(private_postgres.kill),
        lambda: asyncio.to_thread(private_postgres.start),
    )


async def test_cancel_ends_a_writer_while_postgres_is_frozen(
    real_state_settings: StateSettings, private_postgres: PostgresServer
) -> None:
    settings = outage_settings(real_state_settings, private_postgres.url)
    await through_outage(
        settings,
        lambda: asyncio.to_thread(private_postgres.send_signal, signal.SIGSTOP),
        lambda: asyncio.to_thread(private_postgres.send_signal, signal.SIGCONT),
    )


# While the primary is down, asyncpg's pool keeps retrying its minimum connection in the background ("Failed to
# restore the pool connection floor; retrying"); a Connection object made inside one of those attempts was once
# garbage-collected after the test's event loop had closed, and its __del__ failed on the closed loop (1 full run
# in 3 on 2026-11-30). That object never reaches this project's code, so it is not the leak this test looks for.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function Connection.__del__:pytest.PytestUnraisableExceptionWarning"
)
async def test_cancel_ends_a_writer_during_a_promotion_with_a_multi_host_url(
    real_state_settings: StateSettings, postgres_replica_pair: PostgresReplicaPair
) -> None:
    pair = postgres_replica_pair
    settings = outage_settings(real_state_settings, pair.multi_host_url())

    async def kill_and_promote() -> None:
        await asyncio.to_thread(pair.primary.kill)
        await asyncio.to_thread(pair.promote)

    async def nothing() -> None:
        return None

    await through_outage(settings, kill_and_promote, nothing)
