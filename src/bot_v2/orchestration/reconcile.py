"""Start-up reconciliation: make state agree with the exchange BEFORE the first new order.

1. Detect an unclean shutdown (the ``metadata:running`` marker is still there).
2. Restore the risk engine (guard state, trading state, safety mode) from ``guards:risk``; a corrupted record
   starts the bot HALTED (``STARTUP`` reason) instead of trading on defaults.
3. List the exchange's open orders; adopt those carrying the bot's client-id prefix that state does not know.
4. Resolve every PENDING intent by client order id: found -> adopted, not found -> FAILED. Never resubmitted.
5. After an unclean shutdown with ``shutdown_order_policy=cancel``, batch-cancel the bot's open orders.
6. Ingest fills missed while down (every fill of the bot's orders not yet booked), once per trade id.
7. Compare the fill-derived positions with the exchange: the bot's fills at the exchange re-derived, and for
   derivatives ``list_positions``. A mismatch raises ``RECONCILE_MISMATCH`` (REDUCE_ONLY, or HALTED per
   ``mismatch_state``) with a report in the event log and the log.
8. Flush everything in one batch and set the running marker.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from bot_v2.brokerages.base import Broker
from bot_v2.domain import Fill, Order, OrderId, OrderStatus, Symbol
from bot_v2.errors import StateIntegrityError
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.ledger import derive_positions
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.orchestration.tracking import IntentResolution, OrderTracker
from bot_v2.risk import ReasonCode, RiskConfig, RiskEngine, TradingState

logger = logging.getLogger(__name__)

__all__ = ["PositionMismatch", "ReconcileReport", "Reconciler", "load_risk_engine"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PositionMismatch:
    """The bot's fill-derived quantity disagrees with the exchange's for ``symbol``."""

    symbol: Symbol
    bot_quantity: Decimal
    exchange_quantity: Decimal
    source: str  # "exchange_fills" | "exchange_positions"

    def to_dict(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "bot_quantity": self.bot_quantity,
            "exchange_quantity": self.exchange_quantity,
            "source": self.source,
        }


@dataclass(slots=True)
class ReconcileReport:
    """What start-up reconciliation found and did."""

    unclean_shutdown: bool = False
    previous_run: dict[str, object] | None = None
    guard_state_restored: bool = False
    guard_state_error: str | None = None
    adopted_orders: list[str] = field(default_factory=list)
    resolved_intents: list[IntentResolution] = field(default_factory=list)
    cancelled_orders: list[str] = field(default_factory=list)
    missed_fills: int = 0
    mismatches: list[PositionMismatch] = field(default_factory=list)
    trading_state: str = TradingState.ACTIVE.value
    keys_written: int = 0
    duration_ms: float = 0.0

    @property
    def coherent(self) -> bool:
        return not self.mismatches and self.guard_state_error is None

    def to_dict(self) -> dict[str, object]:
        return {
            "unclean_shutdown": self.unclean_shutdown,
            "previous_run": self.previous_run,
            "guard_state_restored": self.guard_state_restored,
            "guard_state_error": self.guard_state_error,
            "adopted_orders": self.adopted_orders,
            "resolved_intents": [
                {"client_order_id": r.client_order_id, "outcome": r.outcome, "order_id": r.order_id}
                for r in self.resolved_intents
            ],
            "cancelled_orders": self.cancelled_orders,
            "missed_fills": self.missed_fills,
            "mismatches": [m.to_dict() for m in self.mismatches],
            "coherent": self.coherent,
            "trading_state": self.trading_state,
            "keys_written": self.keys_written,
            "duration_ms": round(self.duration_ms, 3),
        }


async def load_risk_engine(
    state: StateStore, config: RiskConfig, now: datetime
) -> tuple[RiskEngine, str | None]:
    """Restore the engine from ``guards:risk``; a corrupted record gives a HALTED engine and the error."""
    raw = await state.get_state(keys.GUARDS_KEY)
    if raw is None:
        return RiskEngine(config), None
    try:
        return RiskEngine.restore(config, raw), None
    except StateIntegrityError as exc:
        engine = RiskEngine(config)
        engine.raise_reason(ReasonCode.STARTUP, TradingState.HALTED, f"guard state unreadable: {exc}", now)
        return engine, str(exc)


class Reconciler:
    """Runs the start-up reconciliation for one bot."""

    def __init__(
        self,
        *,
        broker: Broker,
        state: StateStore,
        tracker: OrderTracker,
        events: EventStore,
        metrics: BotMetrics,
        symbols: Sequence[Symbol],
        client_id_prefix: str,
        cancel_open_orders_after_crash: bool,
        derivative_symbols: Sequence[Symbol] = (),
        mismatch_state: TradingState = TradingState.REDUCE_ONLY,
    ) -> None:
        self.broker = broker
        self.state = state
        self.tracker = tracker
        self.events = events
        self.metrics = metrics
        self.symbols = tuple(symbols)
        self.prefix = client_id_prefix
        self.cancel_after_crash = cancel_open_orders_after_crash
        self.derivative_symbols = tuple(derivative_symbols)
        self.mismatch_state = mismatch_state

    async def run(self, risk: RiskEngine, guard_error: str | None, now: datetime) -> ReconcileReport:
        """Reconcile, flush, set the running marker; return the report (also written as an event)."""
        started = time.perf_counter()
        report = ReconcileReport(guard_state_restored=guard_error is None, guard_state_error=guard_error)
        marker = await self.state.get_state(keys.RUNNING_KEY)
        report.unclean_shutdown = marker is not None
        report.previous_run = dict(marker) if isinstance(marker, dict) else None

        open_orders = await self.broker.list_orders(statuses=[OrderStatus.OPEN, OrderStatus.PENDING])
        self._adopt(open_orders, report, now)
        await self._resolve_intents(open_orders, report, now)
        if report.unclean_shutdown and self.cancel_after_crash:
            await self._cancel_open(report)
        sync = await self.tracker.sync(self.broker, now)
        missed = list(sync.new_fills)
        realized = sync.realized_pnl
        exchange_fills = await self._bot_exchange_fills()
        late, late_realized = self.tracker.ingest_fills(exchange_fills)
        missed += late
        realized += late_realized
        report.missed_fills = len(missed)
        if missed:
            fees = sum((f.commission for f in missed), start=ZERO)
            risk.record_realized_pnl(realized - fees, now)
        await self._compare_positions(exchange_fills, report)
        if report.mismatches:
            detail = "; ".join(
                f"{m.symbol}: bot {m.bot_quantity} vs exchange {m.exchange_quantity} ({m.source})"
                for m in report.mismatches
            )
            risk.raise_reason(ReasonCode.RECONCILE_MISMATCH, self.mismatch_state, detail, now)
            logger.error(
                "reconciliation: position mismatch, trading %s: %s", self.mismatch_state.value, detail
            )
        report.trading_state = risk.state.value

        batch = self.tracker.batch
        batch.put(keys.GUARDS_KEY, risk.export_state(), StateCategory.GUARDS)
        batch.put(
            keys.RUNNING_KEY,
            {"pid": os.getpid(), "started_at": now, "unclean_previous": report.unclean_shutdown},
            StateCategory.METADATA,
        )
        report.keys_written = await batch.flush(self.state)
        report.duration_ms = (time.perf_counter() - started) * 1000
        await self._report(report, now)
        return report

    # --- steps ------------------------------------------------------------------------------------------

    def _ours(self, order: Order) -> bool:
        return order.client_order_id.startswith(self.prefix)

    def _adopt(self, open_orders: Sequence[Order], report: ReconcileReport, now: datetime) -> None:
        for order in open_orders:
            if not self._ours(order) or order.client_order_id in self.tracker.orders:
                continue
            if order.client_order_id in self.tracker.intents:
                continue  # a pending intent: resolved (and tracked) in the next step
            if self.tracker.knows(order.client_order_id):
                # state finished it, yet the exchange says it is open: follow it again
                self.tracker.track(order, now)
                continue
            self.tracker.track(order, now, adopted=True)
            report.adopted_orders.append(order.client_order_id)

    async def _resolve_intents(
        self, open_orders: Sequence[Order], report: ReconcileReport, now: datetime
    ) -> None:
        pending = self.tracker.pending_intents
        if not pending:
            return
        symbols = sorted({i.symbol for i in pending})
        known = {o.client_order_id: o for o in open_orders}
        for order in await self.broker.list_orders(symbols=symbols):
            known.setdefault(order.client_order_id, order)
        report.resolved_intents = await self.tracker.resolve_pending(
            self.broker, now, exchange_orders=list(known.values())
        )

    async def _cancel_open(self, report: ReconcileReport) -> None:
        ids = [o.order_id for o in self.tracker.open_orders if not o.status.is_terminal]
        if not ids:
            return
        results = await self.broker.cancel_orders(ids)
        report.cancelled_orders = [r.order_id for r in results if r.success]

    async def _bot_exchange_fills(self) -> list[Fill]:
        """Every fill the exchange has for the bot's orders (placed, adopted or resolved)."""
        order_ids: list[OrderId] = sorted(self.tracker.order_ids)
        if not order_ids:
            return []
        return await self.broker.list_fills(order_ids=order_ids)

    async def _compare_positions(self, exchange_fills: Sequence[Fill], report: ReconcileReport) -> None:
        derived = derive_positions(exchange_fills, self.tracker.contract_sizes)
        symbols = set(derived) | set(self.tracker.book.positions)
        for symbol in sorted(symbols):
            bot_qty = self.tracker.book.quantity(symbol)
            exchange_qty = derived[symbol].quantity if symbol in derived else ZERO
            if bot_qty != exchange_qty:
                report.mismatches.append(PositionMismatch(symbol, bot_qty, exchange_qty, "exchange_fills"))
        if self.derivative_symbols:
            exchange_positions = {p.symbol: p.quantity for p in await self.broker.list_positions()}
            for symbol in self.derivative_symbols:
                bot_qty = self.tracker.book.quantity(symbol)
                exchange_qty = exchange_positions.get(symbol, ZERO)
                if bot_qty != exchange_qty:
                    report.mismatches.append(
                        PositionMismatch(symbol, bot_qty, exchange_qty, "exchange_positions")
                    )

    async def _report(self, report: ReconcileReport, now: datetime) -> None:
        await self.events.emit(EventType.RECONCILIATION, now, **report.to_dict())
        if report.unclean_shutdown:
            self.metrics.recoveries.labels(kind="engine_crash").inc()
            self.metrics.recovery_seconds.observe(report.duration_ms / 1000)
            await self.events.emit(
                EventType.RECOVERY,
                now,
                kind="engine_crash",
                detected_at=now,
                recovery_ms=round(report.duration_ms, 3),
                keys_moved=report.keys_written,
                coherent=report.coherent,
            )
        log = logger.warning if (report.unclean_shutdown or not report.coherent) else logger.info
        log(
            "reconciliation: unclean=%s adopted=%d intents=%d cancelled=%d missed_fills=%d mismatches=%d "
            "state=%s",
            report.unclean_shutdown,
            len(report.adopted_orders),
            len(report.resolved_intents),
            len(report.cancelled_orders),
            report.missed_fills,
            len(report.mismatches),
            report.trading_state,
        )
