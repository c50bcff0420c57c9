"""Operator clears a latched reason on a running bot: RECONCILE_MISMATCH -> ``--clear-reason`` -> ACTIVE."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.cli import handlers
from bot_v2.config import BotSettings
from bot_v2.monitoring.events import EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.wiring import open_runtime
from bot_v2.risk import ReasonCode
from bot_v2.state import StateCategory, StateManager
from tests.e2e.test_trading_loop import BuyEvery
from tests.helpers import eventually_async

pytestmark = pytest.mark.e2e


async def test_clear_reason_command_lifts_reconcile_mismatch_on_a_running_bot(
    fresh_simulator: RunningSimulator, sim_settings: Callable[..., BotSettings]
) -> None:
    settings = sim_settings(RISK_MAX_ORDERS_PER_MINUTE="none")
    async with open_runtime(settings) as runtime:
        assert runtime.state is not None
        state = runtime.state
        first = await run_bot(runtime, once=True, strategy=BuyEvery(), metrics=BotMetrics())
        assert first.orders_placed == 1
        # state now disagrees with the exchange (as after restoring a stale tier): 0.002 booked, 0.001 filled
        position = await state.get_state(keys.position_key("BTC-USD"))
        position["quantity"] = Decimal("0.002")
        await state.set_state(keys.position_key("BTC-USD"), position, StateCategory.POSITIONS)

        strategy = BuyEvery()
        stop = asyncio.Event()
        task = asyncio.create_task(run_bot(runtime, stop_event=stop, strategy=strategy, metrics=BotMetrics()))
        try:
            await eventually_async(_trading_state(state, "REDUCE_ONLY"), timeout=20)
            calls = strategy.calls
            await eventually_async(lambda: _true(strategy.calls >= calls + 2), timeout=20)
            assert len(read_events(settings.events_path, EventType.ORDER_PLACED)) == 1  # buys are denied

            # the operator's command: its own connection to the state stores, like the CLI
            assert await handlers.clear_reason(settings, ReasonCode.RECONCILE_MISMATCH) == 0

            await eventually_async(_trading_state(state, "ACTIVE"), timeout=20)
            await eventually_async(lambda: _placed(settings, 2), timeout=20)  # trading again
        finally:
            stop.set()
            summary = await task
    assert summary.reconciliation is not None and summary.reconciliation["coherent"] is False
    applied = [
        e for e in read_events(settings.events_path, EventType.CONTROL_APPLIED) if "clear_request" in e
    ]
    assert [(e["clear_request"]["reason"], e["outcome"]) for e in applied] == [
        ("RECONCILE_MISMATCH", "cleared")
    ]
    cleared = [
        t
        for t in read_events(settings.events_path, EventType.STATE_TRANSITION)
        if t["reason"] == "RECONCILE_MISMATCH" and t["cleared"]
    ]
    assert len(cleared) == 1 and cleared[0]["to_state"] == "ACTIVE"


def _trading_state(state: StateManager, expected: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        safety = await state.get_state(keys.SAFETY_KEY)
        return safety is not None and safety["trading_state"] == expected

    return check


async def _placed(settings: BotSettings, count: int) -> bool:
    return len(read_events(settings.events_path, EventType.ORDER_PLACED)) >= count


async def _true(value: bool) -> bool:
    return value
