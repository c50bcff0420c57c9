"""The order path: guard before broker, intent durable before the exchange call, failures classified."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot_v2.config import BotSettings
from bot_v2.domain import OrderRequest, OrderType, Side, Symbol
from bot_v2.errors import (
    AuthenticationError,
    ExchangeUnavailableError,
    InsufficientFundsError,
    LeaseLostError,
)
from bot_v2.monitoring.events import EventStore
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.execution import ExecutionAction, OrderExecutor
from bot_v2.orchestration.tracking import OrderTracker
from bot_v2.risk import RiskConfig, RiskEngine, RiskSnapshot
from bot_v2.state import StateManager
from tests.unit.orchestration.fakes import BTC, ETH, FakeBroker, product

NOW = datetime.now(UTC)
REQUEST = OrderRequest(BTC, Side.BUY, OrderType.MARKET, Decimal("0.01"))


def _snapshot(broker: FakeBroker) -> RiskSnapshot:
    from bot_v2.domain import Quote

    quote = Quote(BTC, Decimal(49_999), Decimal(50_001), NOW)
    return RiskSnapshot(
        equity_usd=Decimal(100_000), quotes={BTC: quote}, products={BTC: product(BTC)}, symbols=(BTC,)
    )


@pytest.fixture
def events(settings: BotSettings) -> Iterator[EventStore]:
    store = EventStore(settings.events_path)
    yield store
    store.close()


def _executor(broker: FakeBroker, state: StateManager, events: EventStore, risk: RiskEngine) -> OrderExecutor:
    metrics = BotMetrics()
    return OrderExecutor(
        broker=broker,
        state=state,
        risk=risk,
        tracker=OrderTracker(metrics),
        events=events,
        metrics=metrics,
        client_id_prefix="pb-",
    )


async def test_intent_is_durable_before_the_exchange_is_called(
    broker: FakeBroker, state: StateManager, settings: BotSettings, events: EventStore
) -> None:
    seen: list[object] = []

    async def check_intent(request: OrderRequest) -> None:
        assert request.client_order_id is not None
        seen.append(await state.get_state(keys.intent_key(request.client_order_id)))

    broker.on_place = check_intent
    executor = _executor(broker, state, events, RiskEngine(settings.risk))
    result = await executor.submit(REQUEST, _snapshot(broker), NOW)
    assert result.action is ExecutionAction.PLACED
    assert len(seen) == 1 and isinstance(seen[0], dict) and seen[0]["status"] == "PENDING"
    assert result.request.client_order_id is not None
    assert result.request.client_order_id.startswith(settings.client_id_prefix)


async def test_denied_order_never_reaches_the_broker_or_state(
    broker: FakeBroker, state: StateManager, settings: BotSettings, events: EventStore
) -> None:
    risk = RiskEngine(RiskConfig(kill_switch_enabled=True))
    risk.apply_controls(False, False, NOW)
    executor = _executor(broker, state, events, risk)
    result = await executor.submit(REQUEST, _snapshot(broker), NOW)
    assert result.action is ExecutionAction.DENIED and result.verdict_text.startswith("trading_state")
    assert "place_order" not in broker.calls
    assert await state.get_keys_by_pattern("intents:*") == []


@pytest.mark.parametrize(
    ("error", "action", "status"),
    [
        (InsufficientFundsError("no money", "INSUFFICIENT_FUND"), ExecutionAction.REJECTED, "FAILED"),
        (ExchangeUnavailableError("timeout"), ExecutionAction.UNKNOWN, "UNKNOWN"),
        # the lease gate refused it before sending: nothing to look up at the exchange
        (LeaseLostError("place_order not sent: lease nearly expired"), ExecutionAction.REJECTED, "FAILED"),
    ],
)
async def test_exchange_failures_are_classified(
    broker: FakeBroker,
    state: StateManager,
    settings: BotSettings,
    events: EventStore,
    error: Exception,
    action: ExecutionAction,
    status: str,
) -> None:
    broker.place_error = error
    executor = _executor(broker, state, events, RiskEngine(settings.risk))
    result = await executor.submit(REQUEST, _snapshot(broker), NOW)
    assert result.action is action
    assert result.request.client_order_id is not None
    await executor.tracker.batch.flush(state)
    intent = await state.get_state(keys.intent_key(result.request.client_order_id))
    assert intent["status"] == status


async def test_unexpected_exchange_error_propagates_to_the_policy(
    broker: FakeBroker, state: StateManager, settings: BotSettings, events: EventStore
) -> None:
    broker.place_error = AuthenticationError("401")
    executor = _executor(broker, state, events, RiskEngine(settings.risk))
    with pytest.raises(AuthenticationError):
        await executor.submit(REQUEST, _snapshot(broker), NOW)


async def test_unknown_outcome_is_resolved_by_client_id_without_resubmitting(
    broker: FakeBroker, state: StateManager, settings: BotSettings, events: EventStore
) -> None:
    reached: list[str] = []

    async def reach_then_time_out(request: OrderRequest) -> None:
        if not reached:
            reached.append("once")
            broker.place_error = None
            await broker.place_order(request)  # the exchange has it...
            broker.place_error = ExchangeUnavailableError("read timeout")  # ...but the answer is lost

    broker.on_place = reach_then_time_out
    executor = _executor(broker, state, events, RiskEngine(settings.risk))
    result = await executor.submit(REQUEST, _snapshot(broker), NOW)
    assert result.action is ExecutionAction.UNKNOWN
    broker.on_place = None
    placed_before = len(broker.placed)
    resolutions = await executor.tracker.resolve_pending(broker, NOW)
    assert [r.outcome for r in resolutions] == ["adopted"]
    assert len(broker.placed) == placed_before == 1


def test_new_client_order_ids_are_unique_and_prefixed(make_settings: Callable[..., BotSettings]) -> None:
    from bot_v2.orchestration.execution import new_client_order_id

    ids = {new_client_order_id("pb-") for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("pb-") for i in ids)


# --- one cycle, several orders ------------------------------------------------------------------------------


def _two_symbol_snapshot() -> RiskSnapshot:
    from bot_v2.domain import Quote

    quotes = {
        BTC: Quote(BTC, Decimal(49_999), Decimal(50_001), NOW),
        ETH: Quote(ETH, Decimal(2_999), Decimal(3_001), NOW),
    }
    return RiskSnapshot(
        equity_usd=Decimal(100_000),
        quotes=quotes,
        products={BTC: product(BTC), ETH: product(ETH)},
        symbols=(BTC, ETH),
    )


def _buy(symbol: Symbol, quantity: str) -> OrderRequest:
    return OrderRequest(symbol, Side.BUY, OrderType.MARKET, Decimal(quantity))


async def test_every_intent_of_the_batch_is_durable_before_the_first_exchange_call(
    broker: FakeBroker, state: StateManager, settings: BotSettings, events: EventStore
) -> None:
    durable_at_first_call: list[list[str]] = []

    async def check_intents(request: OrderRequest) -> None:
        if not durable_at_first_call:
            found = await state.get_keys_by_pattern("intents:*")
            durable_at_first_call.append(sorted(found))

    broker.on_place = check_intents
    executor = _executor(broker, state, events, RiskEngine(settings.risk))
    results = await executor.submit_all([_buy(BTC, "0.01"), _buy(ETH, "0.1")], _two_symbol_snapshot(), NOW)
    assert [r.action for r in results] == [ExecutionAction.PLACED, ExecutionAction.PLACED]
    assert len(durable_at_first_call[0]) == 2
    assert {r.request.symbol for r in results} == {BTC, ETH}  # results keep the request order
    assert results[0].request.symbol == BTC


async def test_the_second_order_is_judged_with_the_first_orders_exposure(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager, events: EventStore
) -> None:
    # 0.1 BTC ~ 5000 USD fits under 5200; 0.1 ETH ~ 300 USD on top of it does not
    settings = make_settings(RISK_MAX_TOTAL_EXPOSURE_USD="5200", RISK_MAX_NOTIONAL_PER_SYMBOL_USD="none")
    executor = _executor(broker, state, events, RiskEngine(settings.risk))
    results = await executor.submit_all([_buy(BTC, "0.1"), _buy(ETH, "0.1")], _two_symbol_snapshot(), NOW)
    assert [r.action for r in results] == [ExecutionAction.PLACED, ExecutionAction.DENIED]
    assert results[1].verdict_text.startswith("max_total_exposure")
    assert len(broker.placed) == 1


async def test_the_order_rate_counts_orders_of_the_same_cycle(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager, events: EventStore
) -> None:
    settings = make_settings(RISK_MAX_ORDERS_PER_MINUTE="1")
    executor = _executor(broker, state, events, RiskEngine(settings.risk))
    results = await executor.submit_all([_buy(BTC, "0.01"), _buy(ETH, "0.01")], _two_symbol_snapshot(), NOW)
    assert [r.action for r in results] == [ExecutionAction.PLACED, ExecutionAction.DENIED]
    assert results[1].verdict_text.startswith("order_rate")


async def test_an_unexpected_error_is_raised_after_the_other_orders_are_booked(
    broker: FakeBroker, state: StateManager, settings: BotSettings, events: EventStore
) -> None:
    async def fail_eth(request: OrderRequest) -> None:
        broker.place_error = AuthenticationError("401") if request.symbol == ETH else None

    broker.on_place = fail_eth
    executor = _executor(broker, state, events, RiskEngine(settings.risk))
    with pytest.raises(AuthenticationError):
        await executor.submit_all([_buy(ETH, "0.01"), _buy(BTC, "0.01")], _two_symbol_snapshot(), NOW)
    tracked = {o.symbol for o in executor.tracker.open_orders}
    assert tracked == {BTC}  # the acknowledged order is followed; the other intent stays PENDING
    assert [i.symbol for i in executor.tracker.pending_intents] == [ETH]


def test_next_order_is_judged_on_the_worst_case_of_earlier_orders() -> None:
    from bot_v2.domain import Position
    from bot_v2.orchestration.market import snapshot_for_next

    base = _two_symbol_snapshot()
    grown = snapshot_for_next(base, [_buy(BTC, "0.1")], _buy(ETH, "1"))
    assert grown.position_quantity(BTC) == Decimal("0.1") and grown.open_orders_count == 1
    assert grown.total_exposure_usd(exclude=ETH) == Decimal("0.1") * Decimal(50_000)
    long = RiskSnapshot(
        equity_usd=base.equity_usd,
        positions={BTC: Position(BTC, Decimal(1), Decimal(40_000))},
        quotes=base.quotes,
        products=base.products,
        symbols=base.symbols,
    )
    sell = OrderRequest(BTC, Side.SELL, OrderType.MARKET, Decimal("0.5"))
    # a reduction is not credited for an order on another symbol (it may not fill)...
    assert snapshot_for_next(long, [sell], _buy(ETH, "1")).position_quantity(BTC) == Decimal(1)
    # ...nor for a buy of the same symbol, but a further sell is judged as if it had filled
    assert snapshot_for_next(long, [sell], _buy(BTC, "1")).position_quantity(BTC) == Decimal(1)
    further = OrderRequest(BTC, Side.SELL, OrderType.MARKET, Decimal("2"))
    assert snapshot_for_next(long, [sell], further).position_quantity(BTC) == Decimal("0.5")
