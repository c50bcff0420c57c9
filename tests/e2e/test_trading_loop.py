"""The trading loop against the simulated exchange (in-process simulator, real Coinbase adapter)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest

from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.config import BotSettings
from bot_v2.domain import Position, Symbol
from bot_v2.monitoring.events import EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.controls import set_operator_control
from bot_v2.orchestration.wiring import open_runtime
from bot_v2.strategies import Decision, MaCrossoverStrategy, MarketView
from tests.helpers import eventually_async

pytestmark = pytest.mark.e2e
BTC = Symbol("BTC-USD")


class BuyEvery:
    """Buys a small size every cycle (to prove what does or does not reach the exchange)."""

    name = "e2e_buy_every"

    def __init__(self, quantity: Decimal = Decimal("0.001")) -> None:
        self.quantity = quantity
        self.calls = 0

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        self.calls += 1
        return Decision.buy(view.symbol, self.quantity, "e2e")


async def test_ma_crossover_trades_over_several_cycles(
    fresh_simulator: RunningSimulator, sim_settings: Callable[..., BotSettings]
) -> None:
    """The stock strategy, forced to cross by simulator price moves, buys then sells; fills are booked."""
    from bot_v2.strategies import MaCrossoverParams

    settings = sim_settings(PERPS_INTERVAL_SECONDS="0.05")
    control = fresh_simulator.control
    control.set_ticking(False)
    strategy = MaCrossoverStrategy(
        MaCrossoverParams(fast_window=2, slow_window=4, position_fraction=Decimal("0.01"))
    )
    price = control.price(BTC)
    stop = asyncio.Event()
    async with open_runtime(settings) as runtime:
        task = asyncio.create_task(run_bot(runtime, stop_event=stop, strategy=strategy, metrics=BotMetrics()))
        try:
            await eventually_async(lambda: _history_ready(runtime.settings), timeout=20)
            control.set_price(BTC, price * Decimal("1.02"))  # golden cross -> buy
            await eventually_async(lambda: _has_event(settings, EventType.FILL, 1), timeout=20)
            control.set_price(BTC, price * Decimal("0.97"))  # death cross -> close the long
            await eventually_async(lambda: _has_event(settings, EventType.FILL, 2), timeout=20)
        finally:
            stop.set()
            summary = await task
        assert summary.errors == [] and summary.orders_placed == 2 and summary.fills >= 2
        assert runtime.state is not None
        position = await runtime.state.get_state(keys.position_key(BTC))
        assert position["quantity"] == 0 and position["fill_count"] >= 2
        exchange_orders = [
            o
            for o in await runtime.exchange.list_orders(symbols=[BTC])
            if o.client_order_id.startswith(settings.client_id_prefix)
        ]
        assert len(exchange_orders) == 2 and all(o.status.value == "FILLED" for o in exchange_orders)


async def test_daily_loss_trips_reduce_only_and_it_survives_a_restart(
    fresh_simulator: RunningSimulator, sim_settings: Callable[..., BotSettings]
) -> None:
    settings = sim_settings(RISK_DAILY_LOSS_LIMIT_PCT="none", RISK_DAILY_LOSS_LIMIT_USD="20")
    control = fresh_simulator.control
    control.set_ticking(False)
    price = control.price(BTC)
    async with open_runtime(settings) as runtime:
        summary = await run_bot(runtime, once=True, strategy=BuyEvery(Decimal("0.01")), metrics=BotMetrics())
        assert summary.orders_placed == 1 and summary.trading_state == "ACTIVE"
        control.set_price(BTC, price * Decimal("0.9"))  # ~ -10% on ~0.01 BTC
        summary = await run_bot(runtime, max_cycles=2, strategy=BuyEvery(), metrics=BotMetrics())
        assert summary.trading_state == "REDUCE_ONLY"
        assert summary.rows[0].action == "denied"
    # a brand-new process view: new runtime, same data dir
    async with open_runtime(settings) as runtime:
        summary = await run_bot(runtime, once=True, strategy=BuyEvery(), metrics=BotMetrics())
        assert summary.trading_state == "REDUCE_ONLY"
        assert summary.orders_placed == 0 and summary.rows[0].verdict.startswith("trading_state")
    trips = read_events(settings.events_path, EventType.GUARD_TRIP)
    assert any(t["reason"] == "DAILY_LOSS_LIMIT" for t in trips)


async def test_kill_switch_flipped_while_running_halts_with_no_new_orders(
    sim_settings: Callable[..., BotSettings],
) -> None:
    settings = sim_settings(RISK_MAX_ORDERS_PER_MINUTE="none")
    strategy = BuyEvery()
    stop = asyncio.Event()
    async with open_runtime(settings) as runtime:
        assert runtime.state is not None
        state = runtime.state
        task = asyncio.create_task(run_bot(runtime, stop_event=stop, strategy=strategy, metrics=BotMetrics()))
        try:
            await eventually_async(lambda: _has_event(settings, EventType.ORDER_PLACED, 2), timeout=20)
            await set_operator_control(state, kill_switch=True, reduce_only=None, source="e2e")

            async def halted() -> bool:
                safety = await state.get_state(keys.SAFETY_KEY)
                return safety is not None and safety["trading_state"] == "HALTED"

            await eventually_async(halted, timeout=20)
            placed = len(read_events(settings.events_path, EventType.ORDER_PLACED))
            calls = strategy.calls
            await eventually_async(lambda: _true(strategy.calls >= calls + 3), timeout=20)
            assert len(read_events(settings.events_path, EventType.ORDER_PLACED)) == placed
        finally:
            stop.set()
            summary = await task
        assert summary.trading_state == "HALTED"
        ours = [
            o
            for o in await runtime.exchange.list_orders(symbols=[BTC])
            if o.client_order_id.startswith(settings.client_id_prefix)
        ]
        assert len(ours) == placed


async def _history_ready(settings: BotSettings) -> bool:
    decisions = read_events(settings.events_path)
    return sum(1 for e in decisions if e["type"] == "reconciliation") >= 1 and _cycles(settings) >= 6


def _cycles(settings: BotSettings) -> int:
    from bot_v2.monitoring.health import read_health

    try:
        return int(read_health(settings.health_path)["last_cycle"])
    except (OSError, ValueError, KeyError):
        return 0


async def _has_event(settings: BotSettings, event_type: EventType, count: int) -> bool:
    return len(read_events(settings.events_path, event_type)) >= count


async def _true(value: bool) -> bool:
    return value
