"""Mutable records the engine keeps (orders, fills, positions), the Clock port, and a JSON codec for them."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Protocol, TypeVar

__all__ = [
    "ZERO",
    "Clock",
    "ManualClock",
    "SimFill",
    "SimOrder",
    "SimPosition",
    "SystemClock",
    "ceil_to",
    "decode_record",
    "dstr",
    "encode_record",
    "floor_to",
    "iso",
    "parse_time",
]

ZERO = Decimal(0)
OPEN = "OPEN"
T = TypeVar("T")


class Clock(Protocol):
    """Where the engine gets "now" from; tests inject a :class:`ManualClock`."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def dstr(value: Decimal) -> str:
    """Render a Decimal as a plain decimal string (no exponent, no trailing zeros)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def floor_to(value: Decimal, increment: Decimal) -> Decimal:
    return (value / increment).to_integral_value(rounding=ROUND_FLOOR) * increment


def ceil_to(value: Decimal, increment: Decimal) -> Decimal:
    return (value / increment).to_integral_value(rounding=ROUND_CEILING) * increment


def iso(value: datetime | None) -> str:
    """RFC 3339 with a Z suffix, as Coinbase renders times; "" for None."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive values are taken as UTC."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(slots=True)
class SimOrder:
    order_id: str
    client_order_id: str
    product_id: str
    side: str
    kind: str  # MARKET | LIMIT | STOP_LIMIT
    tif: str  # IOC | GTC | GTD | FOK
    config_key: str
    config: dict[str, Any]
    created_time: datetime
    sequence: int
    base_size: Decimal | None = None
    quote_size: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_direction: str = ""
    end_time: datetime | None = None
    post_only: bool = False
    reduce_only: bool = False
    leverage: Decimal = Decimal(1)
    margin_type: str = "CROSS"
    status: str = "PENDING"
    trigger_status: str = "INVALID_ORDER_TYPE"
    filled_size: Decimal = ZERO
    filled_value: Decimal = ZERO
    total_fees: Decimal = ZERO
    number_of_fills: int = 0
    last_fill_time: datetime | None = None
    hold_amount: Decimal = ZERO
    hold_currency: str = ""
    cancel_message: str = ""
    reject_reason: str = ""
    edit_history: list[dict[str, str]] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        """Unfilled base size (zero for quote-sized market orders once done)."""
        if self.base_size is None:
            return ZERO
        return max(self.base_size - self.filled_size, ZERO)

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    @property
    def stop_pending(self) -> bool:
        return self.trigger_status == "STOP_PENDING"

    @property
    def average_filled_price(self) -> Decimal:
        return self.filled_value / self.filled_size if self.filled_size else ZERO


@dataclass(slots=True)
class SimFill:
    entry_id: str
    trade_id: str
    order_id: str
    product_id: str
    side: str
    price: Decimal
    size: Decimal
    commission: Decimal
    liquidity: str  # MAKER | TAKER
    trade_time: datetime
    sequence: int
    notional: Decimal = ZERO  # USD value (price * size * contract size)


@dataclass(slots=True)
class SimPosition:
    """A futures position in contracts: ``net_size`` is signed (long > 0)."""

    product_id: str
    net_size: Decimal = ZERO
    entry_vwap: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    daily_realized_pnl: Decimal = ZERO
    funding_paid: Decimal = ZERO
    leverage: Decimal = Decimal(1)
    margin_type: str = "CROSS"


# --- JSON codec: Decimal <-> str, datetime <-> ISO, driven by the dataclass annotations ------------------


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def encode_record(record: Any) -> dict[str, Any]:
    """Encode a dataclass record to JSON-safe values."""
    return {f.name: _encode(getattr(record, f.name)) for f in dataclasses.fields(record)}


def _decode(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) else ()
    if hint is Decimal or Decimal in args:
        return Decimal(value)
    if hint is datetime or datetime in args:
        return parse_time(value) if value else None
    return value


def decode_record(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a dataclass record encoded by :func:`encode_record` (unknown keys are ignored)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: _decode(hints[k], v) for k, v in data.items() if k in names}
    return cls(**kwargs)
