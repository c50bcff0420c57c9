"""A slow PostgreSQL, or a bot whose own loop was paused, is not a hung one (state/tiers/pg_liveness.py).

A WARM operation past its bound is given more time while the server answers a liveness query, up to five
bounds; a server that answers nothing is still cut off at the bound (tests/integration/state/
test_hung_servers.py). The slow server here is a real one: another session holds the row the upsert needs
(``FOR UPDATE`` inside a statement that sleeps server-side, so the lock ends on its own even while this test's
event loop is blocked).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from bot_v2.errors import StateUnavailableError
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import Tier, WarmWrite
from bot_v2.state.tiers.postgres_warm import PostgresWarmTier

BOUND = 0.15  # the default STATE_WARM_COMMAND_TIMEOUT_SECONDS
SLACK = 0.6  # scheduling on a loaded 2-CPU runner

_HOLD_ROW_SQL = """
WITH held AS (SELECT 1 FROM state_records WHERE bot_id = $1 AND key = $2 FOR UPDATE)
SELECT pg_sleep($3) FROM held
"""


def row(value: bytes) -> WarmWrite:
    return WarmWrite("orders:1", "orders", Tier.HOT, "0" * 64, value, None, None)


@pytest.fixture
async def tier(postgres_server: Any, state_bot_id: str) -> AsyncIterator[PostgresWarmTier]:
    warm = PostgresWarmTier(postgres_server.url, KeySpace(state_bot_id), command_timeout_seconds=BOUND)
    await warm.connect()
    await warm.upsert_many([row(b"v1")], datetime.now(UTC))
    yield warm
    now = datetime.now(UTC)
    await warm.delete_many(await warm.keys_matching("*", now), now)
    await warm.close()


async def hold_row(url: str, bot_id: str, seconds: float) -> tuple[asyncpg.Connection, asyncio.Task[Any]]:
    """Another session locks orders:1 for ``seconds`` (server-side); returns once the lock is held."""
    conn = await asyncpg.connect(url)
    holder = asyncio.ensure_future(conn.execute(_HOLD_ROW_SQL, bot_id, "orders:1", seconds))
    await asyncio.sleep(0.05)
    return conn, holder


async def test_an_upsert_waiting_on_a_lock_longer_than_its_bound_completes(
    tier: PostgresWarmTier, postgres_server: Any, state_bot_id: str
) -> None:
    conn, holder = await hold_row(postgres_server.url, state_bot_id, 0.5)
    try:
        started = time.monotonic()
        versions = await tier.upsert_many([row(b"v2")], datetime.now(UTC))  # waits ~0.45 s: 3 bounds
        took = time.monotonic() - started
        await holder
    finally:
        await conn.close()
    assert versions["orders:1"][0] == 2
    assert took > 2 * BOUND, took  # it really waited past its bound...
    assert tier.liveness.queries >= 1  # ...because the server answered the liveness query meanwhile


async def test_a_server_that_answers_but_never_finishes_the_operation_is_cut_off_after_five_bounds(
    tier: PostgresWarmTier, postgres_server: Any, state_bot_id: str
) -> None:
    conn, holder = await hold_row(postgres_server.url, state_bot_id, 1.6)
    try:
        started = time.monotonic()
        with pytest.raises(StateUnavailableError, match="no answer within"):
            await tier.upsert_many([row(b"v2")], datetime.now(UTC))
        took = time.monotonic() - started
        await holder
    finally:
        await conn.close()
    assert 1.0 - BOUND <= took < 1.0 + SLACK, took  # max(5 bounds, 1 s), in whole bounds


async def test_a_paused_bot_loop_does_not_turn_an_answered_operation_into_an_outage(
    tier: PostgresWarmTier, postgres_server: Any, state_bot_id: str
) -> None:
    conn, holder = await hold_row(postgres_server.url, state_bot_id, 0.2)
    try:
        upsert = asyncio.ensure_future(tier.upsert_many([row(b"v2")], datetime.now(UTC)))
        await asyncio.sleep(0.02)  # sent; now waiting on the lock
        time.sleep(4 * BOUND)  # the bot's loop is paused (GC, SIGSTOP, a starved CPU) past the bound
        versions = await upsert  # the answer came while we were paused: the watchdog fires late, asks, waits
        await holder
    finally:
        await conn.close()
    assert versions["orders:1"][0] == 2
