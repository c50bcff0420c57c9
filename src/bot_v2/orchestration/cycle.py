"""``TradingCycle``: one pass of market data -> strategy -> risk guards -> execution -> one state batch.

Order of a cycle:

1. read the operator control key and apply it to the risk engine (kill switch, reduce-only, pending requests
   to clear latched reasons);
2. take quotes from the WebSocket feed (REST best bid/ask while it is down) and balances; append this cycle's
   mids to the price history;
3. sync open orders and their fills over REST (fills booked exactly once) -- with a healthy feed only when
   ``MarketFeed.rest_sync_due`` (the user channel books fills between cycles through ``book_orders``);
   look unresolved (PENDING / UNKNOWN) intents up by client order id; every ``reconcile_every_cycles``
   cycles, or when an operator asked (``--reconcile``), run order discovery by client-id prefix
   (``Reconciler.discover``);
4. build the ``RiskSnapshot`` and run the state-level guards (``evaluate_cycle``);
5. ask the strategy for every symbol first (a symbol with an unresolved intent gets no new order: its row
   says ``skipped``, ``unresolved intent ...``); then ``OrderExecutor.submit_all`` judges all the cycle's
   orders (each against a snapshot that counts the ones before it), writes ALL approved intents in ONE
   ``batch_write``, and only then places them at the exchange, concurrently;
6. sync the orders placed this cycle, then flush every change -- fills, positions, orders, intents, marks,
   guard state, safety mode, PnL -- in ONE ``batch_write``;
7. record events and metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot_v2.brokerages.base import Broker
from bot_v2.domain import Fill, OrderId, OrderRequest, OrderType, Product, Symbol, utc_now
from bot_v2.errors import StateUnavailableError
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.controls import ControlPoll, ControlWatcher, OperatorControl, apply_clear_request
from bot_v2.orchestration.emergency import EmergencyDesk
from bot_v2.orchestration.execution import ExecutionAction, ExecutionResult, OrderExecutor
from bot_v2.orchestration.market import (
    CycleOutcomes,
    MarketData,
    equity_usd,
    fetch_market,
    record_marks,
    risk_snapshot,
)
from bot_v2.orchestration.marketfeed import MarketFeed
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.orchestration.reconcile import Reconciler
from bot_v2.orchestration.tracking import OrderTracker, SyncResult, emit_resolutions
from bot_v2.risk import RiskEngine, RiskSnapshot, Transition
from bot_v2.state import StateManager, foreground
from bot_v2.state.settings import WarmOutageMode
from bot_v2.strategies.base import Action, MarketView, PriceHistory, Strategy

__all__ = ["CycleReport", "SymbolRow", "TradingCycle", "safety_value"]

logger = logging.getLogger(__name__)

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SymbolRow:
    """What happened to one symbol in one cycle (a row of the run summary)."""

    symbol: Symbol
    mark: Decimal | None
    decision: str
    verdict: str
    action: str
    order_id: str | None
    position: Decimal
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _SymbolDecision:
    """The strategy's answer for one symbol: the row so far and the order to send, if any."""

    row: SymbolRow
    request: OrderRequest | None = None


@dataclass(slots=True)
class CycleReport:
    number: int
    started_at: datetime
    rows: list[SymbolRow] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    new_fills: int = 0
    orders_placed: int = 0
    flushed_keys: int = 0
    duration_ms: float = 0.0
    flush_ms: float = 0.0
    #: results of the operator's emergency requests this cycle carried out (``emergency.py``)
    emergency: list[dict[str, Any]] = field(default_factory=list)
    #: (realized, unrealized, today's, fees) in USD after the cycle; None until it completed
    pnl: tuple[Decimal, Decimal, Decimal | None, Decimal] | None = None
    market_source: str | None = None  # where the cycle's quotes came from: "ws" (the feed) or "rest"


def safety_value(risk: RiskEngine, now: datetime) -> dict[str, object]:
    """The ``safety:mode`` record: the trading state and why, readable without the engine."""
    return {
        "trading_state": risk.state.value,
        "detail": risk.state_detail(),
        "reasons": [r.to_dict() for r in risk.reasons.values()],
        "kill_switch": risk.kill_switch_active,
        "reduce_only": risk.reduce_only_active,
        "updated_at": now,
    }


class TradingCycle:
    """Runs cycles for a fixed set of symbols; holds no state of its own beyond the price history."""

    def __init__(
        self,
        *,
        symbols: Sequence[Symbol],
        products: Mapping[Symbol, Product],
        broker: Broker,
        state: StateStore,
        risk: RiskEngine,
        strategy: Strategy,
        tracker: OrderTracker,
        executor: OrderExecutor,
        controls: ControlWatcher,
        history: PriceHistory,
        events: EventStore,
        metrics: BotMetrics,
        derivatives: bool = False,
        reconciler: Reconciler | None = None,
        reconcile_every_cycles: int = 0,
        emergency: EmergencyDesk | None = None,
        feed: MarketFeed | None = None,
    ) -> None:
        self.symbols = tuple(symbols)
        self.products = dict(products)
        self.broker = broker
        self.state = state
        self.risk = risk
        self.strategy = strategy
        self.tracker = tracker
        self.executor = executor
        self.controls = controls
        self.history = history
        self.events = events
        self.metrics = metrics
        self.derivatives = derivatives
        self.reconciler = reconciler
        self.reconcile_every_cycles = reconcile_every_cycles  # 0: only on request
        self.emergency = emergency  # the operator's --cancel-all / --flatten / --place-order (lease holder)
        self.outcomes = CycleOutcomes()
        self.last_snapshot: RiskSnapshot | None = None  # the last good snapshot, for the runbook alerts
        self.feed = feed
        self.lock = asyncio.Lock()  # a cycle and the user channel's bookings never interleave

    async def run(self, number: int, now: datetime) -> CycleReport:
        """Run one cycle at ``now`` (holding ``lock``); exceptions propagate to the loop's error policy."""
        async with self.lock:
            with foreground():  # a background checkpoint steps aside meanwhile (state.checkpoint.pacing)
                return await self._run(number, now)

    async def book_orders(self, order_ids: set[OrderId]) -> None:
        """Book, between cycles, the fills of orders a user-channel update named, and write them at once."""
        async with self.lock:
            now = utc_now()
            sync = await self.tracker.sync(self.broker, now, only=order_ids, source="ws")
            await self.book_sync(sync, CycleReport(0, now), now)
            await self.tracker.batch.flush(self.state)

    async def _run(self, number: int, now: datetime) -> CycleReport:
        started = time.perf_counter()
        report = CycleReport(number=number, started_at=now)
        report.transitions += await self._apply_controls(now)
        control = self.controls.last_good

        feed = self.feed
        market = await fetch_market(
            self.broker, self.symbols, self.derivatives, feed.quotes if feed else None
        )
        report.market_source = market.source
        if feed is not None:
            feed.observe_cycle(market.quotes, market.source)
        record_marks(self.history, market.quotes, now)
        for symbol, quote in market.quotes.items():
            self.tracker.batch.put(
                keys.mark_key(symbol),
                {"bid": quote.bid, "ask": quote.ask, "time": quote.time, "mid": quote.mid},
                StateCategory.MARKS,
            )

        if feed is None or feed.rest_sync_due():
            await self.book_sync(await self.tracker.sync(self.broker, now), report, now)
            if feed is not None:
                feed.rest_synced()
        if self.tracker.unresolved_intents:
            await self._resolve_pending(report, now)
        await self._maybe_reconcile(number, control, report, now)
        await self._refresh_funding(number)

        snapshot = self._snapshot(market)
        self.last_snapshot = snapshot
        report.transitions += self.risk.evaluate_cycle(snapshot, now)
        snapshot = await self._emergency(market, snapshot, report, now)

        decisions = [await self._decide(symbol, market, snapshot, now) for symbol in self.symbols]
        report.rows = await self._execute(decisions, snapshot, now, report)

        if report.orders_placed:
            await self.book_sync(await self.tracker.sync(self.broker, now), report, now)
            report.rows = [self._refresh_position(row) for row in report.rows]

        report.flush_ms, report.flushed_keys = await self.flush(market, now)
        report.pnl = self._pnl(market, snapshot)
        await self._record_transitions(report.transitions)
        self.outcomes.record(True)
        report.duration_ms = (time.perf_counter() - started) * 1000
        self._update_metrics(report, market)
        return report

    # --- steps ------------------------------------------------------------------------------------------

    async def _apply_controls(self, now: datetime) -> list[Transition]:
        try:
            poll = await self.controls.poll(self.state)
        except StateUnavailableError:
            if not self._warm_outage():
                raise
            poll = ControlPoll(self.controls.last_good, False)  # PostgreSQL down: the last control read holds
        if poll.error is not None:
            await self.events.emit(
                EventType.CONTROL_REJECTED, now, key=keys.CONTROL_KEY, error=poll.error, kept=_control(poll)
            )
        control = poll.control
        kill, reduce = (control.kill_switch, control.reduce_only) if control else (False, False)
        transitions = self.risk.apply_controls(kill_switch=kill, reduce_only=reduce, now=now)
        outage = self._warm_outage()
        if self.risk.set_warm_outage(outage is WarmOutageMode.REDUCE_ONLY):
            logger.warning(
                "PostgreSQL recovery: %s",
                "WARM outage: reduce-only until it answers (PERPS_WARM_OUTAGE_MODE=reduce_only)"
                if outage
                else "WARM outage over: the reduce-only outage mode is lifted",
            )
        if poll.changed:
            await self.events.emit(EventType.CONTROL_APPLIED, now, control=_control(poll))
        return transitions + await self._apply_clear_requests(control, now)

    def _warm_outage(self) -> WarmOutageMode | None:
        """The outage mode in force while durable writes go to the local journal (None: WARM is up)."""
        state = self.state
        if isinstance(state, StateManager) and state.degraded_warm:
            return state.warm_outage_mode
        return None

    async def _apply_clear_requests(self, control: OperatorControl | None, now: datetime) -> list[Transition]:
        """Apply the operator's pending clear requests; the acknowledgement joins the cycle's batch, with the
        guard state it changed."""
        pending = self.controls.pending_clears(control)
        if not pending:
            return []
        transitions: list[Transition] = []
        for request in pending:
            outcome, cleared = apply_clear_request(self.risk, request, now)
            transitions += cleared
            await self.events.emit(
                EventType.CONTROL_APPLIED,
                now,
                clear_request=request.to_dict(),
                outcome=outcome,
                trading_state=self.risk.state,
            )
        ack = self.controls.acknowledge(pending, now)
        self.tracker.batch.put(keys.CLEAR_ACK_KEY, ack, StateCategory.CONTROL)
        return transitions

    async def book_sync(self, sync: SyncResult, report: CycleReport, now: datetime) -> None:
        """Report new fills to the risk engine (realized PnL net of fees) and the event log."""
        report.new_fills += len(sync.new_fills)
        if sync.new_fills:
            fees = sum((f.commission for f in sync.new_fills), start=ZERO)
            self.risk.record_realized_pnl(sync.realized_pnl - fees, now)
        for fill in sync.new_fills:
            await self.events.emit(EventType.FILL, now, **_fill_fields(fill))
        for order in sync.updated_orders:
            await self.events.emit(
                EventType.ORDER_UPDATED,
                now,
                client_order_id=order.client_order_id,
                order_id=order.order_id,
                status=order.status,
                filled_quantity=order.filled_quantity,
            )

    async def _resolve_pending(self, report: CycleReport, now: datetime) -> None:
        resolutions = await self.tracker.resolve_pending(self.broker, now)
        await emit_resolutions(self.events, resolutions, now)
        if any(r.outcome == "adopted" for r in resolutions):
            # book the adopted orders' fills now: the strategy must see the position they made
            await self.book_sync(await self.tracker.sync(self.broker, now), report, now)

    async def _refresh_funding(self, number: int) -> None:
        """A perpetual's funding rate moves (the funding guard judges it): re-read the products every
        ``reconcile_every_cycles`` cycles (20 when discovery runs only on request)."""
        if not any(p.perpetual for p in self.products.values()):
            return
        if number % (self.reconcile_every_cycles or 20):
            return
        for product in await self.broker.list_products(list(self.symbols)):
            self.products[product.symbol] = product

    async def _maybe_reconcile(
        self, number: int, control: OperatorControl | None, report: CycleReport, now: datetime
    ) -> None:
        """Order discovery when it is due (every ``reconcile_every_cycles``) or an operator asked for it."""
        if self.reconciler is None:
            return
        request = self.controls.pending_reconcile(control)
        due = self.reconcile_every_cycles > 0 and number % self.reconcile_every_cycles == 0
        if request is None and not due:
            return
        result = await self.reconciler.discover(
            self.risk,
            now,
            trigger="operator" if request is not None else "periodic",
            full=request is not None,
            request_id=request.request_id if request is not None else None,
            source=request.source if request is not None else None,
        )
        report.transitions += result.transitions
        await self.book_sync(SyncResult(result.new_fills, [], result.realized_pnl), report, now)
        if request is not None:
            ack = self.controls.acknowledge_reconcile(request, now)
            self.tracker.batch.put(keys.RECONCILE_ACK_KEY, ack, StateCategory.CONTROL)
            await self.events.emit(
                EventType.CONTROL_APPLIED,
                now,
                reconcile_request=request.to_dict(),
                outcome="coherent" if result.coherent else "mismatch",
                trading_state=self.risk.state,
            )

    def _snapshot(self, market: MarketData) -> RiskSnapshot:
        return risk_snapshot(
            symbols=self.symbols,
            market=market,
            products=self.products,
            positions=self.tracker.book.positions,
            history=self.history,
            outcomes=self.outcomes,
            open_orders=len(self.tracker.open_orders),
        )

    async def _decide(
        self, symbol: Symbol, market: MarketData, snapshot: RiskSnapshot, now: datetime
    ) -> _SymbolDecision:
        """Ask the strategy about ``symbol``; a trade becomes an order request (not yet judged or sent)."""
        quote = market.quotes.get(symbol)
        record = self.tracker.book.get(symbol)
        if quote is None:
            return _SymbolDecision(SymbolRow(symbol, None, "none", "-", "no quote", None, record.quantity))
        product = self.products[symbol]
        view = MarketView(
            symbol=symbol,
            mids=self.history.mids(symbol),
            quote=quote,
            product=product,
            equity_usd=snapshot.equity_usd,
            now=now,
        )
        position = record.to_position(quote.mid) if record.quantity != 0 else None
        decision = self.strategy.decide(view, position)
        self.metrics.decisions.labels(symbol=symbol, action=decision.action.value).inc()
        text = f"{decision.action.value} {decision.quantity}" if decision.is_trade else decision.action.value
        reduce_only = decision.action is Action.CLOSE and product.is_derivative
        request = decision.to_order_request(OrderType.MARKET, reduce_only=reduce_only)
        row = SymbolRow(symbol, quote.mid, text, "-", "skipped", None, record.quantity, decision.reason)
        if request is None:
            return _SymbolDecision(row)
        # The exchange may still have (or get) the order of an unresolved intent: no second one meanwhile.
        unresolved = self.tracker.unresolved_for(symbol)
        skipped = None
        if unresolved is not None:
            skipped = f"unresolved intent {unresolved.client_order_id} ({unresolved.status.value})"
        await self.events.emit(
            EventType.DECISION,
            now,
            symbol=symbol,
            action=decision.action,
            quantity=decision.quantity,
            reason=decision.reason,
            mark=quote.mid,
            **({"skipped": skipped} if skipped else {}),
        )
        if skipped is not None:
            return _SymbolDecision(dataclasses.replace(row, reason=skipped))
        return _SymbolDecision(row, request)

    async def _execute(
        self, decisions: Sequence[_SymbolDecision], snapshot: RiskSnapshot, now: datetime, report: CycleReport
    ) -> list[SymbolRow]:
        """Send the cycle's orders as one batch (guards -> intents -> exchange); return the symbol rows."""
        requests = [d.request for d in decisions if d.request is not None]
        results = iter(await self.executor.submit_all(requests, snapshot, now) if requests else [])
        rows: list[SymbolRow] = []
        for decision in decisions:
            if decision.request is None:
                rows.append(decision.row)
                continue
            result = next(results)
            if result.action is ExecutionAction.PLACED:
                report.orders_placed += 1
            rows.append(_result_row(decision.row, result))
        return rows

    def _refresh_position(self, row: SymbolRow) -> SymbolRow:
        quantity = self.tracker.book.quantity(row.symbol)
        if quantity == row.position:
            return row
        return dataclasses.replace(row, position=quantity)

    async def _emergency(
        self, market: MarketData, snapshot: RiskSnapshot, report: CycleReport, now: datetime
    ) -> RiskSnapshot:
        """Carry out the operator's queued emergency requests before the strategy decides; book their fills
        and return the snapshot the strategy's orders are then judged against."""
        if self.emergency is None:
            return snapshot
        try:
            pending = await self.emergency.pending(self.state)
        except StateUnavailableError:
            if not self._warm_outage():
                raise
            return snapshot  # PostgreSQL down: the queue lives there; its requests wait until it answers
        if not pending:
            return snapshot
        report.emergency = await self.emergency.carry_out(
            pending,
            broker=self.broker,
            tracker=self.tracker,
            executor=self.executor,
            snapshot=snapshot,
            now=now,
        )
        for result in report.emergency:  # who asked (user@host:pid), why, and what was done
            await self.events.emit(EventType.CONTROL_APPLIED, now, emergency=result)
        report.orders_placed += sum(
            1 for result in report.emergency for row in result.get("orders", []) if row["action"] == "placed"
        )
        await self.book_sync(await self.tracker.sync(self.broker, now), report, now)
        snapshot = self._snapshot(market)
        self.last_snapshot = snapshot
        return snapshot

    def _pnl(
        self, market: MarketData, snapshot: RiskSnapshot
    ) -> tuple[Decimal, Decimal, Decimal | None, Decimal]:
        """Realized, unrealized, today's (the daily-loss guard's tracker) PnL and fees, for the cycle's log."""
        book = self.tracker.book
        daily = self.risk.daily_pnl_tracker
        today = daily.pnl_usd(snapshot.unrealized_pnl_usd) if daily is not None else None
        return book.realized_pnl, book.unrealized_pnl(market.marks), today, book.fees

    async def flush(self, market: MarketData | None, now: datetime) -> tuple[float, int]:
        """Queue guard state, safety mode and PnL, then write the whole batch at once; return (ms, keys)."""
        batch = self.tracker.batch
        batch.put(keys.GUARDS_KEY, self.risk.export_state(), StateCategory.GUARDS)
        batch.put(keys.SAFETY_KEY, safety_value(self.risk, now), StateCategory.SAFETY)
        marks = market.marks if market is not None else {}
        book = self.tracker.book
        batch.put(
            keys.PNL_KEY,
            {
                "realized_pnl": book.realized_pnl,
                "unrealized_pnl": book.unrealized_pnl(marks),
                "fees": book.fees,
                "equity_usd": equity_usd(market) if market is not None else None,
                "updated_at": now,
            },
            StateCategory.PORTFOLIO,
        )
        started = time.perf_counter()
        written = await batch.flush(self.state)
        elapsed = time.perf_counter() - started
        self.metrics.state_flush_seconds.observe(elapsed)
        return elapsed * 1000, written

    async def _record_transitions(self, transitions: Sequence[Transition]) -> None:
        for transition in transitions:
            await self.events.emit(EventType.STATE_TRANSITION, transition.at, **transition.to_dict())
            if not transition.cleared:
                await self.events.emit(
                    EventType.GUARD_TRIP,
                    transition.at,
                    reason=transition.reason,
                    detail=transition.detail,
                    to_state=transition.to_state,
                )

    def _update_metrics(self, report: CycleReport, market: MarketData) -> None:
        m = self.metrics
        m.cycles.labels(outcome="ok").inc()
        m.cycle_seconds.observe(report.duration_ms / 1000)
        m.set_trading_state(self.risk.state.value)
        m.last_cycle_timestamp.set(report.started_at.timestamp())
        m.open_orders.set(len(self.tracker.open_orders))
        marks = market.marks
        for symbol, mark in marks.items():
            m.mark_price.labels(symbol=symbol).set(float(mark))
        for symbol, position in self.tracker.book.positions.items():
            m.position_quantity.labels(symbol=symbol).set(float(position.quantity))
            m.unrealized_pnl.labels(symbol=symbol).set(float(position.unrealized(marks.get(symbol))))
        m.realized_pnl.set(float(self.tracker.book.realized_pnl))
        m.fees.set(float(self.tracker.book.fees))


def _result_row(row: SymbolRow, result: ExecutionResult) -> SymbolRow:
    order_id = result.order.order_id if result.order is not None else None
    return dataclasses.replace(
        row, verdict=result.verdict_text, action=result.action.value, order_id=order_id
    )


def _control(poll: ControlPoll) -> dict[str, object] | None:
    return None if poll.control is None else poll.control.to_dict()


def _fill_fields(fill: Fill) -> dict[str, object]:
    return {
        "trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "client_order_id": fill.client_order_id,
        "symbol": fill.symbol,
        "side": fill.side,
        "price": fill.price,
        "quantity": fill.quantity,
        "commission": fill.commission,
        "liquidity": fill.liquidity,
    }
