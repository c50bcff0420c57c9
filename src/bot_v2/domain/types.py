"""Domain value types. Money and sizes are ``Decimal``; datetimes are timezone-aware UTC; ids are NewTypes.

These are the only types that cross the Broker port: vendor payloads are converted at the adapter's edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import NewType

from bot_v2.errors import PriceError, SizeError

__all__ = [
    "Balance",
    "CancelResult",
    "Candle",
    "ClientOrderId",
    "EditPreview",
    "FeeTier",
    "Fill",
    "FuturesBalanceSummary",
    "KeyPermissions",
    "Liquidity",
    "MarginType",
    "Order",
    "OrderId",
    "OrderPreview",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "Portfolio",
    "Position",
    "Product",
    "ProductBook",
    "ProductType",
    "Quote",
    "Side",
    "Symbol",
    "TimeInForce",
    "TradeId",
    "ensure_utc",
    "is_multiple",
    "utc_now",
]

Symbol = NewType("Symbol", str)
OrderId = NewType("OrderId", str)
ClientOrderId = NewType("ClientOrderId", str)
TradeId = NewType("TradeId", str)

ZERO = Decimal(0)


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def ensure_utc(value: datetime) -> datetime:
    """Reject naive datetimes; convert aware ones to UTC."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} (timezone-aware UTC required)")
    return value.astimezone(UTC)


def is_multiple(value: Decimal, increment: Decimal) -> bool:
    """True when ``value`` is an exact multiple of ``increment`` (a zero increment accepts anything)."""
    if increment <= 0:
        return True
    return value % increment == 0


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(enum.StrEnum):
    GTC = "GTC"
    GTD = "GTD"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    OPEN = "OPEN"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.FAILED)


class ProductType(enum.StrEnum):
    SPOT = "SPOT"
    FUTURE = "FUTURE"


class MarginType(enum.StrEnum):
    CROSS = "CROSS"
    ISOLATED = "ISOLATED"


class Liquidity(enum.StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Product:
    """A tradable product with the increments and limits the exchange enforces."""

    symbol: Symbol
    base_currency: str
    quote_currency: str
    base_increment: Decimal
    price_increment: Decimal
    base_min_size: Decimal
    base_max_size: Decimal
    quote_min_size: Decimal = ZERO
    product_type: ProductType = ProductType.SPOT
    price: Decimal | None = None
    perpetual: bool = False
    contract_size: Decimal = Decimal(1)
    max_leverage: Decimal = Decimal(1)
    trading_disabled: bool = False
    #: perpetual-style futures: the current funding rate per funding interval (a fraction; > 0: longs pay)
    funding_rate: Decimal | None = None

    @property
    def is_derivative(self) -> bool:
        return self.product_type is ProductType.FUTURE


@dataclass(frozen=True, slots=True)
class Quote:
    """Best bid/ask at a moment."""

    symbol: Symbol
    bid: Decimal
    ask: Decimal
    time: datetime

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread_bps(self) -> Decimal:
        mid = self.mid
        return (self.ask - self.bid) / mid * 10_000 if mid else ZERO


@dataclass(frozen=True, slots=True)
class ProductBook:
    symbol: Symbol
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]
    time: datetime


@dataclass(frozen=True, slots=True)
class Candle:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the bot wants to send. ``quantity`` is always the base size."""

    symbol: Symbol
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    end_time: datetime | None = None
    client_order_id: ClientOrderId | None = None
    reduce_only: bool = False
    leverage: Decimal | None = None
    margin_type: MarginType | None = None
    post_only: bool = False

    def validate_shape(self) -> None:
        """Check the fields agree with each other (no product needed)."""
        if self.quantity <= 0:
            raise SizeError(f"{self.symbol}: order quantity must be positive, got {self.quantity}")
        if self.order_type is OrderType.MARKET:
            if self.time_in_force is not TimeInForce.IOC and self.time_in_force is not TimeInForce.GTC:
                raise PriceError(f"{self.symbol}: market orders are IOC, not {self.time_in_force}")
        else:
            if self.limit_price is None:
                raise PriceError(f"{self.symbol}: {self.order_type.lower()} order needs a limit price")
            if self.limit_price <= 0:
                raise PriceError(f"{self.symbol}: limit price must be positive, got {self.limit_price}")
        if self.order_type is OrderType.STOP_LIMIT:
            if self.stop_price is None:
                raise PriceError(f"{self.symbol}: stop-limit order needs a stop price")
            if self.time_in_force not in (TimeInForce.GTC, TimeInForce.GTD):
                raise PriceError(f"{self.symbol}: stop-limit orders are GTC or GTD, not {self.time_in_force}")
        if self.time_in_force is TimeInForce.GTD and self.order_type is not OrderType.MARKET:
            if self.end_time is None:
                raise PriceError(f"{self.symbol}: GTD order needs an end time")
            ensure_utc(self.end_time)
        if self.post_only and self.order_type is not OrderType.LIMIT:
            raise PriceError(f"{self.symbol}: post-only applies to limit orders only")

    def validate_for(self, product: Product) -> None:
        """Check sizes and prices against the product's limits and increments; raise a one-line error."""
        self.validate_shape()
        sym = product.symbol
        if self.quantity < product.base_min_size:
            raise SizeError(f"{sym}: size {self.quantity} is below the minimum {product.base_min_size}")
        if product.base_max_size > 0 and self.quantity > product.base_max_size:
            raise SizeError(f"{sym}: size {self.quantity} is above the maximum {product.base_max_size}")
        if not is_multiple(self.quantity, product.base_increment):
            raise SizeError(f"{sym}: size {self.quantity} is not a multiple of {product.base_increment}")
        for name, price in (("limit price", self.limit_price), ("stop price", self.stop_price)):
            if price is not None and not is_multiple(price, product.price_increment):
                raise PriceError(f"{sym}: {name} {price} is not a multiple of {product.price_increment}")
            if price is not None and price <= 0:
                raise PriceError(f"{sym}: {name} must be positive, got {price}")
        if self.reduce_only and not product.is_derivative:
            raise SizeError(f"{sym}: reduce-only is not allowed on spot products")
        if self.leverage is not None and self.leverage > product.max_leverage:
            raise SizeError(f"{sym}: leverage {self.leverage} is above the maximum {product.max_leverage}")


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the exchange reports it."""

    order_id: OrderId
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    order_type: OrderType
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal = ZERO
    average_fill_price: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    created_at: datetime | None = None
    total_fees: Decimal = ZERO
    reduce_only: bool = False
    leverage: Decimal | None = None
    reject_reason: str | None = None

    @property
    def remaining_quantity(self) -> Decimal:
        return max(self.quantity - self.filled_quantity, ZERO)


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: TradeId
    order_id: OrderId
    symbol: Symbol
    side: Side
    price: Decimal
    quantity: Decimal
    commission: Decimal
    liquidity: Liquidity
    trade_time: datetime
    client_order_id: ClientOrderId | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """A net position: ``quantity`` is signed (long > 0, short < 0)."""

    symbol: Symbol
    quantity: Decimal
    entry_price: Decimal
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    leverage: Decimal | None = None

    @property
    def side(self) -> Side | None:
        if self.quantity > 0:
            return Side.BUY
        if self.quantity < 0:
            return Side.SELL
        return None

    @property
    def notional(self) -> Decimal:
        price = self.mark_price if self.mark_price is not None else self.entry_price
        return abs(self.quantity) * price


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    available: Decimal
    hold: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.available + self.hold


@dataclass(frozen=True, slots=True)
class OrderPreview:
    """The exchange's preview of an order; ``errors`` empty means it would be accepted."""

    symbol: Symbol
    side: Side
    preview_id: str | None
    order_total: Decimal
    commission_total: Decimal
    base_size: Decimal
    quote_size: Decimal
    best_bid: Decimal | None
    best_ask: Decimal | None
    slippage: Decimal = ZERO
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    leverage: Decimal | None = None
    max_leverage: Decimal | None = None
    order_margin_total: Decimal = ZERO
    projected_liquidation_buffer: Decimal | None = None


@dataclass(frozen=True, slots=True)
class EditPreview:
    order_id: OrderId
    new_size: Decimal
    new_price: Decimal
    errors: tuple[str, ...] = ()
    slippage: Decimal = ZERO
    order_total: Decimal = ZERO
    commission_total: Decimal = ZERO
    best_bid: Decimal | None = None
    best_ask: Decimal | None = None
    preview_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelResult:
    order_id: OrderId
    success: bool
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class FeeTier:
    pricing_tier: str
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal
    total_volume: Decimal = ZERO
    total_fees: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class KeyPermissions:
    can_view: bool
    can_trade: bool
    can_transfer: bool
    portfolio_uuid: str | None = None
    portfolio_type: str | None = None


@dataclass(frozen=True, slots=True)
class Portfolio:
    uuid: str
    name: str
    portfolio_type: str
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class FuturesBalanceSummary:
    """CFM futures balance summary (USD)."""

    buying_power: Decimal
    total_usd_balance: Decimal
    unrealized_pnl: Decimal
    daily_realized_pnl: Decimal
    initial_margin: Decimal
    available_margin: Decimal
    liquidation_buffer_amount: Decimal
    liquidation_buffer_percentage: Decimal
    extras: dict[str, str] = field(default_factory=dict)
