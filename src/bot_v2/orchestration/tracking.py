"""``OrderTracker``: the bot's book of orders, fills and positions, kept in step with the exchange.

It follows every order the bot placed or adopted until it is terminal (polling ``get_order``) and ingests
each fill exactly once, keyed by trade id: the fill, the order, the intent and the position it moves are
queued into the cycle's ``StateBatch`` together. Fills are asked for in chunks of ``FILLS_CHUNK`` order ids.

It also resolves intents whose fate is unknown (a crash or a timeout between the intent write and the
acknowledgement) by looking the client order id up at the exchange: found -> adopted (SUBMITTED); not found
-> UNKNOWN, looked up again every cycle until ``intent_grace_seconds`` after the intent was written, then
FAILED. An order can land at the exchange a moment after its create call timed out; the grace window (and the
periodic discovery by client-id prefix in ``reconcile.py``) keeps it from being lost. An intent is never
submitted twice, and while one is unresolved no new order is sent on its symbol (``unresolved_for``).
An order adopted without any intent in state (``adopt``: an earlier holder's intent lived only in a journal it
never replayed) gets one rebuilt from the exchange's order, so every order the bot sent has its intent.

Start-up (``load``) reads the live keys only: ``intents:*``, ``orders:*``, ``positions:*`` and the list of
``fills:*`` keys (trade ids, no bodies). Terminal history older than the retention window has been moved to
``archive:*`` by ``history.py`` and is never listed or read here; ``metadata:archive`` (one record) says how
much position the archived fills carry (``archived_quantity``), how far back the archive reaches
(discovery never starts before it) and which live keys of an interrupted move count as archived already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from bot_v2.brokerages.base import Broker
from bot_v2.domain import ClientOrderId, Fill, Order, OrderId, OrderStatus, Symbol, TradeId, utc_now
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys, oplog
from bot_v2.orchestration.batch import StateBatch
from bot_v2.orchestration.concurrency import task_group
from bot_v2.orchestration.ledger import PositionBook, PositionRecord
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.orchestration.records import (
    ArchiveSummary,
    IntentRecord,
    IntentStatus,
    OrderRecord,
    fill_to_dict,
)

logger = logging.getLogger(__name__)

__all__ = [
    "FILLS_CHUNK",
    "LOOKUP_MARGIN",
    "REBUILT_REASON",
    "IntentResolution",
    "OrderTracker",
    "SyncResult",
    "emit_resolutions",
    "fills_of",
]

#: Sizes of the state reads at start-up (keys per ``batch_get_state``).
_READ_CHUNK = 500
#: Order ids per ``list_fills`` call: one request stays small however many orders are asked about.
FILLS_CHUNK = 50
#: Orders are listed from this long before the time they could have been created: covers the skew between
#: the bot's clock and the exchange's ``created_time``.
LOOKUP_MARGIN = timedelta(minutes=5)
#: The reason of an intent rebuilt from an adopted exchange order (``OrderTracker.adopt``).
REBUILT_REASON = "adopted: intent not in state (written by an earlier holder that did not store it)"


@dataclass(slots=True)
class SyncResult:
    """What one sync found: new fills (booked), orders that changed, realized PnL of the new fills."""

    new_fills: list[Fill] = field(default_factory=list)
    updated_orders: list[OrderRecord] = field(default_factory=list)
    realized_pnl: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class IntentResolution:
    """A change of an unresolved intent's status after a lookup at the exchange."""

    client_order_id: ClientOrderId
    outcome: str  # "adopted" (found: SUBMITTED) | "unknown" (not found yet) | "failed" (not found in time)
    order_id: OrderId | None
    symbol: Symbol | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"client_order_id": self.client_order_id, "outcome": self.outcome, "order_id": self.order_id}


async def fills_of(broker: Broker, order_ids: Iterable[OrderId], *, chunk: int = FILLS_CHUNK) -> list[Fill]:
    """Every fill of ``order_ids``, asking for at most ``chunk`` order ids per ``list_fills`` call."""
    ids = list(dict.fromkeys(order_ids))
    fills: list[Fill] = []
    for start in range(0, len(ids), chunk):
        fills += await broker.list_fills(order_ids=ids[start : start + chunk])
    return fills


async def emit_resolutions(
    events: EventStore, resolutions: Iterable[IntentResolution], now: datetime
) -> None:
    """One event per intent status change: ``recovery`` (adopted), ``intent_unknown``, ``intent_failed``."""
    for r in resolutions:
        if r.outcome == "adopted":
            await events.emit(
                EventType.RECOVERY,
                now,
                kind="intent_resolved",
                client_order_id=r.client_order_id,
                outcome=r.outcome,
                order_id=r.order_id,
                symbol=r.symbol,
            )
        else:
            kind = EventType.INTENT_UNKNOWN if r.outcome == "unknown" else EventType.INTENT_FAILED
            await events.emit(kind, now, client_order_id=r.client_order_id, symbol=r.symbol, detail=r.detail)


class OrderTracker:
    """Orders, fills and positions of one bot, with their state writes queued on ``batch``."""

    def __init__(
        self,
        metrics: BotMetrics,
        *,
        contract_sizes: Mapping[Symbol, Decimal] | None = None,
        intent_grace_seconds: float = 30.0,
    ) -> None:
        self.metrics = metrics
        self.intent_grace = timedelta(seconds=intent_grace_seconds)
        self.batch = StateBatch()
        self.book = PositionBook()
        self.contract_sizes: dict[Symbol, Decimal] = dict(contract_sizes or {})
        # Only live work is kept in memory: orders being followed and intents not yet final.
        self.orders: dict[ClientOrderId, OrderRecord] = {}
        self.intents: dict[ClientOrderId, IntentRecord] = {}
        self.known_client_ids: set[ClientOrderId] = set()
        # Client order ids of the live intents in state (any status), loaded or written by this process.
        self.intent_ids: set[ClientOrderId] = set()
        self.known_trade_ids: set[TradeId] = set()
        self.order_ids: set[OrderId] = set()
        # Where order discovery must start when no watermark is stored: the oldest intent that may not be
        # finished, else the newest intent (nothing this state sent can be older), never before the archive's
        # horizon. None: no intent at all.
        self.discovery_floor: datetime | None = None
        # What history archiving moved out of the live keys (``metadata:archive``).
        self.archive = ArchiveSummary()

    # --- loading --------------------------------------------------------------------------------------

    async def load(self, state: StateStore) -> None:
        """Load live intents, orders, positions, the booked trade ids and the archive summary from state.

        Archived history (``archive:*``) is neither listed nor read; keys of an interrupted archiving move
        (``ArchiveSummary.pending_keys``) are archived already and skipped.
        """
        raw_archive = await state.get_state(keys.ARCHIVE_KEY)
        self.archive = ArchiveSummary() if raw_archive is None else ArchiveSummary.from_dict(raw_archive)
        skip = frozenset(self.archive.pending_keys)
        intents = await _read_all(state, keys.INTENT_PREFIX, skip)
        orders = await _read_all(state, keys.ORDER_PREFIX, skip)
        positions = await _read_all(state, keys.POSITION_PREFIX)
        unfinished: list[datetime] = []
        newest = self.archive.newest_intent_at
        for value in intents.values():
            intent = IntentRecord.from_dict(value)
            self.known_client_ids.add(intent.client_order_id)
            self.intent_ids.add(intent.client_order_id)
            if intent.status.is_unresolved or intent.status is IntentStatus.SUBMITTED:
                self.intents[intent.client_order_id] = intent
            if intent.status is not IntentStatus.DONE:
                unfinished.append(intent.created_at)
            newest = intent.created_at if newest is None else max(newest, intent.created_at)
        self.discovery_floor = min(unfinished) if unfinished else newest
        if self.discovery_floor is not None and self.archive.horizon is not None:
            # Never list back into the archive: an archived order listed again would look new.
            self.discovery_floor = max(self.discovery_floor, self.archive.horizon + 2 * LOOKUP_MARGIN)
        for value in orders.values():
            order = OrderRecord.from_dict(value)
            self.known_client_ids.add(order.client_order_id)
            self.order_ids.add(order.order_id)
            if not order.status.is_terminal or order.client_order_id in self.intents:
                self.orders[order.client_order_id] = order
        self.book = PositionBook(
            {
                Symbol(keys.suffix(k, keys.POSITION_PREFIX)): PositionRecord.from_dict(v)
                for k, v in positions.items()
            }
        )
        fill_keys = await state.get_keys_by_pattern(keys.FILL_PREFIX + "*")
        self.known_trade_ids = {TradeId(keys.suffix(k, keys.FILL_PREFIX)) for k in fill_keys if k not in skip}

    # --- queries --------------------------------------------------------------------------------------

    @property
    def open_orders(self) -> list[OrderRecord]:
        """Orders being followed: not yet terminal, or terminal with bookkeeping still to finish."""
        return list(self.orders.values())

    @property
    def pending_intents(self) -> list[IntentRecord]:
        """Intents written but not (yet) answered by the exchange in this process."""
        return [i for i in self.intents.values() if i.status is IntentStatus.PENDING]

    @property
    def unresolved_intents(self) -> list[IntentRecord]:
        """PENDING and UNKNOWN intents: the exchange may or may not have their orders."""
        return [i for i in self.intents.values() if i.status.is_unresolved]

    def unresolved_for(self, symbol: Symbol) -> IntentRecord | None:
        """The oldest unresolved intent on ``symbol`` (no new order is sent on it meanwhile), or None."""
        found = [i for i in self.intents.values() if i.symbol == symbol and i.status.is_unresolved]
        return min(found, key=lambda i: i.created_at) if found else None

    def oldest_unresolved_at(self) -> datetime | None:
        """When the oldest unresolved intent was written (its order cannot be older), or None."""
        return min((i.created_at for i in self.unresolved_intents), default=None)

    def knows(self, client_order_id: ClientOrderId) -> bool:
        """True when state has (or had, in this process) a live intent or order with this client id."""
        return client_order_id in self.known_client_ids

    def has_intent(self, client_order_id: ClientOrderId) -> bool:
        """True when state has a live intent (any status) with this client id, or this process wrote one."""
        return client_order_id in self.intents or client_order_id in self.intent_ids

    def archived_quantity(self, symbol: Symbol) -> Decimal:
        """The net quantity of ``symbol``'s archived fills: reconciliation re-derives positions from the
        exchange's fills of the live orders only, so it adds this."""
        return self.archive.quantity(symbol)

    def archived(self, summary: ArchiveSummary) -> None:
        """History archiving stored ``summary``: its orders are no longer the tracker's to ask about."""
        self.archive = summary
        self.order_ids.difference_update(summary.pending_order_ids)

    # --- mutations (queued on the batch) --------------------------------------------------------------

    def record_intent(self, intent: IntentRecord) -> None:
        """Queue the intent's new status; a final one (DONE / FAILED) leaves memory."""
        self.known_client_ids.add(intent.client_order_id)
        self.intent_ids.add(intent.client_order_id)
        if intent.status in (IntentStatus.DONE, IntentStatus.FAILED):
            self.intents.pop(intent.client_order_id, None)
        else:
            self.intents[intent.client_order_id] = intent
        self.batch.put(keys.intent_key(intent.client_order_id), intent.to_dict(), StateCategory.INTENTS)

    def track(self, order: Order, now: datetime, *, adopted: bool = False) -> OrderRecord:
        """Start (or keep) following ``order``; mark its intent SUBMITTED. What of it is booked already (an order
        followed before) is kept."""
        previous = self.orders.get(order.client_order_id)
        booked = previous.booked_quantity if previous is not None else Decimal(0)
        record = OrderRecord.from_order(order, now, adopted=adopted, booked_quantity=booked)
        self.orders[order.client_order_id] = record
        self.known_client_ids.add(order.client_order_id)
        self.order_ids.add(order.order_id)
        self.batch.put(keys.order_key(order.client_order_id), record.to_dict(), StateCategory.ORDERS)
        intent = self.intents.get(order.client_order_id)
        if intent is not None and intent.status.is_unresolved:
            self.record_intent(intent.with_status(IntentStatus.SUBMITTED, now, order_id=order.order_id))
        return record

    def adopt(self, order: Order, now: datetime) -> IntentRecord | None:
        """Follow an order of the bot's prefix that state never had (adopted). When state has no intent for
        its client order id either -- an earlier holder sent it with the intent only in a journal it never
        replayed (fenced, or gone with its host) -- record one rebuilt from the exchange's order (SUBMITTED,
        finished like any other when the order is terminal) in the same batch; return it. An existing intent
        is never replaced."""
        rebuilt = None
        if not self.has_intent(order.client_order_id):
            rebuilt = IntentRecord.rebuilt_from(order, now, REBUILT_REASON)
            self.record_intent(rebuilt)
        self.track(order, now, adopted=True)
        return rebuilt

    def fail_intent(self, client_order_id: ClientOrderId, reason: str, now: datetime) -> None:
        intent = self.intents.get(client_order_id)
        if intent is not None:
            self.record_intent(intent.with_status(IntentStatus.FAILED, now, reason=reason))

    def mark_unknown(self, client_order_id: ClientOrderId, reason: str, now: datetime) -> bool:
        """A PENDING intent got no answer (or was not found): UNKNOWN. True when the status changed."""
        intent = self.intents.get(client_order_id)
        if intent is None or intent.status is not IntentStatus.PENDING:
            return False
        self.record_intent(intent.with_status(IntentStatus.UNKNOWN, now, reason=reason))
        return True

    def ingest_fills(self, fills: Iterable[Fill], *, source: str = "rest") -> tuple[list[Fill], Decimal]:
        """Book fills not seen before (by trade id), oldest first; return them and the PnL they realized.

        ``source``: how the bot learned of them (``ws``: a user-channel update, ``rest``: polling) -- the
        ``perps_bot_fill_booking_seconds`` histogram measures exchange fill time to now per source.

        Each new fill of a followed order adds its quantity to that order's ``booked_quantity`` (the order is
        found by order id: a fill may lack the client id); the updated order goes into the same batch, so the
        order never counts toward the limits a fill the position already holds (nor misses one it does not)."""
        booked_at = utc_now()
        new: list[Fill] = []
        realized = Decimal(0)
        followed = {o.order_id: o.client_order_id for o in self.orders.values()}
        booked_orders: dict[ClientOrderId, OrderRecord] = {}
        for fill in sorted(fills, key=lambda f: (f.trade_time, f.trade_id)):
            if fill.trade_id in self.known_trade_ids:
                continue
            self.known_trade_ids.add(fill.trade_id)
            realized += self.book.apply(fill, self.contract_sizes.get(fill.symbol, Decimal(1)))
            oplog.order_filled(
                fill.client_order_id or fill.order_id,
                fill.side.value,
                fill.quantity,
                fill.symbol,
                fill.price,
                fill.commission,
                fill.trade_id,
            )
            self.batch.put(keys.fill_key(fill.trade_id), fill_to_dict(fill), StateCategory.FILLS)
            self.metrics.fills.labels(symbol=fill.symbol).inc()
            lag = (booked_at - fill.trade_time).total_seconds()
            self.metrics.fill_booking_seconds.labels(source=source).observe(max(lag, 0.0))
            new.append(fill)
            coid = followed.get(fill.order_id)
            if coid is not None:
                record = self.orders[coid]
                record = replace(record, booked_quantity=record.booked_quantity + fill.quantity)
                self.orders[coid] = booked_orders[coid] = record
        for coid, record in booked_orders.items():
            self.batch.put(keys.order_key(coid), record.to_dict(), StateCategory.ORDERS)
        for position in self.book.take_dirty():
            self.batch.put(keys.position_key(position.symbol), position.to_dict(), StateCategory.POSITIONS)
        return new, realized

    # --- exchange sync --------------------------------------------------------------------------------

    async def sync(
        self, broker: Broker, now: datetime, *, only: Collection[OrderId] | None = None, source: str = "rest"
    ) -> SyncResult:
        """Poll every open order and its fills; book new fills; finish orders that are terminal.

        ``only``: just these of the followed orders (the ones a user-channel update named; ``source`` "ws")."""
        result = SyncResult()
        open_orders = self.open_orders
        if only is not None:
            open_orders = [o for o in open_orders if o.order_id in only]
        if not open_orders:
            return result
        fetched: list[asyncio.Task[Order]] = []
        async with task_group() as group:
            for record in open_orders:
                if not record.status.is_terminal:
                    fetched.append(group.create_task(broker.get_order(record.order_id)))
        for task in fetched:
            order = task.result()
            previous = self.orders.get(order.client_order_id)
            record = OrderRecord.from_order(
                order,
                now,
                adopted=previous.adopted if previous else False,
                booked_quantity=previous.booked_quantity if previous else Decimal(0),
            )
            if previous is None or _changed(previous, record):
                self.orders[order.client_order_id] = record
                self.batch.put(keys.order_key(order.client_order_id), record.to_dict(), StateCategory.ORDERS)
                result.updated_orders.append(record)
        fills = await fills_of(broker, (o.order_id for o in open_orders))
        result.new_fills, result.realized_pnl = self.ingest_fills(fills, source=source)
        for record in open_orders:
            current = self.orders[record.client_order_id]
            if current.status.is_terminal:
                self._finish(current, now)
        return result

    def _finish(self, order: OrderRecord, now: datetime) -> None:
        """The order is terminal and its fills are booked: finalize its intent and stop following it."""
        self.orders.pop(order.client_order_id, None)
        intent = self.intents.get(order.client_order_id)
        if intent is None:
            return
        if order.status is OrderStatus.FAILED:
            self.record_intent(intent.with_status(IntentStatus.FAILED, now, order_id=order.order_id))
        else:
            self.record_intent(intent.with_status(IntentStatus.DONE, now, order_id=order.order_id))

    async def resolve_pending(
        self, broker: Broker, now: datetime, *, exchange_orders: Sequence[Order] | None = None
    ) -> list[IntentResolution]:
        """Look every unresolved (PENDING / UNKNOWN) intent up by client order id; never resubmit.

        Found -> tracked, SUBMITTED. Not found -> UNKNOWN while ``now`` is within the grace window after the
        intent was written, FAILED after it. ``exchange_orders``: a listing the caller already has (it must
        cover every order created since the oldest unresolved intent); otherwise the intents' symbols are
        listed from then (minus ``LOOKUP_MARGIN``). Returns the status changes only.
        """
        unresolved = self.unresolved_intents
        if not unresolved:
            return []
        if exchange_orders is None:
            symbols = sorted({i.symbol for i in unresolved})
            since = min(i.created_at for i in unresolved) - LOOKUP_MARGIN
            exchange_orders = await broker.list_orders(symbols=symbols, since=since)
        by_client_id = {o.client_order_id: o for o in exchange_orders}
        resolutions = []
        for intent in unresolved:
            order = by_client_id.get(intent.client_order_id)
            coid = intent.client_order_id
            if order is not None:
                self.track(order, now)
                resolutions.append(IntentResolution(coid, "adopted", order.order_id, intent.symbol))
            elif now - intent.created_at > self.intent_grace:
                detail = f"not found at the exchange within {self.intent_grace.total_seconds():g}s"
                self.fail_intent(coid, detail, now)
                resolutions.append(IntentResolution(coid, "failed", None, intent.symbol, detail))
            elif self.mark_unknown(coid, "not found at the exchange (yet)", now):
                until = intent.created_at + self.intent_grace
                detail = f"not found at the exchange; looked up again until {until.isoformat()}"
                resolutions.append(IntentResolution(coid, "unknown", None, intent.symbol, detail))
        return resolutions


def _changed(old: OrderRecord, new: OrderRecord) -> bool:
    return (old.status, old.filled_quantity, old.total_fees, old.average_fill_price) != (
        new.status,
        new.filled_quantity,
        new.total_fees,
        new.average_fill_price,
    )


async def _read_all(state: StateStore, prefix: str, skip: frozenset[str] = frozenset()) -> dict[str, object]:
    """Read every key under ``prefix`` (in chunks), except ``skip``."""
    found = sorted(k for k in await state.get_keys_by_pattern(prefix + "*") if k not in skip)
    values: dict[str, object] = {}
    for start in range(0, len(found), _READ_CHUNK):
        chunk = found[start : start + _READ_CHUNK]
        got = await state.batch_get_state(chunk)
        values.update({k: v for k, v in got.items() if v is not None})
    return values
