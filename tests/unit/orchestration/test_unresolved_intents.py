"""Intents the exchange did not answer: UNKNOWN within the grace window, adopted when found, FAILED after it;
no new order on their symbol meanwhile; fills asked for in bounded chunks of order ids."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot_v2.config import BotSettings
from bot_v2.domain import ClientOrderId, OrderId, OrderRequest, OrderType, Position, Side
from bot_v2.monitoring.events import EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import BotRunSummary, run_bot
from bot_v2.orchestration.records import IntentRecord, IntentStatus, OrderRecord
from bot_v2.orchestration.tracking import FILLS_CHUNK, OrderTracker, fills_of
from bot_v2.state import StateCategory, StateManager
from bot_v2.strategies import Decision, MarketView
from tests.unit.orchestration.conftest import runtime_for
from tests.unit.orchestration.fakes import BTC, FakeBroker

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
QTY = Decimal("0.01")


class BuyWhenFlat:
    """Buys ``QTY`` whenever it holds nothing; ``hooks[n]`` runs on its n-th call (a test's clock hand)."""

    name = "buy_when_flat"

    def __init__(self, hooks: dict[int, Callable[[], object]] | None = None) -> None:
        self.hooks = hooks or {}
        self.calls = 0

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        self.calls += 1
        hook = self.hooks.get(self.calls)
        if hook is not None:
            hook()
        if position is None or position.quantity == 0:
            return Decision.buy(view.symbol, QTY, "flat")
        return Decision.hold(view.symbol, "long")


def _request(cid: str) -> OrderRequest:
    return OrderRequest(BTC, Side.BUY, OrderType.MARKET, QTY, client_order_id=ClientOrderId(cid))


async def _run(
    settings: BotSettings, broker: FakeBroker, state: StateManager, **kwargs: object
) -> BotRunSummary:
    return await run_bot(runtime_for(settings, broker, state), metrics=BotMetrics(), **kwargs)  # type: ignore[arg-type]


# --- the tracker, on an explicit clock ------------------------------------------------------------------------


async def test_not_found_is_unknown_within_the_grace_window_then_failed() -> None:
    broker = FakeBroker()
    tracker = OrderTracker(BotMetrics(), intent_grace_seconds=30)
    tracker.record_intent(IntentRecord.from_request(_request("pb-lost"), T0))

    first = await tracker.resolve_pending(broker, T0 + timedelta(seconds=10))
    assert [(r.outcome, r.symbol) for r in first] == [("unknown", BTC)]
    blocking = tracker.unresolved_for(BTC)
    assert blocking is not None and blocking.status is IntentStatus.UNKNOWN
    assert await tracker.resolve_pending(broker, T0 + timedelta(seconds=29)) == []  # no change, no event
    assert tracker.unresolved_for(BTC) is not None

    last = await tracker.resolve_pending(broker, T0 + timedelta(seconds=31))
    assert [r.outcome for r in last] == ["failed"] and "30s" in (last[0].detail or "")
    assert tracker.unresolved_for(BTC) is None and tracker.unresolved_intents == []
    assert broker.calls.count("place_order") == 0  # never resubmitted
    queued = {w.key: w.value for w in tracker.batch.take()}
    stored = IntentRecord.from_dict(queued[keys.intent_key("pb-lost")])
    assert stored.status is IntentStatus.FAILED


async def test_an_order_that_lands_within_the_grace_window_is_adopted() -> None:
    broker = FakeBroker()
    broker.lose_acks, broker.land_late = 1, True
    tracker = OrderTracker(BotMetrics(), intent_grace_seconds=30)
    tracker.record_intent(IntentRecord.from_request(_request("pb-late"), T0))
    with pytest.raises(Exception, match="timed out"):
        await broker.place_order(_request("pb-late"))

    assert [r.outcome for r in await tracker.resolve_pending(broker, T0 + timedelta(seconds=5))] == [
        "unknown"
    ]
    (landed,) = broker.land_pending()
    found = await tracker.resolve_pending(broker, T0 + timedelta(seconds=25))
    assert [(r.outcome, r.order_id) for r in found] == [("adopted", landed.order_id)]
    assert tracker.unresolved_for(BTC) is None
    assert tracker.intents[ClientOrderId("pb-late")].status is IntentStatus.SUBMITTED
    sync = await tracker.sync(broker, T0 + timedelta(seconds=25))
    assert [f.order_id for f in sync.new_fills] == [landed.order_id]
    assert tracker.book.quantity(BTC) == QTY and broker.calls.count("place_order") == 1


# --- the loop -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("grace", "orders"), [("3600", 1), ("0", 2)])
async def test_a_lost_ack_blocks_the_symbol_until_the_order_is_found_or_the_window_ends(
    make_settings: Callable[..., BotSettings],
    broker: FakeBroker,
    state: StateManager,
    grace: str,
    orders: int,
) -> None:
    settings = make_settings(
        PERPS_SYMBOLS="BTC-USD", PERPS_INTENT_GRACE_SECONDS=grace, PERPS_RECONCILE_EVERY_CYCLES="4"
    )
    broker.lose_acks, broker.land_late = 1, True
    # the lost order reaches the exchange during the third cycle (after that cycle's lookup)
    strategy = BuyWhenFlat(hooks={3: broker.land_pending})
    summary = await _run(settings, broker, state, max_cycles=5, strategy=strategy)

    assert summary.errors == [] and summary.cycles == 5
    assert len(broker.orders) == orders
    events = read_events(settings.events_path)
    skipped = [e for e in events if e["type"] == "decision" and "skipped" in e]
    unknown = [e for e in events if e["type"] == EventType.INTENT_UNKNOWN]
    assert len(unknown) == 1 and unknown[0]["symbol"] == BTC
    if orders == 1:
        # grace window: cycles 2 and 3 wanted to buy and were held back; cycle 4 found and adopted the order
        assert len(skipped) == 2 and all(e["skipped"].startswith("unresolved intent pb-") for e in skipped)
        assert broker.calls.count("place_order") == 1
        (intent,) = (await state.batch_get_state(await state.get_keys_by_pattern("intents:*"))).values()
        assert intent["status"] == "DONE"
        resolved = [e for e in read_events(settings.events_path, EventType.RECOVERY)]
        assert [e["outcome"] for e in resolved if e["kind"] == "intent_resolved"] == ["adopted"]
    else:
        # no grace: FAILED at the first lookup, the symbol trades again (the old behaviour, now opt-in); the
        # late order is not lost all the same: discovery by client-id prefix (cycle 4) adopts it
        assert skipped == [] and broker.calls.count("place_order") == 2
        assert len(read_events(settings.events_path, EventType.INTENT_FAILED)) == 1
        periodic = [
            e
            for e in read_events(settings.events_path, EventType.RECONCILIATION)
            if e["trigger"] == "periodic"
        ]
        assert [len(e["adopted_orders"]) for e in periodic] == [1] and periodic[0]["missed_fills"] == 1
    position = await state.get_state(keys.position_key(BTC))
    assert position["quantity"] == QTY * orders == sum(f.quantity for f in broker.fills)


async def test_a_restarted_bot_keeps_the_symbol_blocked_and_says_why(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD", PERPS_INTENT_GRACE_SECONDS="3600")
    broker.lose_acks, broker.land_late = 1, True
    first = await _run(settings, broker, state, once=True, strategy=BuyWhenFlat())
    assert [r.action for r in first.rows] == ["unknown"]

    second = await _run(settings, broker, state, once=True, strategy=BuyWhenFlat())
    (row,) = second.rows
    assert row.action == "skipped" and row.reason.startswith("unresolved intent pb-")
    assert row.reason.endswith("(UNKNOWN)") and row.decision == "BUY 0.01"

    broker.land_pending()
    third = await _run(settings, broker, state, once=True, strategy=BuyWhenFlat())
    assert third.reconciliation is not None
    assert [r["outcome"] for r in third.reconciliation["resolved_intents"]] == ["adopted"]  # type: ignore[index, union-attr]
    assert third.rows[0].action == "skipped" and third.rows[0].decision == "HOLD"
    assert third.rows[0].position == QTY
    assert broker.calls.count("place_order") == 1 and len(broker.orders) == 1


# --- fills in bounded chunks ------------------------------------------------------------------------------------


async def test_fills_are_asked_for_at_most_fills_chunk_order_ids_at_a_time() -> None:
    broker = FakeBroker()
    broker.rest_orders = True
    tracker = OrderTracker(BotMetrics())
    for i in range(2 * FILLS_CHUNK + 20):
        tracker.track(await broker.place_order(_request(f"pb-{i}")), T0)
    for order_id in list(broker.orders):
        broker.fill(order_id)

    sync = await tracker.sync(broker, T0)
    assert len(sync.new_fills) == 2 * FILLS_CHUNK + 20
    assert [len(ids or []) for ids in broker.fill_calls] == [FILLS_CHUNK, FILLS_CHUNK, 20]
    assert await fills_of(broker, []) == []


async def test_start_up_asks_for_the_fills_of_every_known_order_in_chunks(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD")
    count = 2 * FILLS_CHUNK + 5
    for i in range(count):
        order = await broker.place_order(_request(f"old-{i}"))  # filled, outside the bot's prefix window
        record = OrderRecord.from_order(order, T0)
        await state.set_state(keys.order_key(order.client_order_id), record.to_dict(), StateCategory.ORDERS)
    summary = await _run(settings, broker, state, once=True, strategy=BuyWhenFlat(hooks={}))
    assert summary.errors == []
    asked = [ids for ids in broker.fill_calls if ids is not None]
    assert asked and max(len(ids) for ids in asked) <= FILLS_CHUNK
    known = {OrderId(o) for o in broker.orders}
    assert {i for ids in asked for i in ids} >= known
