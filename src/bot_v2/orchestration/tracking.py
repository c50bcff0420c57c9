"""``OrderTracker``: the bot's book of orders, fills and positions, kept in step with the exchange.

It follows every order the bot placed or adopted until it is terminal (polling ``get_order``) and ingests
each fill exactly once, keyed by trade id: the fill, the order, the intent and the position it moves are
queued into the cycle's ``StateBatch`` together. It also resolves intents whose fate is unknown (a crash or
a timeout between the intent write and the acknowledgement) by looking the client order id up at the
exchange -- it is adopted if found and marked failed if not. An intent is never submitted twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from bot_v2.brokerages.base import Broker
from bot_v2.domain import ClientOrderId, Fill, Order, OrderId, OrderStatus, Symbol, TradeId
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.batch import StateBatch
from bot_v2.orchestration.concurrency import task_group
from bot_v2.orchestration.ledger import PositionBook, PositionRecord
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.orchestration.records import IntentRecord, IntentStatus, OrderRecord, fill_to_dict

logger = logging.getLogger(__name__)

__all__ = ["IntentResolution", "OrderTracker", "SyncResult"]

#: Sizes of the state reads at start-up (keys per ``batch_get_state``).
_READ_CHUNK = 500


@dataclass(slots=True)
class SyncResult:
    """What one sync found: new fills (booked), orders that changed, realized PnL of the new fills."""

    new_fills: list[Fill] = field(default_factory=list)
    updated_orders: list[OrderRecord] = field(default_factory=list)
    realized_pnl: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class IntentResolution:
    """How a pending intent was resolved."""

    client_order_id: ClientOrderId
    outcome: str  # "adopted" | "failed"
    order_id: OrderId | None


class OrderTracker:
    """Orders, fills and positions of one bot, with their state writes queued on ``batch``."""

    def __init__(
        self,
        metrics: BotMetrics,
        *,
        contract_sizes: Mapping[Symbol, Decimal] | None = None,
    ) -> None:
        self.metrics = metrics
        self.batch = StateBatch()
        self.book = PositionBook()
        self.contract_sizes: dict[Symbol, Decimal] = dict(contract_sizes or {})
        # Only live work is kept in memory: orders being followed and intents not yet final.
        self.orders: dict[ClientOrderId, OrderRecord] = {}
        self.intents: dict[ClientOrderId, IntentRecord] = {}
        self.known_client_ids: set[ClientOrderId] = set()
        self.known_trade_ids: set[TradeId] = set()
        self.order_ids: set[OrderId] = set()

    # --- loading --------------------------------------------------------------------------------------

    async def load(self, state: StateStore) -> None:
        """Load intents, orders, positions and the set of booked trade ids from state."""
        intents = await _read_all(state, keys.INTENT_PREFIX)
        orders = await _read_all(state, keys.ORDER_PREFIX)
        positions = await _read_all(state, keys.POSITION_PREFIX)
        for value in intents.values():
            intent = IntentRecord.from_dict(value)
            self.known_client_ids.add(intent.client_order_id)
            if intent.status in (IntentStatus.PENDING, IntentStatus.SUBMITTED):
                self.intents[intent.client_order_id] = intent
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
        self.known_trade_ids = {TradeId(keys.suffix(k, keys.FILL_PREFIX)) for k in fill_keys}

    # --- queries --------------------------------------------------------------------------------------

    @property
    def open_orders(self) -> list[OrderRecord]:
        """Orders being followed: not yet terminal, or terminal with bookkeeping still to finish."""
        return list(self.orders.values())

    @property
    def pending_intents(self) -> list[IntentRecord]:
        return [i for i in self.intents.values() if i.status is IntentStatus.PENDING]

    def knows(self, client_order_id: ClientOrderId) -> bool:
        """True when state has (or had) an intent or order with this client id."""
        return client_order_id in self.known_client_ids

    # --- mutations (queued on the batch) --------------------------------------------------------------

    def record_intent(self, intent: IntentRecord) -> None:
        """Queue the intent's new status; a final one (DONE / FAILED) leaves memory."""
        self.known_client_ids.add(intent.client_order_id)
        if intent.status in (IntentStatus.DONE, IntentStatus.FAILED):
            self.intents.pop(intent.client_order_id, None)
        else:
            self.intents[intent.client_order_id] = intent
        self.batch.put(keys.intent_key(intent.client_order_id), intent.to_dict(), StateCategory.INTENTS)

    def track(self, order: Order, now: datetime, *, adopted: bool = False) -> OrderRecord:
        """Start (or keep) following ``order``; mark its intent SUBMITTED."""
        record = OrderRecord.from_order(order, now, adopted=adopted)
        self.orders[order.client_order_id] = record
        self.known_client_ids.add(order.client_order_id)
        self.order_ids.add(order.order_id)
        self.batch.put(keys.order_key(order.client_order_id), record.to_dict(), StateCategory.ORDERS)
        intent = self.intents.get(order.client_order_id)
        if intent is not None and intent.status is IntentStatus.PENDING:
            self.record_intent(intent.with_status(IntentStatus.SUBMITTED, now, order_id=order.order_id))
        return record

    def fail_intent(self, client_order_id: ClientOrderId, reason: str, now: datetime) -> None:
        intent = self.intents.get(client_order_id)
        if intent is not None:
            self.record_intent(intent.with_status(IntentStatus.FAILED, now, reason=reason))

    def ingest_fills(self, fills: Iterable[Fill]) -> tuple[list[Fill], Decimal]:
        """Book fills not seen before (by trade id), oldest first; return them and the PnL they realized."""
        new: list[Fill] = []
        realized = Decimal(0)
        for fill in sorted(fills, key=lambda f: (f.trade_time, f.trade_id)):
            if fill.trade_id in self.known_trade_ids:
                continue
            self.known_trade_ids.add(fill.trade_id)
            realized += self.book.apply(fill, self.contract_sizes.get(fill.symbol, Decimal(1)))
            self.batch.put(keys.fill_key(fill.trade_id), fill_to_dict(fill), StateCategory.FILLS)
            self.metrics.fills.labels(symbol=fill.symbol).inc()
            new.append(fill)
        for position in self.book.take_dirty():
            self.batch.put(keys.position_key(position.symbol), position.to_dict(), StateCategory.POSITIONS)
        return new, realized

    # --- exchange sync --------------------------------------------------------------------------------

    async def sync(self, broker: Broker, now: datetime) -> SyncResult:
        """Poll every open order and its fills; book new fills; finish orders that are terminal."""
        result = SyncResult()
        open_orders = self.open_orders
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
            record = OrderRecord.from_order(order, now, adopted=previous.adopted if previous else False)
            if previous is None or _changed(previous, record):
                self.orders[order.client_order_id] = record
                self.batch.put(keys.order_key(order.client_order_id), record.to_dict(), StateCategory.ORDERS)
                result.updated_orders.append(record)
        order_ids = [o.order_id for o in open_orders]
        fills = await broker.list_fills(order_ids=order_ids)
        result.new_fills, result.realized_pnl = self.ingest_fills(fills)
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
        """Resolve every PENDING intent against the exchange by client order id; never resubmit."""
        pending = self.pending_intents
        if not pending:
            return []
        if exchange_orders is None:
            symbols = sorted({i.symbol for i in pending})
            exchange_orders = await broker.list_orders(symbols=symbols)
        by_client_id = {o.client_order_id: o for o in exchange_orders}
        resolutions = []
        for intent in pending:
            order = by_client_id.get(intent.client_order_id)
            if order is not None:
                self.track(order, now)
                resolutions.append(IntentResolution(intent.client_order_id, "adopted", order.order_id))
            else:
                self.fail_intent(intent.client_order_id, "not found at the exchange", now)
                resolutions.append(IntentResolution(intent.client_order_id, "failed", None))
        return resolutions


def _changed(old: OrderRecord, new: OrderRecord) -> bool:
    return (old.status, old.filled_quantity, old.total_fees, old.average_fill_price) != (
        new.status,
        new.filled_quantity,
        new.total_fees,
        new.average_fill_price,
    )


async def _read_all(state: StateStore, prefix: str) -> dict[str, object]:
    """Read every key under ``prefix`` (in chunks)."""
    found = sorted(await state.get_keys_by_pattern(prefix + "*"))
    values: dict[str, object] = {}
    for start in range(0, len(found), _READ_CHUNK):
        chunk = found[start : start + _READ_CHUNK]
        got = await state.batch_get_state(chunk)
        values.update({k: v for k, v in got.items() if v is not None})
    return values
