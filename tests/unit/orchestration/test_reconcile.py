"""Start-up reconciliation: unclean shutdown, pending intents, adoption, missed fills, position mismatch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot_v2.config import BotSettings, ShutdownOrderPolicy
from bot_v2.domain import ClientOrderId, Order, OrderId, OrderRequest, OrderStatus, OrderType, Side
from bot_v2.monitoring.events import EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.records import IntentRecord, IntentStatus
from bot_v2.orchestration.tracking import REBUILT_REASON, OrderTracker
from bot_v2.risk import ReasonCode, RiskEngine, TradingState
from bot_v2.state import StateCategory, StateManager
from tests.unit.orchestration.conftest import runtime_for
from tests.unit.orchestration.fakes import BTC, FakeBroker, ScriptedStrategy

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
QTY = Decimal("0.01")


def _request(cid: str) -> OrderRequest:
    return OrderRequest(BTC, Side.BUY, OrderType.MARKET, Decimal("0.01"), client_order_id=ClientOrderId(cid))


async def _pending_intent(state: StateManager, cid: str) -> None:
    intent = IntentRecord.from_request(_request(cid), NOW)
    await state.set_state(keys.intent_key(cid), intent.to_dict(), StateCategory.INTENTS)


async def _run_once(settings: BotSettings, broker: FakeBroker, state: StateManager) -> dict[str, object]:
    summary = await run_bot(
        runtime_for(settings, broker, state),
        once=True,
        strategy=ScriptedStrategy(buy_on=[]),
        metrics=BotMetrics(),
    )
    assert summary.reconciliation is not None
    return summary.reconciliation


async def test_pending_intent_that_reached_the_exchange_is_adopted_not_resubmitted(
    settings: BotSettings, broker: FakeBroker, state: StateManager
) -> None:
    await state.set_state(keys.RUNNING_KEY, {"pid": 1}, StateCategory.METADATA)  # crashed run
    await _pending_intent(state, "pb-reached")
    await broker.place_order(_request("pb-reached"))  # the exchange got it before the crash
    broker.calls.clear()

    report = await _run_once(settings, broker, state)

    assert report["unclean_shutdown"] is True
    assert report["resolved_intents"] == [
        {"client_order_id": "pb-reached", "outcome": "adopted", "order_id": "o-1"}
    ]
    assert "place_order" not in broker.calls
    assert report["missed_fills"] == 1 and report["coherent"] is True
    intent = await state.get_state(keys.intent_key("pb-reached"))
    assert intent["status"] == "DONE" and intent["order_id"] == "o-1"
    assert (await state.get_state(keys.position_key(BTC)))["quantity"] == Decimal("0.01")
    recoveries = read_events(settings.events_path, EventType.RECOVERY)
    assert recoveries and recoveries[0]["kind"] == "engine_crash"


async def test_pending_intent_that_never_reached_the_exchange_is_failed(
    settings: BotSettings, broker: FakeBroker, state: StateManager
) -> None:
    await _pending_intent(state, "pb-lost")
    report = await _run_once(settings, broker, state)
    assert report["resolved_intents"] == [
        {"client_order_id": "pb-lost", "outcome": "failed", "order_id": None}
    ]
    assert "place_order" not in broker.calls and broker.orders == {}
    intent = await state.get_state(keys.intent_key("pb-lost"))
    assert intent["status"] == "FAILED"


async def test_unknown_open_order_with_our_prefix_is_adopted_and_foreign_ones_ignored(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SHUTDOWN_ORDER_POLICY="keep")
    broker.rest_orders = True
    await broker.place_order(_request("pb-orphan"))
    await broker.place_order(_request("manual-1"))
    report = await _run_once(settings, broker, state)
    assert report["adopted_orders"] == ["pb-orphan"]
    adopted = await state.get_state(keys.order_key("pb-orphan"))
    assert adopted["adopted"] is True and adopted["status"] == "OPEN"
    assert await state.get_state(keys.order_key("manual-1")) is None


async def test_fills_missed_while_down_are_ingested_once(
    settings: BotSettings, broker: FakeBroker, state: StateManager
) -> None:
    broker.rest_orders = True
    # the first run places resting orders and keeps them at shutdown (policy keep)
    kept = dataclasses.replace(settings, shutdown_order_policy=ShutdownOrderPolicy.KEEP)
    await run_bot(runtime_for(kept, broker, state), once=True, strategy=ScriptedStrategy(buy_on=[1]))
    assert len(await state.get_keys_by_pattern("fills:*")) == 0
    for order in list(broker.orders.values()):
        broker.fill(order.order_id)  # filled while the bot was down
    report = await _run_once(kept, broker, state)
    assert report["missed_fills"] == 2
    report = await _run_once(kept, broker, state)
    assert report["missed_fills"] == 0
    assert len(await state.get_keys_by_pattern("fills:*")) == 2


@pytest.mark.parametrize(("action", "expected"), [("REDUCE_ONLY", "REDUCE_ONLY"), ("HALT", "HALTED")])
async def test_position_mismatch_imposes_the_configured_action_and_survives_restart(
    make_settings: Callable[..., BotSettings],
    broker: FakeBroker,
    state: StateManager,
    action: str,
    expected: str,
) -> None:
    settings = make_settings(PERPS_RECONCILE_MISMATCH_ACTION=action)
    await run_bot(runtime_for(settings, broker, state), once=True, strategy=ScriptedStrategy(buy_on=[1]))
    # lose a fill from state (as if a write had been lost): the book now disagrees with the exchange
    fill_keys = await state.get_keys_by_pattern("fills:*")
    await state.delete_state(fill_keys[0])
    position = await state.get_state(keys.position_key(BTC))
    position["quantity"] = Decimal("0.02")
    await state.set_state(keys.position_key(BTC), position, StateCategory.POSITIONS)

    placed = len(broker.placed)
    summary = await run_bot(
        runtime_for(settings, broker, state), once=True, strategy=ScriptedStrategy(buy_on=[1])
    )
    report = summary.reconciliation
    assert report is not None
    assert report["coherent"] is False and report["trading_state"] == expected
    assert any(m["symbol"] == BTC for m in report["mismatches"])  # type: ignore[index, union-attr]
    assert len(broker.placed) == placed  # no new position while the mismatch stands
    guards = await state.get_state(keys.GUARDS_KEY)
    engine = RiskEngine.restore(settings.risk, guards)
    assert engine.state is TradingState(expected) and ReasonCode.RECONCILE_MISMATCH in engine.reasons


async def test_corrupted_guard_state_starts_halted(
    settings: BotSettings, broker: FakeBroker, state: StateManager
) -> None:
    await state.set_state(keys.GUARDS_KEY, {"version": 99}, StateCategory.GUARDS)
    summary = await run_bot(
        runtime_for(settings, broker, state),
        once=True,
        strategy=ScriptedStrategy(buy_on=[1]),
        metrics=BotMetrics(),
    )
    assert summary.trading_state == "HALTED"
    assert "place_order" not in broker.calls
    assert summary.reconciliation is not None and summary.reconciliation["guard_state_error"]


async def test_adopted_order_without_an_intent_gets_exactly_one_rebuilt_from_the_exchange(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    """An earlier holder sent these with their intents only in an outage journal it never replayed (fenced):
    state has neither order nor intent. Each adopted order gets one intent with the exchange's fields."""
    settings = make_settings(PERPS_SHUTDOWN_ORDER_POLICY="keep")
    broker.rest_orders = True
    resting = await broker.place_order(
        OrderRequest(
            BTC,
            Side.SELL,
            OrderType.LIMIT,
            Decimal("0.02"),
            limit_price=Decimal(60_000),
            client_order_id=ClientOrderId("pb-journaled-rest"),
        )
    )
    broker.rest_orders = False
    broker.base_balances["BTC"] = Decimal(0)  # nothing sold yet: the resting sell moves no balance
    filled = await broker.place_order(_request("pb-journaled-fill"))  # filled at once: DONE in the same run
    broker.calls.clear()

    report = await _run_once(settings, broker, state)

    assert sorted(report["adopted_orders"]) == ["pb-journaled-fill", "pb-journaled-rest"]  # type: ignore[arg-type]
    assert sorted(report["intents_rebuilt"]) == ["pb-journaled-fill", "pb-journaled-rest"]  # type: ignore[arg-type]
    assert "place_order" not in broker.calls and report["coherent"] is True
    assert sorted(await state.get_keys_by_pattern(keys.INTENT_PREFIX + "*")) == [
        keys.intent_key("pb-journaled-fill"),
        keys.intent_key("pb-journaled-rest"),
    ]
    rest = IntentRecord.from_dict(await state.get_state(keys.intent_key("pb-journaled-rest")))
    assert (rest.symbol, rest.side, rest.order_type, rest.quantity, rest.limit_price) == (
        BTC,
        Side.SELL,
        OrderType.LIMIT,
        Decimal("0.02"),
        Decimal(60_000),
    )
    assert (rest.time_in_force, rest.reduce_only) == (resting.time_in_force, resting.reduce_only)
    assert (rest.status, rest.order_id, rest.created_at) == (
        IntentStatus.SUBMITTED,  # its order is open: followed like any submitted order
        resting.order_id,
        resting.created_at,
    )
    assert rest.reason == REBUILT_REASON
    done = IntentRecord.from_dict(await state.get_state(keys.intent_key("pb-journaled-fill")))
    assert (done.status, done.order_id, done.side, done.quantity) == (
        IntentStatus.DONE,  # terminal and booked: finished like every intent of a terminal order
        filled.order_id,
        Side.BUY,
        Decimal("0.01"),
    )
    assert (await state.get_state(keys.order_key("pb-journaled-rest")))["adopted"] is True

    again = await _run_once(settings, broker, state)  # the orders and their intents are known now
    assert again["adopted_orders"] == [] and again["intents_rebuilt"] == []
    assert IntentRecord.from_dict(await state.get_state(keys.intent_key("pb-journaled-rest"))) == rest


async def test_an_existing_intent_is_kept_untouched_when_its_order_is_adopted(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    """The create timed out, the intent was FAILED after the grace window, then the order landed: the order is
    adopted and its stored intent stays as it was -- never replaced by a rebuilt one."""
    settings = make_settings(PERPS_SHUTDOWN_ORDER_POLICY="keep")
    written = datetime.now(UTC) - timedelta(minutes=1)
    failed = IntentRecord.from_request(_request("pb-late"), written).with_status(
        IntentStatus.FAILED, written, reason="not found at the exchange within 30s"
    )
    await state.set_state(keys.intent_key("pb-late"), failed.to_dict(), StateCategory.INTENTS)
    broker.rest_orders = True
    await broker.place_order(_request("pb-late"))  # landed after its intent was FAILED

    report = await _run_once(settings, broker, state)

    assert report["adopted_orders"] == ["pb-late"] and report["intents_rebuilt"] == []
    assert IntentRecord.from_dict(await state.get_state(keys.intent_key("pb-late"))) == failed
    assert (await state.get_state(keys.order_key("pb-late")))["adopted"] is True


def test_tracker_adopt_rebuilds_only_without_an_intent_in_the_same_batch() -> None:
    tracker = OrderTracker(BotMetrics())
    written = IntentRecord.from_request(_request("pb-mine"), NOW)
    tracker.intents[written.client_order_id] = written  # written by this process (execution), PENDING
    tracker.record_intent(
        IntentRecord.from_request(_request("pb-done"), NOW).with_status(IntentStatus.DONE, NOW)
    )
    tracker.batch.take()

    def order(coid: str, n: int) -> Order:
        return Order(
            OrderId(f"o-{n}"), ClientOrderId(coid), BTC, Side.BUY, OrderType.MARKET, OrderStatus.OPEN, QTY
        )

    assert tracker.adopt(order("pb-mine", 1), NOW) is None
    assert tracker.intents[ClientOrderId("pb-mine")].status is IntentStatus.SUBMITTED  # as track() does
    assert tracker.adopt(order("pb-done", 2), NOW) is None  # a final intent (left memory) is kept too
    assert keys.intent_key("pb-done") not in tracker.batch
    rebuilt = tracker.adopt(order("pb-other", 3), NOW)
    assert rebuilt is not None and rebuilt.status is IntentStatus.SUBMITTED and rebuilt.order_id == "o-3"
    assert keys.intent_key("pb-other") in tracker.batch and keys.order_key("pb-other") in tracker.batch
    assert tracker.adopt(order("pb-other", 3), NOW) is None  # once
