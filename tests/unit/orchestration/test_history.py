"""History archiving: what moves (terminal, old, fully booked), crash safety between the steps of a move,
start-up reading nothing archived, archived records readable for audit, scheduling and the loop hook."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot_v2.config import BotSettings, load_settings
from bot_v2.domain import (
    ClientOrderId,
    Fill,
    Liquidity,
    Order,
    OrderId,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
)
from bot_v2.errors import ConfigError, StateIntegrityError
from bot_v2.monitoring.events import EventStore, EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.history import HistoryArchiver, read_archived
from bot_v2.orchestration.ledger import PositionBook
from bot_v2.orchestration.reconcile import Reconciler, ReconcileReport, load_risk_engine
from bot_v2.orchestration.records import (
    ArchiveSummary,
    IntentRecord,
    IntentStatus,
    OrderRecord,
    fill_to_dict,
)
from bot_v2.orchestration.tracking import OrderTracker
from bot_v2.state import StateCategory, StateManager, StateWrite
from bot_v2.state.keys import KeySpace
from bot_v2.state.tiers.factory import build_tiers
from tests.unit.orchestration.conftest import runtime_for
from tests.unit.orchestration.fakes import BTC, FakeBroker, ScriptedStrategy
from tests.unit.state.fakes import TierSpy

DAY = timedelta(days=1)


class Crash(Exception):
    """The process dies here (no code after the failing call runs)."""


class History:
    """Seeds state and the fake exchange with the same orders, intents and fills (and the position)."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.writes: list[StateWrite] = []
        self.book = PositionBook()

    def order(
        self,
        coid: str,
        when: datetime,
        *,
        status: OrderStatus = OrderStatus.FILLED,
        fills: Sequence[str] = ("0.01",),
        filled: str | None = None,
        booked: int | None = None,
        intent: IntentStatus | None = IntentStatus.DONE,
    ) -> None:
        """An order created and last written at ``when``; ``booked`` of its ``fills`` are in state."""
        cid, oid = ClientOrderId(coid), OrderId(f"o-{coid}")
        quantities = [Decimal(q) for q in fills]
        order = Order(
            order_id=oid,
            client_order_id=cid,
            symbol=BTC,
            side=Side.BUY,
            order_type=OrderType.MARKET,
            status=status,
            quantity=Decimal("0.05"),
            filled_quantity=Decimal(filled) if filled is not None else sum(quantities, start=Decimal(0)),
            created_at=when,
        )
        self.broker.orders[oid] = order
        self.writes.append(
            StateWrite(
                keys.order_key(cid), OrderRecord.from_order(order, when).to_dict(), StateCategory.ORDERS
            )
        )
        if intent is not None:
            record = IntentRecord(
                client_order_id=cid,
                symbol=BTC,
                side=Side.BUY,
                order_type=OrderType.MARKET,
                quantity=order.quantity,
                limit_price=None,
                time_in_force=TimeInForce.GTC,
                reduce_only=False,
                created_at=when,
                status=intent,
                order_id=oid,
                updated_at=when,
            )
            self.writes.append(StateWrite(keys.intent_key(cid), record.to_dict(), StateCategory.INTENTS))
        for i, qty in enumerate(quantities):
            fill = Fill(
                trade_id=TradeId(f"t-{coid}-{i}"),
                order_id=oid,
                symbol=BTC,
                side=Side.BUY,
                price=Decimal(50_000),
                quantity=qty,
                commission=Decimal("0.5"),
                liquidity=Liquidity.TAKER,
                trade_time=when,
                client_order_id=cid,
            )
            self.broker.fills.append(fill)
            self.broker.base_balances["BTC"] = self.broker.base_balances.get("BTC", Decimal(0)) + qty
            if booked is None or i < booked:
                self.book.apply(fill)
                self.writes.append(
                    StateWrite(keys.fill_key(fill.trade_id), fill_to_dict(fill), StateCategory.FILLS)
                )

    def lone_intent(self, coid: str, when: datetime, status: IntentStatus = IntentStatus.FAILED) -> None:
        record = IntentRecord(
            client_order_id=ClientOrderId(coid),
            symbol=BTC,
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=Decimal("0.01"),
            limit_price=None,
            time_in_force=TimeInForce.GTC,
            reduce_only=False,
            created_at=when,
            status=status,
            reason="refused",
            updated_at=when,
        )
        self.writes.append(StateWrite(keys.intent_key(coid), record.to_dict(), StateCategory.INTENTS))

    async def store(self, state: Any, watermark: datetime | None) -> None:
        writes = list(self.writes)
        for position in self.book.take_dirty():
            writes.append(
                StateWrite(keys.position_key(position.symbol), position.to_dict(), StateCategory.POSITIONS)
            )
        if watermark is not None:
            value = {"watermark": watermark, "updated_at": watermark}
            writes.append(StateWrite(keys.WATERMARK_KEY, value, StateCategory.METADATA))
        await state.batch_write(writes)


class FailingState:
    """A ``StateManager`` whose ``fail_on`` call raises ``Crash`` instead of running (a crash at that step)."""

    def __init__(self, inner: StateManager, fail_on: Callable[[str, Any], bool]) -> None:
        self.inner = inner
        self.fail_on = fail_on

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.fail_on(name, args[0] if args else None):
                raise Crash(name)
            return await target(*args, **kwargs)

        return call


async def _loaded(state: Any) -> OrderTracker:
    tracker = OrderTracker(BotMetrics())
    await tracker.load(state)
    return tracker


def _archiver(state: Any, tracker: OrderTracker, **kwargs: Any) -> HistoryArchiver:
    return HistoryArchiver(state, tracker, retention_days=kwargs.pop("retention_days", 7), **kwargs)


async def _live(state: StateManager) -> set[str]:
    found: set[str] = set()
    for prefix in (keys.ORDER_PREFIX, keys.INTENT_PREFIX, keys.FILL_PREFIX):
        found.update(await state.get_keys_by_pattern(prefix + "*"))
    return found


async def _archived(state: StateManager) -> set[str]:
    return set(await state.get_keys_by_pattern(keys.ARCHIVE_PREFIX + "*"))


def _keys_of(coid: str, fills: int = 1, intent: bool = True) -> set[str]:
    found = {keys.order_key(coid), *(keys.fill_key(f"t-{coid}-{i}") for i in range(fills))}
    return found | ({keys.intent_key(coid)} if intent else set())


# --- what moves -------------------------------------------------------------------------------------------


async def test_only_terminal_old_fully_booked_records_move(broker: FakeBroker, state: StateManager) -> None:
    now = datetime.now(UTC)
    old = now - 30 * DAY
    history = History(broker)
    history.order("pb-a-done", old, fills=("0.01", "0.02"))  # moves, with both fills and its intent
    history.order("pb-b-adopted", old, intent=None)  # an adopted order without intent: moves
    history.order("pb-c-cancelled", old, status=OrderStatus.CANCELLED, fills=())  # no fills: moves
    history.lone_intent("pb-d-refused", old)  # a FAILED intent that never became an order: moves
    history.order("pb-e-open", old, status=OrderStatus.OPEN, intent=IntentStatus.SUBMITTED)  # not terminal
    history.order("pb-f-recent", now - DAY)  # within the retention window
    history.order("pb-g-unbooked", old, fills=("0.01", "0.02"), booked=1)  # a fill not booked yet
    history.order("pb-h-submitted", old, intent=IntentStatus.SUBMITTED)  # bookkeeping not finished
    await history.store(state, watermark=now)
    before = await _live(state)
    tracker = await _loaded(state)

    report = await _archiver(state, tracker).run(now)

    moved = (
        _keys_of("pb-a-done", fills=2)
        | _keys_of("pb-b-adopted", intent=False)
        | _keys_of("pb-c-cancelled", fills=0)
        | {keys.intent_key("pb-d-refused")}
    )
    assert await _live(state) == before - moved
    assert await _archived(state) == {keys.archive_key(k) for k in moved}
    assert (report.orders, report.intents, report.fills, report.keys_moved) == (3, 3, 3, len(moved))
    summary = ArchiveSummary.from_dict(await state.get_state(keys.ARCHIVE_KEY))
    assert summary.quantities == {BTC: Decimal("0.04")}
    assert (summary.orders, summary.intents, summary.fills) == (3, 3, 3)
    assert summary.pending_keys == () and summary.horizon == now - 7 * DAY
    assert tracker.archived_quantity(BTC) == Decimal("0.04")
    assert OrderId("o-pb-a-done") not in tracker.order_ids
    assert OrderId("o-pb-f-recent") in tracker.order_ids


async def test_nothing_moves_without_a_watermark_or_inside_its_window(
    broker: FakeBroker, state: StateManager
) -> None:
    now = datetime.now(UTC)
    history = History(broker)
    history.order("pb-old", now - 30 * DAY)
    await history.store(state, watermark=None)
    tracker = await _loaded(state)
    report = await _archiver(state, tracker).run(now)
    assert report.keys_moved == 0 and report.skipped == "no reconciliation watermark stored"

    # the bot was down for 40 days: the watermark is older than the records, which may still be listed again
    await state.set_state(
        keys.WATERMARK_KEY,
        {"watermark": now - 40 * DAY, "updated_at": now - 40 * DAY},
        StateCategory.METADATA,
    )
    report = await _archiver(state, tracker).run(now)
    assert report.keys_moved == 0 and report.cutoff == now - 40 * DAY - timedelta(minutes=10)
    assert await _archived(state) == set()


async def test_a_run_moves_one_bounded_batch_and_the_backlog_follows_next_cycles(
    settings: BotSettings, broker: FakeBroker, state: StateManager
) -> None:
    now = datetime.now(UTC)
    history = History(broker)
    for i in range(5):
        history.order(f"pb-{i:02d}", now - 30 * DAY)
    await history.store(state, watermark=now)
    tracker = await _loaded(state)
    events = EventStore(settings.events_path)
    archiver = _archiver(state, tracker, batch_size=2, events=events)

    moved = []
    for _ in range(4):
        report = await archiver.maybe_run(now)
        assert report is not None
        moved.append(report.orders)
        if not report.backlog:
            break
    assert moved == [2, 2, 1]
    assert await _live(state) == set()
    assert not archiver.due(now + timedelta(minutes=59)) and archiver.due(now + timedelta(hours=1))
    events.close()
    archived = read_events(settings.events_path, EventType.HISTORY_ARCHIVED)
    assert [e["orders"] for e in archived] == [2, 2, 1] and all(e["ok"] for e in archived)


async def test_fills_are_indexed_over_several_runs_before_anything_moves(
    broker: FakeBroker, state: StateManager
) -> None:
    now = datetime.now(UTC)
    history = History(broker)
    for i in range(3):
        history.order(f"pb-{i}", now - 30 * DAY, fills=("0.01", "0.01"))
    await history.store(state, watermark=now)
    archiver = _archiver(state, await _loaded(state), fill_read_limit=4)

    listing = await archiver.run(now)  # more fills than one run reads: this run only lists the live keys
    assert (listing.fills_indexed, listing.keys_moved, listing.backlog) == (0, 0, True)
    first = await archiver.run(now)
    assert (first.fills_indexed, first.keys_moved, first.backlog) == (4, 0, True)
    second = await archiver.run(now)
    assert second.fills_indexed == 2 and second.orders == 3 and second.fills == 6


async def test_no_run_while_the_cycle_has_unflushed_writes_and_a_failed_run_does_not_raise(
    settings: BotSettings, broker: FakeBroker, state: StateManager
) -> None:
    now = datetime.now(UTC)
    history = History(broker)
    history.order("pb-old", now - 30 * DAY)
    await history.store(state, watermark=now)
    tracker = await _loaded(state)
    events = EventStore(settings.events_path)
    failing = FailingState(state, lambda name, _: name == "batch_write")
    archiver = _archiver(failing, tracker, events=events)

    tracker.batch.put("marks:BTC-USD", {"bid": 1}, StateCategory.MARKS)
    assert await archiver.maybe_run(now) is None and archiver.runs == 0
    tracker.batch.take()

    assert await archiver.maybe_run(now) is None  # the move failed: logged, an event, trading goes on
    assert archiver.failed == 1 and not archiver.due(now + timedelta(minutes=1))
    assert await _live(state) == _keys_of("pb-old") and await _archived(state) == set()
    events.close()
    (event,) = read_events(settings.events_path, EventType.HISTORY_ARCHIVED)
    assert event["ok"] is False and "Crash" in event["error"]


# --- crash safety -----------------------------------------------------------------------------------------


def _crash_at(step: str) -> Callable[[str, Any], bool]:
    """1: the archive batch; 2: the delete of the live keys; 3: the summary without pending keys."""
    if step == "1":
        return lambda name, _: name == "batch_write"
    if step == "2":
        return lambda name, _: name == "batch_delete_state"
    return lambda name, key: name == "set_state" and key == keys.ARCHIVE_KEY


@pytest.mark.parametrize("step", ["1", "2", "3"])
async def test_a_crash_mid_move_loses_nothing_and_books_nothing_twice(
    settings: BotSettings, broker: FakeBroker, state: StateManager, step: str
) -> None:
    now = datetime.now(UTC)
    history = History(broker)
    history.order("pb-old", now - 30 * DAY, fills=("0.01", "0.02"))
    history.order("pb-new", now - DAY)
    await history.store(state, watermark=now)
    position = await state.get_state(keys.position_key(BTC))
    tracker = await _loaded(state)
    with pytest.raises(Crash):
        await _archiver(FailingState(state, _crash_at(step)), tracker).run(now)

    # restart: start-up sees the moved order as archived (or as live, if the move never committed)
    restarted = await _loaded(state)
    summary = restarted.archive
    if step == "1":
        assert summary.orders == 0 and await _archived(state) == set()
        assert OrderId("o-pb-old") in restarted.order_ids
    else:
        assert summary.orders == 1 and summary.quantities == {BTC: Decimal("0.03")}
        assert OrderId("o-pb-old") not in restarted.order_ids
        assert TradeId("t-pb-old-0") not in restarted.known_trade_ids
    if step == "2":
        assert summary.pending_keys and set(summary.pending_keys) <= await _live(state)

    # the whole start: reconciliation books no fill again and finds the positions coherent
    run = await run_bot(
        runtime_for(settings, broker, state),
        once=True,
        strategy=ScriptedStrategy(buy_on=[]),
        metrics=BotMetrics(),
    )
    assert run.reconciliation is not None
    assert run.reconciliation["missed_fills"] == 0 and run.reconciliation["coherent"] is True
    assert run.reconciliation["adopted_orders"] == []
    assert await state.get_state(keys.position_key(BTC)) == position

    # the next run finishes the move; the old order is archived exactly once
    await _archiver(state, await _loaded(state)).run(now)
    summary = ArchiveSummary.from_dict(await state.get_state(keys.ARCHIVE_KEY))
    assert (summary.orders, summary.fills, summary.quantities) == (1, 2, {BTC: Decimal("0.03")})
    assert summary.pending_keys == ()
    assert await _live(state) == _keys_of("pb-new")
    assert await _archived(state) == {keys.archive_key(k) for k in _keys_of("pb-old", fills=2)}
    again = await run_bot(
        runtime_for(settings, broker, state),
        once=True,
        strategy=ScriptedStrategy(buy_on=[]),
        metrics=BotMetrics(),
    )
    assert again.reconciliation is not None
    assert again.reconciliation["missed_fills"] == 0 and again.reconciliation["coherent"] is True


async def test_an_archived_order_is_not_listed_again_even_without_a_watermark(
    settings: BotSettings, broker: FakeBroker, state: StateManager
) -> None:
    now = datetime.now(UTC)
    history = History(broker)
    history.order("pb-old", now - 30 * DAY)
    history.lone_intent("pb-refused", now - 29 * DAY)
    await history.store(state, watermark=now)
    await _archiver(state, await _loaded(state)).run(now)
    await state.delete_state(keys.WATERMARK_KEY)  # lost: discovery falls back to the intents and the archive

    tracker = await _loaded(state)
    assert tracker.discovery_floor is not None and tracker.discovery_floor > now - 7 * DAY
    run = await run_bot(
        runtime_for(settings, broker, state),
        once=True,
        strategy=ScriptedStrategy(buy_on=[]),
        metrics=BotMetrics(),
    )
    assert run.reconciliation is not None
    assert run.reconciliation["adopted_orders"] == [] and run.reconciliation["missed_fills"] == 0
    assert run.reconciliation["coherent"] is True
    assert await state.get_keys_by_pattern(keys.ORDER_PREFIX + "*") == []


async def test_an_operator_reconcile_rederives_positions_with_the_archived_net(
    settings: BotSettings, broker: FakeBroker, state: StateManager
) -> None:
    now = datetime.now(UTC)
    history = History(broker)
    history.order("pb-old", now - 30 * DAY, fills=("0.01", "0.02"))
    history.order("pb-new", now - DAY, fills=("0.04",))
    await history.store(state, watermark=now)
    await _archiver(state, await _loaded(state)).run(now)

    tracker = await _loaded(state)
    risk, _ = await load_risk_engine(state, settings.risk, now)
    events = EventStore(settings.events_path)
    reconciler = Reconciler(
        broker=broker,
        state=state,
        tracker=tracker,
        events=events,
        metrics=BotMetrics(),
        symbols=[BTC],
        client_id_prefix="pb-",
        cancel_open_orders_after_crash=False,
        spot_base_currencies={BTC: "BTC"},
    )
    await reconciler.load_watermark()
    report = await reconciler.discover(risk, now, trigger="operator", full=True)
    events.close()
    assert report.mismatches == [] and report.new_fills == []
    # the exchange was asked for the live order's fills only
    assert broker.fill_calls[-1] == [OrderId("o-pb-new")]


# --- start-up reads -------------------------------------------------------------------------------------


@pytest.fixture
async def spied(settings: BotSettings) -> AsyncIterator[tuple[StateManager, list[str], list[str], TierSpy]]:
    """A second manager over the same embedded state whose tiers record every key and pattern read."""
    read: list[str] = []
    patterns: list[str] = []
    hot, warm, cold = build_tiers(
        settings.state, KeySpace(settings.state.bot_id, settings.state.max_key_bytes)
    )
    spies = TierSpy(hot), TierSpy(warm), TierSpy(cold)

    async def keys_read(batch: Iterable[str], *_: Any) -> None:
        read.extend(batch)

    async def pattern(p: str, *_: Any) -> None:
        patterns.append(p)

    spies[0].before["get_many"] = keys_read
    spies[1].before["get_many"] = keys_read
    spies[1].before["keys_matching"] = pattern
    manager = await StateManager.create(settings.state, tiers=spies)
    try:
        yield manager, read, patterns, spies[2]
    finally:
        await manager.close()


async def _start_up(settings: BotSettings, broker: FakeBroker, state: Any, now: datetime) -> ReconcileReport:
    """What ``run_bot`` does before the first cycle that touches orders and fills."""
    tracker = await _loaded(state)
    risk, error = await load_risk_engine(state, settings.risk, now)
    events = EventStore(settings.events_path)
    reconciler = Reconciler(
        broker=broker,
        state=state,
        tracker=tracker,
        events=events,
        metrics=BotMetrics(),
        symbols=[BTC],
        client_id_prefix="pb-",
        cancel_open_orders_after_crash=False,
        spot_base_currencies={BTC: "BTC"},
    )
    try:
        return await reconciler.run(risk, error, now)
    finally:
        events.close()


async def test_start_up_after_archiving_reads_no_archived_record(
    settings: BotSettings, broker: FakeBroker, state: StateManager, spied: Any
) -> None:
    now = datetime.now(UTC)
    history = History(broker)
    for i in range(40):
        history.order(f"pb-old-{i:02d}", now - 30 * DAY, fills=("0.01", "0.01"))
    history.order("pb-live", now - DAY)
    await history.store(state, watermark=now)
    archiver = _archiver(state, await _loaded(state))
    while (await archiver.run(now)).backlog:
        pass
    assert len(await _archived(state)) == 40 * 4

    manager, read, patterns, cold = spied
    cold.calls.clear()
    report = await _start_up(settings, broker, manager, now)  # OrderTracker.load + start-up reconciliation
    assert report.coherent and report.missed_fills == 0
    assert not [k for k in read if k.startswith(keys.ARCHIVE_PREFIX) or "pb-old" in k]
    assert not [p for p in patterns if p.startswith(keys.ARCHIVE_PREFIX)]
    assert "get_segment" not in cold.calls  # no archived body was fetched
    history_reads = {
        k for k in read if k.startswith((keys.ORDER_PREFIX, keys.INTENT_PREFIX, keys.FILL_PREFIX))
    }
    assert history_reads <= _keys_of("pb-live")
    # and the exchange was asked about the live order only
    assert all(ids is None or set(ids) <= {OrderId("o-pb-live")} for ids in broker.fill_calls)


async def test_archived_records_stay_readable_for_audit(broker: FakeBroker, state: StateManager) -> None:
    now = datetime.now(UTC)
    history = History(broker)
    history.order("pb-old", now - 30 * DAY)
    await history.store(state, watermark=now)
    originals = await state.batch_get_state(sorted(_keys_of("pb-old")))
    await _archiver(state, await _loaded(state)).run(now)

    for key, value in originals.items():
        assert await read_archived(state, key) == value
        assert await state.get_state(key) is None
    assert await state.get_keys_by_pattern("archive:orders:*") == ["archive:orders:pb-old"]
    stats = await state.get_storage_stats()
    assert stats.cold_objects >= 1  # the bodies are in a COLD segment


# --- the loop ---------------------------------------------------------------------------------------------


async def test_the_loop_archives_after_a_cycle(
    make_settings: Callable[..., BotSettings], broker: FakeBroker, state: StateManager
) -> None:
    settings = make_settings(PERPS_SYMBOLS="BTC-USD", PERPS_HISTORY_RETENTION_DAYS="2")
    now = datetime.now(UTC)
    history = History(broker)
    history.order("pb-old", now - 3 * DAY)
    history.order("pb-kept", now - DAY)
    await history.store(state, watermark=now - timedelta(hours=1))

    await run_bot(runtime_for(settings, broker, state), once=True, strategy=ScriptedStrategy(buy_on=[]))

    assert await _live(state) == _keys_of("pb-kept")
    (event,) = read_events(settings.events_path, EventType.HISTORY_ARCHIVED)
    assert event["ok"] is True and event["orders"] == 1 and event["fills"] == 1


# --- settings ---------------------------------------------------------------------------------------------


def test_retention_setting(tmp_path: Path) -> None:
    assert load_settings("dev", {}, root=tmp_path).history_retention_days == 7.0
    env = {"PERPS_HISTORY_RETENTION_DAYS": "0.5"}
    assert load_settings("dev", env, root=tmp_path).history_retention_days == 0.5
    for raw in ("-1", "soon", "inf", "4000"):
        with pytest.raises(ConfigError, match="PERPS_HISTORY_RETENTION_DAYS"):
            load_settings("dev", {"PERPS_HISTORY_RETENTION_DAYS": raw}, root=tmp_path)


def test_archive_summary_round_trips_and_rejects_unknown_fields() -> None:
    summary = ArchiveSummary(
        quantities={Symbol("BTC-USD"): Decimal("-0.5")},
        orders=2,
        horizon=datetime(2026, 1, 1, tzinfo=UTC),
        pending_keys=("orders:pb-1",),
        pending_order_ids=(OrderId("o-1"),),
    )
    assert ArchiveSummary.from_dict(summary.to_dict()) == summary
    with pytest.raises(StateIntegrityError, match="archive"):
        ArchiveSummary.from_dict({**summary.to_dict(), "extra": 1})
    assert dataclasses.replace(summary, orders=3).orders == 3
