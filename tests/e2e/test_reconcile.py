"""Reconciliation against the simulated exchange (real SDK over TLS): a create-order whose answer is lost and
whose order lands a moment later is adopted, never placed twice; ``--reconcile`` reaches a running bot."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from bot_v2.brokerages.base import Broker
from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.cli import handlers
from bot_v2.config import BotSettings
from bot_v2.domain import ClientOrderId, Order, OrderRequest, OrderType, Position, Side, Symbol
from bot_v2.errors import RetryableError
from bot_v2.monitoring.events import EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.ledger import derive_positions
from bot_v2.orchestration.records import IntentRecord
from bot_v2.orchestration.tracking import REBUILT_REASON, fills_of
from bot_v2.orchestration.wiring import open_runtime
from bot_v2.state import StateManager
from bot_v2.strategies import Decision, MarketView
from tests.e2e.test_cli_commands import assert_one_line_error, run_cli
from tests.helpers import eventually_async

pytestmark = pytest.mark.e2e
BTC = Symbol("BTC-USD")
QTY = Decimal("0.001")


class BuyWhenFlat:
    """Buys ``QTY`` whenever the bot holds nothing: a lost order that is not found would be bought again."""

    name = "e2e_buy_when_flat"

    def __init__(self) -> None:
        self.calls = 0

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        self.calls += 1
        if position is None or position.quantity == 0:
            return Decision.buy(view.symbol, QTY, "flat")
        return Decision.hold(view.symbol, "long")


class Hold:
    name = "e2e_hold"

    def __init__(self) -> None:
        self.calls = 0

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        self.calls += 1
        return Decision.hold(view.symbol, "hold")


async def _ours(exchange: Broker, prefix: str) -> list[Order]:
    return [o for o in await exchange.list_orders(symbols=[BTC]) if o.client_order_id.startswith(prefix)]


async def _position(state: StateManager) -> Decimal:
    value = await state.get_state(keys.position_key(BTC))
    return Decimal(0) if value is None else Decimal(str(value["quantity"]))


async def _true(value: bool) -> bool:
    return value


async def test_an_order_whose_ack_was_lost_and_that_landed_late_is_adopted_not_bought_again(
    fresh_simulator: RunningSimulator, sim_settings: Callable[..., BotSettings]
) -> None:
    settings = sim_settings(PERPS_INTENT_GRACE_SECONDS="60", RISK_MAX_ORDERS_PER_MINUTE="none")
    # the first create-order creates its order a second after its connection was closed unanswered
    fresh_simulator.control.lose_acks_next(1, land_after_seconds=1.0)
    strategy = BuyWhenFlat()
    async with open_runtime(settings) as runtime:
        assert runtime.state is not None
        state, exchange = runtime.state, runtime.exchange
        stop = asyncio.Event()
        task = asyncio.create_task(run_bot(runtime, stop_event=stop, strategy=strategy, metrics=BotMetrics()))
        try:

            async def adopted() -> bool:
                resolved = read_events(settings.events_path, EventType.RECOVERY)
                return any(e.get("kind") == "intent_resolved" for e in resolved)

            await eventually_async(adopted, timeout=30)
            calls = strategy.calls
            await eventually_async(lambda: _true(strategy.calls >= calls + 3), timeout=20)  # it holds now
        finally:
            stop.set()
            summary = await task

        assert summary.errors == [] and summary.trading_state == "ACTIVE"
        ours = await _ours(exchange, settings.client_id_prefix)
        assert len(ours) == 1, [o.client_order_id for o in ours]  # never placed twice
        (order,) = ours
        exchange_fills = await fills_of(exchange, [order.order_id])
        expected = derive_positions(exchange_fills)[BTC].quantity
        assert expected == QTY and await _position(state) == expected
        intent = await state.get_state(keys.intent_key(order.client_order_id))
        assert intent["status"] == "DONE" and intent["order_id"] == order.order_id
        assert intent["reason"] != REBUILT_REASON  # the bot's own intent, resolved, not a rebuilt one
        booked = await state.get_keys_by_pattern("fills:*")
        assert sorted(k.removeprefix("fills:") for k in booked) == sorted(f.trade_id for f in exchange_fills)

    unknown = read_events(settings.events_path, EventType.INTENT_UNKNOWN)
    assert [e["client_order_id"] for e in unknown] == [order.client_order_id]
    assert read_events(settings.events_path, EventType.INTENT_FAILED) == []
    placed = read_events(settings.events_path, EventType.ORDER_INTENT)
    assert len(placed) == 1  # one intent: the strategy's later buys were held back, then it held


async def test_reconcile_command_reaches_a_running_bot_and_adopts_an_unannounced_order(
    fresh_simulator: RunningSimulator, sim_settings: Callable[..., BotSettings]
) -> None:
    settings = sim_settings(PERPS_RECONCILE_EVERY_CYCLES="100000")
    strategy = Hold()
    async with open_runtime(settings) as runtime:
        assert runtime.state is not None
        state, exchange = runtime.state, runtime.exchange
        stop = asyncio.Event()
        task = asyncio.create_task(run_bot(runtime, stop_event=stop, strategy=strategy, metrics=BotMetrics()))
        try:
            await eventually_async(lambda: _true(strategy.calls >= 1), timeout=20)
            # an order of ours the bot never heard of: its create call timed out in a process that then died
            ghost = ClientOrderId(f"{settings.client_id_prefix}{uuid.uuid4().hex}")
            fresh_simulator.control.lose_acks_next(1)
            with pytest.raises(RetryableError):
                await exchange.place_order(
                    OrderRequest(BTC, Side.BUY, OrderType.MARKET, QTY, client_order_id=ghost)
                )

            # the operator's command: its own connection to the state stores, like the CLI
            assert await handlers.reconcile(settings) == 0

            async def acknowledged() -> bool:
                ack = await state.get_state(keys.RECONCILE_ACK_KEY)
                return ack is not None and ack["last_request_id"] == 1

            await eventually_async(acknowledged, timeout=20)

            # the dead process's intent never reached state: reconciliation rebuilt it from the exchange's
            # order, and the loop finished it (DONE) once the filled order's fills were booked
            async def intent_done() -> bool:
                intent = await state.get_state(keys.intent_key(ghost))
                return intent is not None and intent["status"] == "DONE"

            await eventually_async(intent_done, timeout=20)
        finally:
            stop.set()
            summary = await task

        assert summary.errors == []
        assert await _position(state) == QTY
        adopted = await state.get_state(keys.order_key(ghost))
        assert adopted is not None and adopted["adopted"] is True
        intent = IntentRecord.from_dict(await state.get_state(keys.intent_key(ghost)))
        assert (intent.symbol, intent.side, intent.order_type, intent.quantity) == (
            BTC,
            Side.BUY,
            OrderType.MARKET,
            QTY,
        )
        assert intent.order_id == adopted["order_id"] and intent.reason == REBUILT_REASON
    (run,) = [
        e for e in read_events(settings.events_path, EventType.RECONCILIATION) if e["trigger"] == "operator"
    ]
    assert run["request_id"] == 1 and run["adopted_orders"] == [ghost] and run["coherent"] is True
    assert run["intents_rebuilt"] == [ghost]
    assert run["missed_fills"] == 1


def test_reconcile_flag_queues_requests_and_refuses_other_commands(tmp_path: Path) -> None:
    first = run_cli(tmp_path, "--reconcile")
    assert first.returncode == 0, first.stderr
    assert "Reconcile request queued" in first.stdout
    second = run_cli(tmp_path, "--reconcile")
    assert second.returncode == 0, second.stderr
    ids = [line for line in second.stdout.splitlines() if "request id" in line]
    assert ids and "2" in ids[0]
    both = run_cli(tmp_path, "--reconcile", "--clear-reason", "MANUAL")
    assert_one_line_error(both, 2, "--reconcile")
