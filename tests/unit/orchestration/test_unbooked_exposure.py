"""Every order the tracker follows counts toward exposure and position limits with what it may still move the
booked position by: ``quantity - booked`` while resting, ``filled_quantity - booked`` once terminal.

The 30-minute chaos soak found the gap: a market BUY acknowledged FILLED whose fills could not be listed (HTTP
502) was terminal, so it no longer counted as resting, and its fill was not in the stored position either; the
next cycle's BUY passed the position guard and the exchange position reached twice RISK_MAX_POSITION_SIZE.
These tests run the real ``OrderExecutor`` / ``OrderTracker`` / ``RiskEngine`` on the hand-written FakeBroker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot_v2.config import BotSettings
from bot_v2.domain import OrderRequest, OrderStatus, OrderType, Quote, Side
from bot_v2.errors import ExchangeUnavailableError
from bot_v2.monitoring.events import EventStore
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.execution import ExecutionAction, OrderExecutor
from bot_v2.orchestration.market import unbooked_requests
from bot_v2.orchestration.records import OrderRecord
from bot_v2.orchestration.tracking import OrderTracker
from bot_v2.risk import RiskConfig, RiskEngine, RiskSnapshot
from bot_v2.state import StateManager
from tests.unit.orchestration.fakes import BTC, FakeBroker, product

D = Decimal
NOW = datetime.now(UTC)


@pytest.fixture
def events(settings: BotSettings) -> Iterator[EventStore]:
    store = EventStore(settings.events_path)
    yield store
    store.close()


def _executor(
    broker: FakeBroker, state: StateManager, events: EventStore, max_position: str
) -> OrderExecutor:
    metrics = BotMetrics()
    return OrderExecutor(
        broker=broker,
        state=state,
        risk=RiskEngine(RiskConfig(max_position_size=D(max_position))),
        tracker=OrderTracker(metrics),
        events=events,
        metrics=metrics,
        client_id_prefix="pb-",
    )


def _snapshot(tracker: OrderTracker) -> RiskSnapshot:
    """The cycle's snapshot: the stored (booked) position, every followed order counted as open."""
    mark = D(50_000)
    positions = {s: p.to_position(mark) for s, p in tracker.book.positions.items() if p.quantity != 0}
    return RiskSnapshot(
        equity_usd=D(100_000),
        positions=positions,
        quotes={BTC: Quote(BTC, D(49_999), D(50_001), NOW)},
        products={BTC: product(BTC)},
        symbols=(BTC,),
        open_orders_count=len(tracker.open_orders),
    )


def _buy(quantity: str, order_type: OrderType = OrderType.MARKET) -> OrderRequest:
    limit = D(50_000) if order_type is OrderType.LIMIT else None
    return OrderRequest(BTC, Side.BUY, order_type, D(quantity), limit_price=limit)


async def _submit(executor: OrderExecutor, request: OrderRequest) -> ExecutionAction:
    result = await executor.submit(request, _snapshot(executor.tracker), NOW)
    if result.action is ExecutionAction.DENIED:
        assert result.verdict_text.startswith("max_position_size"), result.verdict_text
    return result.action


async def test_a_filled_order_whose_fills_are_not_booked_counts_until_they_are(
    broker: FakeBroker, state: StateManager, events: EventStore
) -> None:
    """The soak's sequence: BUY acked FILLED, the fills listing fails, the next same-side BUY is refused."""
    executor = _executor(broker, state, events, "0.0025")
    tracker = executor.tracker
    assert await _submit(executor, _buy("0.001")) is ExecutionAction.PLACED
    (first,) = tracker.open_orders
    assert first.status is OrderStatus.FILLED and first.booked_quantity == 0
    broker.fills_error = ExchangeUnavailableError("list fills: HTTP 502")
    with pytest.raises(ExchangeUnavailableError):
        await tracker.sync(broker, NOW)  # the cycle fails: nothing booked, the position stays flat
    assert tracker.book.quantity(BTC) == 0 and tracker.open_orders == [first]

    # stored position 0 + the filled, unbooked 0.001 + 0.002 = 0.003 > 0.0025: refused, never sent
    assert await _submit(executor, _buy("0.002")) is ExecutionAction.DENIED
    assert broker.calls.count("place_order") == 1

    broker.fills_error = None
    synced = await tracker.sync(broker, NOW)
    assert len(synced.new_fills) == 1 and tracker.book.quantity(BTC) == D("0.001")
    assert tracker.open_orders == []  # finished: its 0.001 is in the position now, counted there only once
    # the order's record went into the same batch as its fill, with the booked quantity
    order_key = keys.order_key(first.client_order_id)
    assert order_key in tracker.batch and keys.fill_key(broker.fills[0].trade_id) in tracker.batch
    await tracker.batch.flush(state)
    assert (await state.get_state(order_key))["booked_quantity"] == D("0.001")

    # 0.001 booked + 0.0015 = 0.0025: within the limit (the booked fill is not counted a second time)
    assert await _submit(executor, _buy("0.0015")) is ExecutionAction.PLACED
    assert broker.calls.count("place_order") == 2


async def test_a_partly_booked_resting_order_counts_quantity_minus_booked(
    broker: FakeBroker, state: StateManager, events: EventStore
) -> None:
    broker.rest_orders = True
    executor = _executor(broker, state, events, "0.0025")
    tracker = executor.tracker
    assert await _submit(executor, _buy("0.002", OrderType.LIMIT)) is ExecutionAction.PLACED
    (resting,) = tracker.open_orders
    broker.fill(resting.order_id, D("0.0005"))
    await tracker.sync(broker, NOW)
    (resting,) = tracker.open_orders
    assert resting.status is OrderStatus.OPEN and resting.booked_quantity == D("0.0005")
    assert tracker.book.quantity(BTC) == D("0.0005")
    assert [r.quantity for r in unbooked_requests(tracker.open_orders)] == [D("0.0015")]

    # a second fill the bot has not seen yet changes nothing: the record's quantity - booked covers it
    broker.fill(resting.order_id, D("0.0005"))
    assert [r.quantity for r in unbooked_requests(tracker.open_orders)] == [D("0.0015")]

    # 0.0005 booked + 0.0015 unbooked + 0.0006 = 0.0026 > 0.0025; + 0.0005 = 0.0025 passes
    assert await _submit(executor, _buy("0.0006")) is ExecutionAction.DENIED
    assert await _submit(executor, _buy("0.0005")) is ExecutionAction.PLACED

    # an edit of the resting order takes it out of the count (judged as its new version instead); the 0.0005
    # just placed rests too (a market order here rests until filled: FakeBroker.rest_orders)
    assert [r.quantity for r in unbooked_requests(tracker.open_orders)] == [D("0.0015"), D("0.0005")]
    assert [r.quantity for r in unbooked_requests(tracker.open_orders, exclude=resting.order_id)] == [
        D("0.0005")
    ]


async def test_booked_quantity_survives_a_restart(
    broker: FakeBroker, state: StateManager, events: EventStore
) -> None:
    broker.rest_orders = True
    executor = _executor(broker, state, events, "0.0025")
    tracker = executor.tracker
    await _submit(executor, _buy("0.002", OrderType.LIMIT))
    (resting,) = tracker.open_orders
    broker.fill(resting.order_id, D("0.0005"))
    await tracker.sync(broker, NOW)
    await tracker.batch.flush(state)

    loaded = OrderTracker(BotMetrics())
    await loaded.load(state)
    (record,) = loaded.open_orders
    assert record == tracker.open_orders[0] and record.booked_quantity == D("0.0005")
    assert [r.quantity for r in unbooked_requests(loaded.open_orders)] == [D("0.0015")]
    # following it on: the order refreshed from the exchange keeps what is booked, the next fill adds to it
    broker.fill(record.order_id, D("0.0005"))
    await loaded.sync(broker, NOW)
    (record,) = loaded.open_orders
    assert record.filled_quantity == D("0.001") and record.booked_quantity == D("0.001")
    assert loaded.book.quantity(BTC) == D("0.001")
    assert [r.quantity for r in unbooked_requests(loaded.open_orders)] == [D("0.001")]


def test_an_order_record_round_trips_its_booked_quantity_and_reads_an_older_one_as_unbooked() -> None:
    record = OrderRecord(
        order_id="o-1",  # type: ignore[arg-type]
        client_order_id="pb-1",  # type: ignore[arg-type]
        symbol=BTC,
        side=Side.BUY,
        status=OrderStatus.FILLED,
        quantity=D("0.002"),
        filled_quantity=D("0.002"),
        average_fill_price=D(50_000),
        total_fees=D(0),
        updated_at=NOW,
        booked_quantity=D("0.0005"),
    )
    assert OrderRecord.from_dict(record.to_dict()) == record
    assert record.unbooked_quantity == D("0.0015")
    older = record.to_dict()
    del older["booked_quantity"]  # written before the field existed: all of it counts (conservative)
    assert OrderRecord.from_dict(older).booked_quantity == 0
    assert OrderRecord.from_dict(older).unbooked_quantity == D("0.002")
