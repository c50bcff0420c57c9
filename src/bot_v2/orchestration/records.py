"""The loop's durable records: order intents, tracked orders and fills, with strict readers.

A record read back from state is checked field by field (``bot_v2.risk.serde``); a malformed one raises
``StateIntegrityError`` instead of being traded on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot_v2.domain import (
    ClientOrderId,
    Fill,
    Liquidity,
    Order,
    OrderId,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
)
from bot_v2.risk import serde

__all__ = [
    "ArchiveSummary",
    "IntentRecord",
    "IntentStatus",
    "OrderRecord",
    "fill_from_dict",
    "fill_to_dict",
]


class IntentStatus(enum.StrEnum):
    """Where an intent is. PENDING and UNKNOWN are unresolved: looked up at the exchange by client order id,
    and no new order is sent on their symbol meanwhile."""

    PENDING = "PENDING"  # durable, the exchange may or may not have it
    UNKNOWN = "UNKNOWN"  # sent, no answer, not (yet) found: looked up every cycle until the grace window ends
    SUBMITTED = "SUBMITTED"  # the exchange acknowledged it (order id known)
    FAILED = "FAILED"  # the exchange refused it, or it never reached the exchange
    DONE = "DONE"  # the order reached a terminal status and its fills are booked

    @property
    def is_unresolved(self) -> bool:
        """True while the exchange's answer is unknown (PENDING or UNKNOWN)."""
        return self in (IntentStatus.PENDING, IntentStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """What the bot meant to send, written before the exchange call."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    time_in_force: TimeInForce
    reduce_only: bool
    created_at: datetime
    status: IntentStatus = IntentStatus.PENDING
    order_id: OrderId | None = None
    reason: str | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_request(cls, request: OrderRequest, now: datetime) -> IntentRecord:
        assert request.client_order_id is not None
        return cls(
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            quantity=request.quantity,
            limit_price=request.limit_price,
            time_in_force=request.time_in_force,
            reduce_only=request.reduce_only,
            created_at=now,
            updated_at=now,
        )

    @classmethod
    def rebuilt_from(cls, order: Order, now: datetime, reason: str) -> IntentRecord:
        """The intent of an exchange order whose own intent state never got (an earlier holder journaled it
        and never replayed it): the exchange's fields, SUBMITTED (its order is known), written ``now``;
        ``created_at`` is when the exchange created the order (else ``now``)."""
        return cls(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            quantity=order.quantity,
            limit_price=order.limit_price,
            time_in_force=order.time_in_force,
            reduce_only=order.reduce_only,
            created_at=order.created_at or now,
            status=IntentStatus.SUBMITTED,
            order_id=order.order_id,
            reason=reason,
            updated_at=now,
        )

    def with_status(
        self,
        status: IntentStatus,
        now: datetime,
        *,
        order_id: OrderId | None = None,
        reason: str | None = None,
    ) -> IntentRecord:
        return replace(
            self,
            status=status,
            order_id=order_id or self.order_id,
            reason=reason if reason is not None else self.reason,
            updated_at=now,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "quantity": self.quantity,
            "limit_price": self.limit_price,
            "time_in_force": self.time_in_force.value,
            "reduce_only": self.reduce_only,
            "created_at": self.created_at,
            "status": self.status.value,
            "order_id": self.order_id,
            "reason": self.reason,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: object) -> IntentRecord:
        where = "intent"
        d = serde.expect_mapping(data, where)
        serde.expect_keys(d, set(_INTENT_FIELDS), where)
        order_id = d["order_id"]
        reason = d["reason"]
        return cls(
            client_order_id=ClientOrderId(serde.read_str(d["client_order_id"], f"{where}.client_order_id")),
            symbol=Symbol(serde.read_str(d["symbol"], f"{where}.symbol")),
            side=serde.read_enum(Side, d["side"], f"{where}.side"),
            order_type=serde.read_enum(OrderType, d["order_type"], f"{where}.order_type"),
            quantity=serde.read_decimal(d["quantity"], f"{where}.quantity"),
            limit_price=serde.read_optional_decimal(d["limit_price"], f"{where}.limit_price"),
            time_in_force=serde.read_enum(TimeInForce, d["time_in_force"], f"{where}.time_in_force"),
            reduce_only=serde.read_bool(d["reduce_only"], f"{where}.reduce_only"),
            created_at=serde.read_datetime(d["created_at"], f"{where}.created_at"),
            status=serde.read_enum(IntentStatus, d["status"], f"{where}.status"),
            order_id=None if order_id is None else OrderId(serde.read_str(order_id, f"{where}.order_id")),
            reason=None if reason is None else serde.read_str(reason, f"{where}.reason"),
            updated_at=serde.read_optional_datetime(d["updated_at"], f"{where}.updated_at"),
        )


_INTENT_FIELDS = (
    "client_order_id",
    "symbol",
    "side",
    "order_type",
    "quantity",
    "limit_price",
    "time_in_force",
    "reduce_only",
    "created_at",
    "status",
    "order_id",
    "reason",
    "updated_at",
)


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order the bot tracks, as the exchange last reported it (plus how much of it is booked).

    ``booked_quantity``: the quantity of this order's fills already booked into the position (by
    ``OrderTracker.ingest_fills``, in the same state batch as the fills). What the order may still move the
    booked position by -- ``quantity - booked_quantity`` while it is not terminal, ``filled_quantity -
    booked_quantity`` once it is -- counts toward exposure and position limits (``market.unbooked_requests``).
    A record written before the field existed reads it as 0 (counts more, never less)."""

    order_id: OrderId
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    average_fill_price: Decimal | None
    total_fees: Decimal
    updated_at: datetime
    adopted: bool = False
    booked_quantity: Decimal = Decimal(0)

    @classmethod
    def from_order(
        cls, order: Order, now: datetime, *, adopted: bool = False, booked_quantity: Decimal = Decimal(0)
    ) -> OrderRecord:
        return cls(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            status=order.status,
            quantity=order.quantity,
            filled_quantity=order.filled_quantity,
            average_fill_price=order.average_fill_price,
            total_fees=order.total_fees,
            updated_at=now,
            adopted=adopted,
            booked_quantity=booked_quantity,
        )

    @property
    def unbooked_quantity(self) -> Decimal:
        """What this order may still move the booked position by: the part not yet filled plus the filled part
        not yet booked while it is not terminal (``quantity - booked``), the filled part not yet booked once
        it is (``filled_quantity - booked``); never below 0."""
        total = self.filled_quantity if self.status.is_terminal else self.quantity
        return max(total - self.booked_quantity, Decimal(0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "status": self.status.value,
            "quantity": self.quantity,
            "filled_quantity": self.filled_quantity,
            "average_fill_price": self.average_fill_price,
            "total_fees": self.total_fees,
            "updated_at": self.updated_at,
            "adopted": self.adopted,
            "booked_quantity": self.booked_quantity,
        }

    @classmethod
    def from_dict(cls, data: object) -> OrderRecord:
        where = "order"
        d = serde.expect_mapping(data, where)
        serde.expect_keys(d, set(_ORDER_FIELDS), where, optional={"booked_quantity"})
        booked = d.get("booked_quantity", 0)  # absent in records written before it: 0 counts more, never less
        return cls(
            order_id=OrderId(serde.read_str(d["order_id"], f"{where}.order_id")),
            client_order_id=ClientOrderId(serde.read_str(d["client_order_id"], f"{where}.client_order_id")),
            symbol=Symbol(serde.read_str(d["symbol"], f"{where}.symbol")),
            side=serde.read_enum(Side, d["side"], f"{where}.side"),
            status=serde.read_enum(OrderStatus, d["status"], f"{where}.status"),
            quantity=serde.read_decimal(d["quantity"], f"{where}.quantity"),
            filled_quantity=serde.read_decimal(d["filled_quantity"], f"{where}.filled_quantity"),
            average_fill_price=serde.read_optional_decimal(
                d["average_fill_price"], f"{where}.average_fill_price"
            ),
            total_fees=serde.read_decimal(d["total_fees"], f"{where}.total_fees"),
            updated_at=serde.read_datetime(d["updated_at"], f"{where}.updated_at"),
            adopted=serde.read_bool(d["adopted"], f"{where}.adopted"),
            booked_quantity=serde.read_decimal(booked, f"{where}.booked_quantity"),
        )


_ORDER_FIELDS = (
    "order_id",
    "client_order_id",
    "symbol",
    "side",
    "status",
    "quantity",
    "filled_quantity",
    "average_fill_price",
    "total_fees",
    "updated_at",
    "adopted",
)


def fill_to_dict(fill: Fill) -> dict[str, Any]:
    """A fill as a state value."""
    return {
        "trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "price": fill.price,
        "quantity": fill.quantity,
        "commission": fill.commission,
        "liquidity": fill.liquidity.value,
        "trade_time": fill.trade_time,
        "client_order_id": fill.client_order_id,
    }


def fill_from_dict(data: object) -> Fill:
    """Read a stored fill back, strictly."""
    where = "fill"
    d = serde.expect_mapping(data, where)
    serde.expect_keys(
        d,
        {
            "trade_id",
            "order_id",
            "symbol",
            "side",
            "price",
            "quantity",
            "commission",
            "liquidity",
            "trade_time",
        },
        where,
        optional={"client_order_id"},
    )
    coid = d.get("client_order_id")
    return Fill(
        trade_id=TradeId(serde.read_str(d["trade_id"], f"{where}.trade_id")),
        order_id=OrderId(serde.read_str(d["order_id"], f"{where}.order_id")),
        symbol=Symbol(serde.read_str(d["symbol"], f"{where}.symbol")),
        side=serde.read_enum(Side, d["side"], f"{where}.side"),
        price=serde.read_decimal(d["price"], f"{where}.price"),
        quantity=serde.read_decimal(d["quantity"], f"{where}.quantity"),
        commission=serde.read_decimal(d["commission"], f"{where}.commission"),
        liquidity=serde.read_enum(Liquidity, d["liquidity"], f"{where}.liquidity"),
        trade_time=serde.read_datetime(d["trade_time"], f"{where}.trade_time"),
        client_order_id=None
        if coid is None
        else ClientOrderId(serde.read_str(coid, f"{where}.client_order_id")),
    )


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    """``metadata:archive``: what history archiving (``history.py``) moved out of the live keys so far.

    ``quantities``: per symbol, the signed net quantity of every archived fill -- reconciliation adds it to
    the position it re-derives from the exchange's fills of the live orders. ``horizon``: every archived
    record is older than it (order discovery never reaches back that far). ``pending_keys`` /
    ``pending_order_ids``: live records already copied to the archive (and counted) whose deletion has not
    been confirmed: start-up treats them as archived, the next archiving run deletes them.
    """

    quantities: Mapping[Symbol, Decimal] = field(default_factory=dict)
    orders: int = 0
    intents: int = 0
    fills: int = 0
    horizon: datetime | None = None
    newest_intent_at: datetime | None = None
    pending_keys: tuple[str, ...] = ()
    pending_order_ids: tuple[OrderId, ...] = ()
    updated_at: datetime | None = None

    def quantity(self, symbol: Symbol) -> Decimal:
        """The net quantity of ``symbol``'s archived fills (0 when none)."""
        return self.quantities.get(symbol, Decimal(0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantities": {s: q for s, q in sorted(self.quantities.items())},
            "orders": self.orders,
            "intents": self.intents,
            "fills": self.fills,
            "horizon": self.horizon,
            "newest_intent_at": self.newest_intent_at,
            "pending_keys": list(self.pending_keys),
            "pending_order_ids": list(self.pending_order_ids),
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: object) -> ArchiveSummary:
        where = "archive"
        d = serde.expect_mapping(data, where)
        serde.expect_keys(d, set(_ARCHIVE_FIELDS), where)
        quantities = serde.expect_mapping(d["quantities"], f"{where}.quantities")
        return cls(
            quantities={
                Symbol(s): serde.read_decimal(q, f"{where}.quantities.{s}") for s, q in quantities.items()
            },
            orders=serde.read_int(d["orders"], f"{where}.orders"),
            intents=serde.read_int(d["intents"], f"{where}.intents"),
            fills=serde.read_int(d["fills"], f"{where}.fills"),
            horizon=serde.read_optional_datetime(d["horizon"], f"{where}.horizon"),
            newest_intent_at=serde.read_optional_datetime(d["newest_intent_at"], f"{where}.newest_intent_at"),
            pending_keys=tuple(
                serde.read_str(k, f"{where}.pending_keys")
                for k in serde.read_list(d["pending_keys"], f"{where}.pending_keys")
            ),
            pending_order_ids=tuple(
                OrderId(serde.read_str(k, f"{where}.pending_order_ids"))
                for k in serde.read_list(d["pending_order_ids"], f"{where}.pending_order_ids")
            ),
            updated_at=serde.read_optional_datetime(d["updated_at"], f"{where}.updated_at"),
        )


_ARCHIVE_FIELDS = (
    "quantities",
    "orders",
    "intents",
    "fills",
    "horizon",
    "newest_intent_at",
    "pending_keys",
    "pending_order_ids",
    "updated_at",
)
