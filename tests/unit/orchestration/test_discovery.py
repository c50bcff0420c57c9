"""Order discovery by client-id prefix (start, periodic, operator), the watermark, the spot balance check."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from bot_v2.config import BotSettings
from bot_v2.domain import ClientOrderId, OrderRequest, OrderType, Position, Side
from bot_v2.monitoring.events import EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import BotRunSummary, run_bot
from bot_v2.orchestration.controls import parse_operator_control, request_reconcile, set_operator_control
from bot_v2.orchestration.reconcile import parse_watermark
from bot_v2.orchestration.tracking import LOOKUP_MARGIN
from bot_v2.risk import ReasonCode, RiskEngine
from bot_v2.state import StateCategory, StateManager
from bot_v2.strategies import Decision, MarketView
from tests.helpers import eventually_async
from tests.unit.orchestration.conftest import runtime_for
from tests.unit.orchestration.fakes import BTC, FakeBroker, ScriptedStrategy

QTY = Decimal("0.01")


class HoldWithHooks:
    """Holds; ``hooks[n]`` runs on its n-th call (how a test acts between cycles without sleeping)."""

    name = "hold_with_hooks"

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
        return Decision.hold(view.symbol, "hold")


def _land(broker: FakeBroker, client_id: str) -> Callable[[], object]:
    """An order reaches the exchange that the bot's state never heard of (a create that timed out)."""

    def land() -> object:
        request = OrderRequest(BTC, Side.BUY, OrderType.MARKET, QTY, client_order_id=ClientOrderId(client_id))
        broker.pending_landings.append(request)
        return broker.land_pending()

    return land


async def _run(
    settings: BotSettings, broker: FakeBroker, state: StateManager, **kwargs: object
) -> BotRunSummary:
    return await run_bot(runtime_for(settings, broker, state), metrics=BotMetrics(), **kwargs)  # type: ignore[arg-type]


def _reconciliations(settings: BotSettings, trigger: str) -> list[dict[str, object]]:
    return [e for e in read_events(settings.events_path, EventType.RECONCILIATION) if e["trigger"] == trigger]


async def test_start_up_adopts_our_orders_in_any_status_and_books_their_fills_once(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD")
    _land(broker, "pb-ghost")()  # filled at once: not OPEN, so only discovery by prefix can find it
    _land(broker, "manual-1")()  # not ours
    started = datetime.now(UTC)

    first = (await _run(settings, broker, state, once=True, strategy=HoldWithHooks())).reconciliation
    assert first is not None
    assert (
        first["adopted_orders"] == ["pb-ghost"] and first["missed_fills"] == 1 and first["coherent"] is True
    )
    assert (await state.get_state(keys.position_key(BTC)))["quantity"] == QTY
    assert (await state.get_state(keys.order_key("pb-ghost")))["adopted"] is True
    assert await state.get_state(keys.order_key("manual-1")) is None
    watermark = parse_watermark(await state.get_state(keys.WATERMARK_KEY))
    assert watermark >= started

    second = (await _run(settings, broker, state, once=True, strategy=HoldWithHooks())).reconciliation
    assert second is not None
    assert second["adopted_orders"] == [] and second["missed_fills"] == 0  # exactly once
    assert second["since"] == watermark - LOOKUP_MARGIN  # listed from where the first run left off
    assert len(await state.get_keys_by_pattern("fills:*")) == 1


async def test_periodic_discovery_adopts_an_order_that_landed_unannounced(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD", PERPS_RECONCILE_EVERY_CYCLES="2")
    strategy = HoldWithHooks(hooks={1: _land(broker, "pb-ghost")})
    summary = await _run(settings, broker, state, max_cycles=4, strategy=strategy)

    assert summary.errors == [] and summary.trading_state == "ACTIVE"
    periodic = _reconciliations(settings, "periodic")
    assert [e["adopted_orders"] for e in periodic] == [["pb-ghost"], []]
    assert [e["missed_fills"] for e in periodic] == [1, 0]
    assert all(e["coherent"] for e in periodic)
    assert summary.fills == 1  # booked by the loop, reported as a fill
    assert (await state.get_state(keys.position_key(BTC)))["quantity"] == QTY
    (fill,) = read_events(settings.events_path, EventType.FILL)
    (ghost,) = [o for o in broker.orders.values() if o.client_order_id == "pb-ghost"]
    assert fill["order_id"] == ghost.order_id
    # the watermark moved with each run and is stored
    marks = [datetime.fromisoformat(str(e["watermark"])) for e in periodic]
    assert marks == sorted(marks)
    assert parse_watermark(await state.get_state(keys.WATERMARK_KEY)) == marks[-1]


async def test_spot_position_larger_than_the_exchange_balance_is_a_mismatch(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD")
    await _run(settings, broker, state, once=True, strategy=ScriptedStrategy(buy_on=[1], quantity=QTY))
    broker.base_balances["BTC"] = Decimal("0.004")  # e.g. sold or withdrawn behind the bot's back

    report = (await _run(settings, broker, state, once=True, strategy=HoldWithHooks())).reconciliation
    assert report is not None and report["coherent"] is False
    assert report["mismatches"] == [
        {
            "symbol": "BTC-USD",
            "bot_quantity": QTY,
            "exchange_quantity": Decimal("0.004"),
            "source": "exchange_balance",
        }
    ]
    assert report["trading_state"] == "REDUCE_ONLY"


async def test_extra_holdings_at_the_exchange_are_not_a_mismatch(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD")
    broker.base_balances["BTC"] = Decimal(3)  # the account held BTC before the bot
    await _run(settings, broker, state, once=True, strategy=ScriptedStrategy(buy_on=[1], quantity=QTY))
    report = (await _run(settings, broker, state, once=True, strategy=HoldWithHooks())).reconciliation
    assert report is not None and report["coherent"] is True and report["mismatches"] == []


async def test_periodic_run_raises_reconcile_mismatch_when_the_balance_falls_short(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD", PERPS_RECONCILE_EVERY_CYCLES="3")

    def withdraw() -> None:
        broker.base_balances["BTC"] = Decimal(0)

    strategy = ScriptedStrategy(buy_on=[1], quantity=QTY)
    hooks = HoldWithHooks(hooks={2: withdraw})

    class Both:
        name = "both"
        required_history = 0

        def decide(self, view: MarketView, position: Position | None) -> Decision:
            hooks.decide(view, position)
            return strategy.decide(view, position)

    summary = await _run(settings, broker, state, max_cycles=4, strategy=Both())
    assert summary.trading_state == "REDUCE_ONLY"
    (periodic,) = _reconciliations(settings, "periodic")
    assert periodic["coherent"] is False
    assert [m["source"] for m in periodic["mismatches"]] == ["exchange_balance"]  # type: ignore[union-attr]
    engine = RiskEngine.restore(settings.risk, await state.get_state(keys.GUARDS_KEY))
    assert ReasonCode.RECONCILE_MISMATCH in engine.reasons
    trips = read_events(settings.events_path, EventType.GUARD_TRIP)
    assert [t["reason"] for t in trips] == ["RECONCILE_MISMATCH"]


async def test_a_request_to_a_halted_bot_runs_and_the_kill_switch_keeps_its_actor(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    """--kill-switch on, then --reconcile while the bot runs: the request is run (and named in the
    reconciliation event) and the control key and the bot's control events still name the kill switch's actor."""
    settings = make_settings(PERPS_SYMBOLS="BTC-USD", PERPS_RECONCILE_EVERY_CYCLES="100000")
    killer, asker = "cli:ops@h1:1 (SEV-1)", "cli:dev@h2:2 (after the fix)"
    await set_operator_control(state, kill_switch=True, reduce_only=None, source=killer)
    stop = asyncio.Event()
    task = asyncio.create_task(_run(settings, broker, state, stop_event=stop, strategy=HoldWithHooks()))
    try:

        async def halted() -> bool:
            safety = await state.get_state(keys.SAFETY_KEY)
            return safety is not None and safety["trading_state"] == "HALTED"

        await eventually_async(halted)
        request, _ = await request_reconcile(state, source=asker)

        async def acknowledged() -> bool:
            ack = await state.get_state(keys.RECONCILE_ACK_KEY)
            return ack is not None and ack["last_request_id"] == request.request_id

        await eventually_async(acknowledged)
    finally:
        stop.set()
        await task
    (run,) = _reconciliations(settings, "operator")
    assert (run["request_id"], run["source"]) == (request.request_id, asker)
    stored = parse_operator_control(await state.get_state(keys.CONTROL_KEY))
    assert stored.kill_switch and stored.source == killer
    controls = [
        e["control"] for e in read_events(settings.events_path, EventType.CONTROL_APPLIED) if "control" in e
    ]
    assert len(controls) == 2 and all(c["source"] == killer for c in controls)  # start, then the request
    assert controls[-1]["reconcile_request"]["source"] == asker


async def test_operator_request_reaches_the_running_loop_once(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD", PERPS_RECONCILE_EVERY_CYCLES="100000")
    stop = asyncio.Event()
    strategy = HoldWithHooks()
    task = asyncio.create_task(_run(settings, broker, state, stop_event=stop, strategy=strategy))
    try:
        await eventually_async(lambda: _true(strategy.calls >= 1))
        _land(broker, "pb-ghost")()
        request, _ = await request_reconcile(state, source="test")
        assert request.request_id == 1

        async def acknowledged() -> bool:
            ack = await state.get_state(keys.RECONCILE_ACK_KEY)
            return ack is not None and ack["last_request_id"] == 1

        await eventually_async(acknowledged)
        calls = strategy.calls
        await eventually_async(lambda: _true(strategy.calls >= calls + 3))
    finally:
        stop.set()
        await task
    (run,) = _reconciliations(settings, "operator")
    assert run["request_id"] == 1 and run["adopted_orders"] == ["pb-ghost"] and run["coherent"] is True
    assert run["source"] == "test"  # who asked, beside the request id
    assert (await state.get_state(keys.position_key(BTC)))["quantity"] == QTY
    applied = [
        e for e in read_events(settings.events_path, EventType.CONTROL_APPLIED) if "reconcile_request" in e
    ]
    assert [(e["reconcile_request"]["request_id"], e["outcome"]) for e in applied] == [(1, "coherent")]
    # a new request gets the next id; the bot has run 1
    again, _ = await request_reconcile(state, source="test")
    assert again.request_id == 2


async def test_a_corrupted_watermark_falls_back_to_the_intents_and_is_rewritten(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD")
    await state.set_state(keys.WATERMARK_KEY, {"watermark": "soon"}, StateCategory.METADATA)
    _land(broker, "pb-ghost")()
    report = (await _run(settings, broker, state, once=True, strategy=HoldWithHooks())).reconciliation
    assert report is not None and report["watermark_error"]
    assert report["adopted_orders"] == ["pb-ghost"]
    parse_watermark(await state.get_state(keys.WATERMARK_KEY))  # readable again


async def _true(value: bool) -> bool:
    return value
