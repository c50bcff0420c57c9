"""run_bot end to end on a FakeBroker and the embedded StateManager."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from bot_v2.config import BotSettings
from bot_v2.monitoring.events import EventType, read_events
from bot_v2.monitoring.health import read_health
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import BotRunSummary, load_trading_state, run_bot
from bot_v2.orchestration.controls import set_operator_control
from bot_v2.orchestration.wiring import Runtime
from bot_v2.state import StateManager
from tests.helpers import eventually_async
from tests.unit.orchestration.conftest import runtime_for
from tests.unit.orchestration.fakes import BTC, ETH, CountingState, FakeBroker, ScriptedStrategy


async def test_once_places_books_and_reports(
    runtime: Runtime, broker: FakeBroker, state: StateManager
) -> None:
    summary = await run_bot(runtime, once=True, strategy=ScriptedStrategy(buy_on=[1]), metrics=BotMetrics())

    assert isinstance(summary, BotRunSummary)
    assert summary.cycles == 1 and summary.errors == [] and summary.trading_state == "ACTIVE"
    assert summary.orders_placed == 2 and summary.fills == 2
    rows = {r.symbol: r for r in summary.rows}
    assert rows[BTC].action == "placed" and rows[BTC].verdict == "pass"
    assert rows[BTC].position == Decimal("0.01") and rows[BTC].order_id is not None
    assert all(cid.startswith(runtime.settings.client_id_prefix) for cid in broker.client_ids())
    position = await state.get_state(keys.position_key(BTC))
    assert position["quantity"] == Decimal("0.01")
    fills = await state.get_keys_by_pattern("fills:*")
    assert len(fills) == 2
    intents = await state.batch_get_state(await state.get_keys_by_pattern("intents:*"))
    assert {v["status"] for v in intents.values()} == {"DONE"}
    # clean exit: the running marker is gone, the safety record is there
    assert await state.get_state(keys.RUNNING_KEY) is None
    assert (await load_trading_state(runtime)) is not None
    types = [e["type"] for e in read_events(runtime.settings.events_path)]
    for expected in (
        "bot_started",
        "reconciliation",
        "decision",
        "order_intent",
        "order_placed",
        "fill",
        "bot_stopped",
    ):
        assert expected in types
    health = read_health(runtime.settings.health_path)
    assert health["trading_state"] == "ACTIVE" and health["message"] == "stopped"


async def test_each_cycle_flushes_state_in_one_batch(
    settings: BotSettings, broker: FakeBroker, state: StateManager
) -> None:
    counting = CountingState(state)
    summary = await run_bot(
        runtime_for(settings, broker, counting), max_cycles=3, strategy=ScriptedStrategy(buy_on=[2])
    )
    assert summary.cycles == 3
    # one batch for reconciliation, one per cycle, one at shutdown -- plus, in the cycle that trades, ONE
    # batch holding every intent of that cycle, written before the exchange is called
    assert len(counting.batch_writes) == 1 + 3 + 1 + 1
    intents, cycle_two = counting.batch_writes[2], counting.batch_writes[3]
    assert len(intents) == 2 and all(k.startswith("intents:") for k in intents)
    assert any(k.startswith("fills:") for k in cycle_two) and "positions:BTC-USD" in cycle_two
    assert "guards:risk" in cycle_two and "safety:mode" in cycle_two
    assert counting.set_calls == [keys.LAST_RUN_KEY]


async def test_kill_switch_reaches_a_running_bot(
    runtime: Runtime, broker: FakeBroker, state: StateManager
) -> None:
    stop = asyncio.Event()
    strategy = ScriptedStrategy(buy_on=range(1, 10_000))
    task = asyncio.create_task(run_bot(runtime, stop_event=stop, strategy=strategy, metrics=BotMetrics()))
    try:
        await eventually_async(_has_orders(broker), timeout=10)
        await set_operator_control(state, kill_switch=True, reduce_only=None, source="test")

        async def halted() -> bool:
            safety = await state.get_state(keys.SAFETY_KEY)
            return safety is not None and safety["trading_state"] == "HALTED"

        await eventually_async(halted, timeout=10)
        placed = len(broker.placed)
        calls_before = sum(strategy.calls.values())
        await eventually_async(
            lambda: _async_true(sum(strategy.calls.values()) >= calls_before + 4), timeout=10
        )
        assert len(broker.placed) == placed  # no new orders while HALTED
    finally:
        stop.set()
        summary = await task
    assert summary.trading_state == "HALTED"
    transitions = read_events(runtime.settings.events_path, EventType.STATE_TRANSITION)
    assert any(t["to_state"] == "HALTED" and t["reason"] == "KILL_SWITCH" for t in transitions)


async def test_corrupted_control_key_is_rejected_and_last_good_kept(
    runtime: Runtime, broker: FakeBroker, state: StateManager
) -> None:
    from bot_v2.state import StateCategory

    await set_operator_control(state, kill_switch=False, reduce_only=True, source="test")
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_bot(runtime, stop_event=stop, strategy=ScriptedStrategy(buy_on=[]), metrics=BotMetrics())
    )
    try:

        async def reduce_only() -> bool:
            safety = await state.get_state(keys.SAFETY_KEY)
            return safety is not None and safety["trading_state"] == "REDUCE_ONLY"

        await eventually_async(reduce_only, timeout=10)
        bad = {
            "kill_switch": "yes",
            "reduce_only": False,
            "updated_at": "2026-01-01T00:00:00+00:00",
            "source": "vi",
        }
        await state.set_state(keys.CONTROL_KEY, bad, StateCategory.CONTROL)
        await eventually_async(
            lambda: _async_true(bool(read_events(runtime.settings.events_path, EventType.CONTROL_REJECTED))),
            timeout=10,
        )
        assert await reduce_only()  # the last good value is still in force
    finally:
        stop.set()
        await task
    rejected = read_events(runtime.settings.events_path, EventType.CONTROL_REJECTED)
    assert len(rejected) == 1 and "kill_switch" in rejected[0]["error"]


async def test_guard_denial_means_no_broker_call(
    make_settings: Callable[..., BotSettings], broker: FakeBroker
) -> None:
    settings = make_settings(RISK_MAX_NOTIONAL_PER_SYMBOL_USD="10")  # 0.01 BTC is worth ~500 USD
    state = await StateManager.create(settings.state)
    try:
        summary = await run_bot(
            runtime_for(settings, broker, state), once=True, strategy=ScriptedStrategy(buy_on=[1])
        )
    finally:
        await state.close()
    assert "place_order" not in broker.calls
    assert all(row.action == "denied" for row in summary.rows)
    assert all(row.verdict.startswith("max_notional_per_symbol") for row in summary.rows)


async def test_retryable_error_keeps_the_loop_and_halt_error_stops_it(
    runtime: Runtime, broker: FakeBroker
) -> None:
    from bot_v2.errors import AuthenticationError, ExchangeUnavailableError

    failures = iter([ExchangeUnavailableError("sim down"), AuthenticationError("401")])
    original = broker.get_quotes

    async def flaky(symbols: object) -> object:
        error = next(failures, None)
        if error is not None:
            raise error
        return await original(symbols)  # type: ignore[arg-type]

    broker.get_quotes = flaky  # type: ignore[method-assign]
    summary = await run_bot(runtime, max_cycles=5, strategy=ScriptedStrategy(buy_on=[]), metrics=BotMetrics())
    assert summary.cycles == 2 and summary.halted and summary.stopped_by == "halt"
    assert summary.trading_state == "HALTED"
    assert "ExchangeUnavailableError" in summary.errors[0] and "AuthenticationError" in summary.errors[1]
    policies = [e["policy"] for e in read_events(runtime.settings.events_path, EventType.CYCLE_ERROR)]
    assert policies == ["retry", "halt"]


async def test_unreadable_exchange_answers_are_retried_until_they_persist(
    runtime: Runtime, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A garbled answer (ExchangeProtocolError) is retried like an outage; only garbage that lasts
    PROTOCOL_ERROR_CYCLES cycles AND PROTOCOL_ERROR_SECONDS halts."""
    from bot_v2.errors import ExchangeProtocolError
    from bot_v2.orchestration import bot

    monkeypatch.setattr(bot, "PROTOCOL_ERROR_SECONDS", 0.0)  # a public tunable: cycles decide here
    failures = iter(
        [ExchangeProtocolError("garbled 1"), ExchangeProtocolError("garbled 2"), None]  # a burst, then fine
        + [ExchangeProtocolError(f"api changed {i}") for i in range(5)]  # persists
    )
    original = broker.get_quotes

    async def garbled(symbols: object) -> object:
        error = next(failures, None)
        if error is not None:
            raise error
        return await original(symbols)  # type: ignore[arg-type]

    broker.get_quotes = garbled  # type: ignore[method-assign]
    summary = await run_bot(runtime, max_cycles=9, strategy=ScriptedStrategy(buy_on=[]), metrics=BotMetrics())
    assert summary.halted and summary.cycles == 6  # 2 retried, 1 fine, 2 retried, the 3rd in a row halts
    policies = [e["policy"] for e in read_events(runtime.settings.events_path, EventType.CYCLE_ERROR)]
    assert policies == ["retry", "retry", "retry", "retry", "halt"]


async def test_shutdown_cancels_open_orders_per_policy(
    make_settings: Callable[..., BotSettings], broker: FakeBroker
) -> None:
    broker.rest_orders = True
    for policy, expect_cancel in (("cancel", True), ("keep", False)):
        settings = make_settings(PERPS_SHUTDOWN_ORDER_POLICY=policy, PERPS_BOT_ID=f"b-{policy}")
        state = await StateManager.create(settings.state)
        try:
            await run_bot(
                runtime_for(settings, broker, state), once=True, strategy=ScriptedStrategy(buy_on=[1])
            )
        finally:
            await state.close()
        cancelled = [o for o in broker.orders.values() if o.status.value == "CANCELLED"]
        assert bool(cancelled) is expect_cancel
        for order in list(broker.orders.values()):
            broker.orders.pop(order.order_id)


def _has_orders(broker: FakeBroker) -> Callable[[], object]:
    async def check() -> bool:
        return len(broker.placed) >= 2

    return check


async def _async_true(value: bool) -> bool:
    return value


_ = ETH


async def _trip_reconcile_mismatch(runtime: Runtime, state: StateManager) -> None:
    """Leave state with a position the exchange never filled: the next start raises RECONCILE_MISMATCH."""
    from bot_v2.orchestration.ledger import PositionRecord
    from bot_v2.state import StateCategory

    record = PositionRecord(BTC, quantity=Decimal("0.02"), entry_price=Decimal(50_000))
    await state.set_state(keys.position_key(BTC), record.to_dict(), StateCategory.POSITIONS)


async def test_clear_reason_reaches_a_running_bot(
    runtime: Runtime, broker: FakeBroker, state: StateManager
) -> None:
    from bot_v2.orchestration.controls import request_reason_clear
    from bot_v2.risk import ReasonCode

    await _trip_reconcile_mismatch(runtime, state)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_bot(runtime, stop_event=stop, strategy=ScriptedStrategy(buy_on=[]), metrics=BotMetrics())
    )
    try:
        await eventually_async(_trading_state_is(state, "REDUCE_ONLY"), timeout=10)
        request, _ = await request_reason_clear(state, ReasonCode.RECONCILE_MISMATCH, source="test")
        await eventually_async(_trading_state_is(state, "ACTIVE"), timeout=10)
    finally:
        stop.set()
        summary = await task
    assert summary.trading_state == "ACTIVE"
    applied = [
        e
        for e in read_events(runtime.settings.events_path, EventType.CONTROL_APPLIED)
        if "clear_request" in e
    ]
    assert [(e["clear_request"]["request_id"], e["outcome"]) for e in applied] == [
        (request.request_id, "cleared")
    ]
    transitions = read_events(runtime.settings.events_path, EventType.STATE_TRANSITION)
    assert any(t["reason"] == "RECONCILE_MISMATCH" and t["cleared"] for t in transitions)
    assert (await state.get_state(keys.CLEAR_ACK_KEY))["last_request_id"] == request.request_id


async def test_clear_requested_while_stopped_applies_before_the_first_order_and_only_once(
    runtime: Runtime, broker: FakeBroker, state: StateManager
) -> None:
    from bot_v2.orchestration.controls import request_reason_clear
    from bot_v2.risk import ReasonCode

    await _trip_reconcile_mismatch(runtime, state)
    first = await run_bot(runtime, once=True, strategy=ScriptedStrategy(buy_on=[1]), metrics=BotMetrics())
    assert first.trading_state == "REDUCE_ONLY" and first.orders_placed == 0
    await request_reason_clear(state, ReasonCode.RECONCILE_MISMATCH, source="test")
    # the mismatch is still there at the next start (same trip), the request clears it before cycle 1 trades
    second = await run_bot(runtime, once=True, strategy=ScriptedStrategy(buy_on=[1]), metrics=BotMetrics())
    assert second.orders_placed == 2 and second.trading_state == "ACTIVE"
    # the BTC book now disagrees again: a NEW trip at the next start is not lifted by the old request
    await _trip_reconcile_mismatch(runtime, state)
    third = await run_bot(runtime, once=True, strategy=ScriptedStrategy(buy_on=[1]), metrics=BotMetrics())
    assert third.trading_state == "REDUCE_ONLY"


def _trading_state_is(state: StateManager, expected: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        safety = await state.get_state(keys.SAFETY_KEY)
        return safety is not None and safety["trading_state"] == expected

    return check
