"""Reconciliation: make state agree with the exchange -- at start (BEFORE the first new order), every
``reconcile_every_cycles`` cycles, and when an operator asks (``perps-bot --reconcile``).

Order discovery is the core of every run: the exchange's orders whose client order id carries the bot's
prefix and that were created since the stored watermark (``reconcile:watermark``, minus ``LOOKUP_MARGIN``;
``list_orders`` in ANY status) are matched with state --

* the order of an unresolved (PENDING / UNKNOWN) intent -> adopted, the intent SUBMITTED; an unresolved intent
  not listed stays UNKNOWN within ``intent_grace_seconds`` of its writing and is FAILED after it;
* an order state never had (a create that timed out and landed later, even after its intent was FAILED) ->
  adopted and followed to terminal; when state has no intent for it at all (an earlier holder sent it with
  the intent only in an outage journal it never replayed: fenced, or its host gone), an intent rebuilt from
  the exchange's order is written with it (SUBMITTED, then finished like any other; ``intents_rebuilt``);
* a known order the exchange still shows open while state finished it -> followed again;

and every fill of the listed orders is booked once per trade id (asked for ``FILLS_CHUNK`` order ids at a
time). The watermark then advances to the older of the run's start and the oldest intent still unresolved, in
the same batch as what the run adopted and booked: never past what was processed.

Start-up (``Reconciler.run``):

1. Detect an unclean shutdown (the ``metadata:running`` marker is still there).
2. (The caller restored the risk engine from ``guards:risk``; a corrupted record starts it HALTED.)
3. Discover as above, plus every OPEN / PENDING order carrying the prefix, however old.
4. After an unclean shutdown with ``shutdown_order_policy=cancel``, batch-cancel the bot's open orders.
5. Ingest fills missed while down: every fill of the bot's orders not yet booked, once per trade id.
6. Compare positions with the exchange: the fill-derived book against the same ledger over the exchange's
   fills of ALL the bot's live orders plus the net quantity of the archived ones (``metadata:archive``,
   ``history.py``: their fills are all booked and never asked for again); for spot, the bot's net position
   per base currency must not exceed the exchange balance (available + hold); for derivatives,
   ``list_positions``. A mismatch raises ``RECONCILE_MISMATCH`` (REDUCE_ONLY, or HALTED per
   ``mismatch_state``), reported in the event and the log.
7. Flush everything in one batch with the watermark and the running marker; a ``reconciliation`` event.

Periodic and operator runs (``Reconciler.discover``) queue their writes on the cycle's batch and check the
spot balances and derivatives positions; an operator run also re-derives positions from all the bot's fills.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot_v2.brokerages.base import Broker
from bot_v2.domain import Fill, Order, OrderStatus, Symbol
from bot_v2.errors import StateIntegrityError
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys, oplog
from bot_v2.orchestration.ledger import derive_positions
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.orchestration.tracking import (
    LOOKUP_MARGIN,
    IntentResolution,
    OrderTracker,
    SyncResult,
    emit_resolutions,
    fills_of,
)
from bot_v2.risk import ReasonCode, RiskConfig, RiskEngine, TradingState, Transition, serde

logger = logging.getLogger(__name__)

__all__ = [
    "PositionMismatch",
    "ReconcileReport",
    "Reconciler",
    "load_risk_engine",
    "parse_watermark",
]

ZERO = Decimal(0)
_WATERMARK_FIELDS = frozenset({"watermark", "updated_at"})


@dataclass(frozen=True, slots=True)
class PositionMismatch:
    """The bot's fill-derived quantity disagrees with the exchange's for ``symbol``."""

    symbol: Symbol
    bot_quantity: Decimal
    exchange_quantity: Decimal
    source: str  # "exchange_fills" | "exchange_positions" | "exchange_balance"

    def to_dict(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "bot_quantity": self.bot_quantity,
            "exchange_quantity": self.exchange_quantity,
            "source": self.source,
        }


@dataclass(slots=True)
class ReconcileReport:
    """What one reconciliation found and did (``trigger``: startup | periodic | operator)."""

    trigger: str = "startup"
    request_id: int | None = None
    source: str | None = None  # who asked (operator runs: the request's cli:<user>@<host>:<pid> (<reason>))
    unclean_shutdown: bool = False
    previous_run: dict[str, object] | None = None
    guard_state_restored: bool = False
    guard_state_error: str | None = None
    since: datetime | None = None
    listed_orders: int = 0
    adopted_orders: list[str] = field(default_factory=list)
    intents_rebuilt: list[str] = field(default_factory=list)  # adopted orders state had no intent for
    followed_again: list[str] = field(default_factory=list)
    resolved_intents: list[IntentResolution] = field(default_factory=list)
    cancelled_orders: list[str] = field(default_factory=list)
    missed_fills: int = 0
    mismatches: list[PositionMismatch] = field(default_factory=list)
    watermark: datetime | None = None
    watermark_error: str | None = None
    trading_state: str = TradingState.ACTIVE.value
    keys_written: int = 0
    duration_ms: float = 0.0
    positions_checked: int = 0  # positions and spot balances compared with the exchange
    # not reported: what the caller books (fills for the risk engine and events, guard transitions)
    new_fills: list[Fill] = field(default_factory=list)
    realized_pnl: Decimal = ZERO
    transitions: list[Transition] = field(default_factory=list)

    @property
    def coherent(self) -> bool:
        return not self.mismatches and self.guard_state_error is None

    def book(self, sync: SyncResult) -> None:
        self.new_fills += sync.new_fills
        self.realized_pnl += sync.realized_pnl
        self.missed_fills = len(self.new_fills)

    def to_dict(self) -> dict[str, object]:
        return {
            "trigger": self.trigger,
            "request_id": self.request_id,
            "source": self.source,
            "unclean_shutdown": self.unclean_shutdown,
            "previous_run": self.previous_run,
            "guard_state_restored": self.guard_state_restored,
            "guard_state_error": self.guard_state_error,
            "since": self.since,
            "listed_orders": self.listed_orders,
            "adopted_orders": self.adopted_orders,
            "intents_rebuilt": self.intents_rebuilt,
            "followed_again": self.followed_again,
            "resolved_intents": [r.to_dict() for r in self.resolved_intents],
            "cancelled_orders": self.cancelled_orders,
            "missed_fills": self.missed_fills,
            "mismatches": [m.to_dict() for m in self.mismatches],
            "coherent": self.coherent,
            "watermark": self.watermark,
            "watermark_error": self.watermark_error,
            "trading_state": self.trading_state,
            "keys_written": self.keys_written,
            "duration_ms": round(self.duration_ms, 3),
        }


def parse_watermark(value: object) -> datetime:
    """Read ``reconcile:watermark`` strictly; raise ``StateIntegrityError`` naming what is wrong."""
    where = keys.WATERMARK_KEY
    data = serde.expect_mapping(value, where)
    serde.expect_keys(data, _WATERMARK_FIELDS, where)
    serde.read_datetime(data["updated_at"], f"{where}.updated_at")
    return serde.read_datetime(data["watermark"], f"{where}.watermark")


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
    """Reconciles one bot's state with the exchange: at start (``run``) and during the loop (``discover``)."""

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
        spot_base_currencies: Mapping[Symbol, str] | None = None,
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
        self.spot_base_currencies = dict(spot_base_currencies or {})
        self.mismatch_state = mismatch_state
        self.watermark: datetime | None = None

    # --- start-up ---------------------------------------------------------------------------------------

    async def run(self, risk: RiskEngine, guard_error: str | None, now: datetime) -> ReconcileReport:
        """Reconcile, flush, set the running marker; return the report (also written as an event)."""
        started = time.perf_counter()
        report = ReconcileReport(guard_state_restored=guard_error is None, guard_state_error=guard_error)
        marker = await self.state.get_state(keys.RUNNING_KEY)
        report.unclean_shutdown = marker is not None
        report.previous_run = dict(marker) if isinstance(marker, dict) else None
        report.watermark_error = await self.load_watermark()

        open_orders = await self.broker.list_orders(statuses=[OrderStatus.OPEN, OrderStatus.PENDING])
        await self._discover_orders(report, now, also=open_orders)
        if report.unclean_shutdown and self.cancel_after_crash:
            await self._cancel_open(report)
        report.book(await self.tracker.sync(self.broker, now))
        exchange_fills = await fills_of(self.broker, sorted(self.tracker.order_ids))
        report.book(self._ingest(exchange_fills))
        await self._compare_positions(report, now, exchange_fills)
        if report.new_fills:
            fees = sum((f.commission for f in report.new_fills), start=ZERO)
            risk.record_realized_pnl(report.realized_pnl - fees, now)
        self._raise_mismatch(risk, report, now)
        report.trading_state = risk.state.value
        self._advance_watermark(report, now)

        batch = self.tracker.batch
        batch.put(keys.GUARDS_KEY, risk.export_state(), StateCategory.GUARDS)
        batch.put(
            keys.RUNNING_KEY,
            {"pid": os.getpid(), "started_at": now, "unclean_previous": report.unclean_shutdown},
            StateCategory.METADATA,
        )
        report.keys_written = await batch.flush(self.state)
        report.duration_ms = (time.perf_counter() - started) * 1000
        await self._report_startup(report, now)
        await emit_resolutions(self.events, report.resolved_intents, now)
        return report

    async def load_watermark(self) -> str | None:
        """Read the stored watermark; return an error text when it is unreadable (discovery then starts from
        the oldest intent state may not have finished, which is never later than a sound watermark)."""
        raw = await self.state.get_state(keys.WATERMARK_KEY)
        self.watermark = None
        if raw is None:
            return None
        try:
            self.watermark = parse_watermark(raw)
        except StateIntegrityError as exc:
            logger.warning("reconciliation: %s; discovery starts from the oldest unfinished intent", exc)
            return str(exc)
        return None

    # --- during the loop --------------------------------------------------------------------------------

    async def discover(
        self,
        risk: RiskEngine,
        now: datetime,
        *,
        trigger: str = "periodic",
        full: bool = False,
        request_id: int | None = None,
        source: str | None = None,
    ) -> ReconcileReport:
        """Discover the bot's orders since the watermark, adopt what state lacks, book their fills once, check
        positions; queue the writes on the tracker's batch (the cycle flushes them).

        ``full`` also re-derives every position from the exchange's fills of all the bot's orders. New fills
        and guard transitions are returned in the report for the caller to book and record; a mismatch has
        already raised ``RECONCILE_MISMATCH``.
        """
        started = time.perf_counter()
        report = ReconcileReport(
            trigger=trigger, request_id=request_id, source=source, guard_state_restored=True
        )
        listed = await self._discover_orders(report, now)
        order_ids = sorted(self.tracker.order_ids) if full else [o.order_id for o in listed]
        exchange_fills = await fills_of(self.broker, order_ids)
        report.book(self._ingest(exchange_fills))
        await self._compare_positions(report, now, exchange_fills if full else None)
        report.transitions = self._raise_mismatch(risk, report, now)
        report.trading_state = risk.state.value
        self._advance_watermark(report, now)
        report.duration_ms = (time.perf_counter() - started) * 1000
        await emit_resolutions(self.events, report.resolved_intents, now)
        await self.events.emit(EventType.RECONCILIATION, now, **report.to_dict())
        found = report.adopted_orders or report.resolved_intents or report.new_fills or report.mismatches
        log = logger.warning if report.mismatches else logger.info if found else logger.debug
        log(
            "reconciliation (%s): listed=%d adopted=%d intents=%d fills=%d mismatches=%d watermark=%s",
            trigger,
            report.listed_orders,
            len(report.adopted_orders),
            len(report.resolved_intents),
            len(report.new_fills),
            len(report.mismatches),
            report.watermark.isoformat() if report.watermark else None,
        )
        return report

    # --- steps ------------------------------------------------------------------------------------------

    def _ours(self, order: Order) -> bool:
        return order.client_order_id.startswith(self.prefix)

    def _since(self, now: datetime) -> datetime:
        """Where this run lists from: the watermark (else the oldest intent state may not have finished, else
        now: a state without intents sent nothing), or the oldest unresolved intent if older, minus the margin."""
        start = self.watermark or self.tracker.discovery_floor or now
        oldest = self.tracker.oldest_unresolved_at()
        if oldest is not None:
            start = min(start, oldest)
        return start - LOOKUP_MARGIN

    async def _discover_orders(
        self, report: ReconcileReport, now: datetime, *, also: Iterable[Order] = ()
    ) -> list[Order]:
        """List the bot's orders since the watermark (plus ``also``); resolve intents, adopt, follow again."""
        report.since = self._since(now)
        listed = await self.broker.list_orders(since=report.since)
        ours = list({o.order_id: o for o in (*also, *listed) if self._ours(o)}.values())
        report.listed_orders = len(ours)
        # Intents first: their orders become SUBMITTED, not anonymous adoptions.
        report.resolved_intents = await self.tracker.resolve_pending(self.broker, now, exchange_orders=ours)
        for order in ours:
            coid = order.client_order_id
            if coid in self.tracker.orders:
                continue  # followed already
            if order.order_id in self.tracker.order_ids:
                if not order.status.is_terminal:
                    # state finished it, yet the exchange says it is open: follow it again
                    self.tracker.track(order, now)
                    report.followed_again.append(coid)
                continue
            if self.tracker.adopt(order, now) is not None:
                report.intents_rebuilt.append(coid)
            report.adopted_orders.append(coid)
        if report.intents_rebuilt:
            logger.warning(
                "reconciliation (%s): %d adopted order(s) without an intent in state, intent rebuilt from the "
                "exchange: %s",
                report.trigger,
                len(report.intents_rebuilt),
                ", ".join(report.intents_rebuilt),
            )
        return ours

    def _ingest(self, fills: Sequence[Fill]) -> SyncResult:
        new, realized = self.tracker.ingest_fills(fills)
        return SyncResult(new_fills=new, realized_pnl=realized)

    async def _cancel_open(self, report: ReconcileReport) -> None:
        ids = [o.order_id for o in self.tracker.open_orders if not o.status.is_terminal]
        if not ids:
            oplog.cancelled_pending(0, 0, 0.0, "cancel")
            return
        started = time.perf_counter()
        results = await self.broker.cancel_orders(ids)
        report.cancelled_orders = [r.order_id for r in results if r.success]
        batch_size = max(1, int(getattr(self.broker, "cancel_batch_size", len(ids))))
        oplog.cancelled_pending(
            len(report.cancelled_orders),
            -(-len(ids) // batch_size),
            (time.perf_counter() - started) * 1000,
            "cancel",
        )

    async def _compare_positions(
        self, report: ReconcileReport, now: datetime, exchange_fills: Sequence[Fill] | None
    ) -> None:
        """Fills (when given: ALL the bot's exchange fills), spot balances, derivatives positions."""
        if exchange_fills is not None:
            derived = derive_positions(exchange_fills, self.tracker.contract_sizes)
            for symbol in sorted(set(derived) | set(self.tracker.book.positions)):
                report.positions_checked += 1
                bot_qty = self.tracker.book.quantity(symbol)
                exchange_qty = derived[symbol].quantity if symbol in derived else ZERO
                # archived history (history.py): its fills are not asked for again, their net is stored
                exchange_qty += self.tracker.archived_quantity(symbol)
                if bot_qty != exchange_qty:
                    report.mismatches.append(
                        PositionMismatch(symbol, bot_qty, exchange_qty, "exchange_fills")
                    )
        balance_mismatches = await self._balance_mismatches()
        if balance_mismatches:
            # A fill may have landed between the book's last sync and the balance read: sync, read again.
            report.book(await self.tracker.sync(self.broker, now))
            balance_mismatches = await self._balance_mismatches()
        report.mismatches += balance_mismatches
        report.positions_checked += len(set(self.spot_base_currencies.values()))
        if self.derivative_symbols:
            exchange_positions = {p.symbol: p.quantity for p in await self.broker.list_positions()}
            for symbol in self.derivative_symbols:
                report.positions_checked += 1
                bot_qty = self.tracker.book.quantity(symbol)
                exchange_qty = exchange_positions.get(symbol, ZERO)
                if bot_qty != exchange_qty:
                    report.mismatches.append(
                        PositionMismatch(symbol, bot_qty, exchange_qty, "exchange_positions")
                    )

    async def _balance_mismatches(self) -> list[PositionMismatch]:
        """Spot: the bot's net position in a base currency (over its symbols) must fit in the exchange's
        balance of it (available + hold); the account may hold more, never less."""
        if not self.spot_base_currencies:
            return []
        held: dict[str, Decimal] = {}
        for balance in await self.broker.list_balances():
            held[balance.currency] = held.get(balance.currency, ZERO) + balance.total
        by_currency: dict[str, list[Symbol]] = {}
        for symbol, currency in self.spot_base_currencies.items():
            by_currency.setdefault(currency, []).append(symbol)
        found = []
        for currency, symbols in sorted(by_currency.items()):
            bot_qty = sum((self.tracker.book.quantity(s) for s in symbols), start=ZERO)
            exchange_qty = held.get(currency, ZERO)
            if bot_qty > exchange_qty:
                name = Symbol("+".join(sorted(symbols)))
                found.append(PositionMismatch(name, bot_qty, exchange_qty, "exchange_balance"))
        return found

    def _raise_mismatch(self, risk: RiskEngine, report: ReconcileReport, now: datetime) -> list[Transition]:
        if not report.mismatches:
            return []
        detail = "; ".join(
            f"{m.symbol}: bot {m.bot_quantity} vs exchange {m.exchange_quantity} ({m.source})"
            for m in report.mismatches
        )
        logger.error(
            "reconciliation (%s): position mismatch, trading %s: %s",
            report.trigger,
            self.mismatch_state.value,
            detail,
        )
        return risk.raise_reason(ReasonCode.RECONCILE_MISMATCH, self.mismatch_state, detail, now)

    def _advance_watermark(self, report: ReconcileReport, now: datetime) -> None:
        """Everything created before this run started is processed, except what unresolved intents may still
        bring: queue the new watermark with the adoptions and fills of this run."""
        oldest = self.tracker.oldest_unresolved_at()
        mark = now if oldest is None else min(now, oldest)
        self.watermark = report.watermark = mark
        value: dict[str, Any] = {"watermark": mark, "updated_at": now}
        self.tracker.batch.put(keys.WATERMARK_KEY, value, StateCategory.METADATA)

    async def _report_startup(self, report: ReconcileReport, now: datetime) -> None:
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
        oplog.position_validation(
            report.positions_checked,
            [
                f"{m.symbol}: bot {m.bot_quantity} vs exchange {m.exchange_quantity} ({m.source})"
                for m in report.mismatches
            ],
        )
        oplog.engine_recovered(
            unclean=report.unclean_shutdown,
            adopted=len(report.adopted_orders),
            intents=len(report.resolved_intents),
            missed_fills=report.missed_fills,
            coherent=report.coherent,
            trading_state=report.trading_state,
            elapsed_ms=report.duration_ms,
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
