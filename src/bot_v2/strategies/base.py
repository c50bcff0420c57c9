"""The strategy interface: ``Strategy.decide(MarketView, Position | None) -> Decision``, pure and stateless.

The only state a strategy needs is recent prices; ``PriceHistory`` holds them outside the strategy, bounded,
serializable (``to_dict`` / ``from_dict``) and re-seedable from exchange candles, so a restarted bot continues
where it stopped. Sizing helpers put every quantity on the product's base increment and respect its min/max.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol, TypeVar

from bot_v2.domain import (
    Candle,
    ClientOrderId,
    OrderRequest,
    OrderType,
    Position,
    Product,
    Quote,
    Side,
    Symbol,
    TimeInForce,
)
from bot_v2.errors import ConfigError, StateIntegrityError

__all__ = [
    "Action",
    "Decision",
    "MarketView",
    "PriceHistory",
    "Strategy",
    "parse_params",
    "realized_volatility_pct",
    "size_for_notional",
    "sma",
    "volatility_scaled_size",
]

ZERO = Decimal(0)
P = TypeVar("P")


class Action(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"
    CLOSE = "CLOSE"


@dataclass(frozen=True, slots=True)
class MarketView:
    """What a strategy sees for one symbol at ``now``: recent mids (oldest first), optional candles, quote,
    the product's rules, and the account equity used for sizing."""

    symbol: Symbol
    mids: tuple[Decimal, ...]
    quote: Quote | None
    product: Product
    equity_usd: Decimal
    now: datetime
    candles: tuple[Candle, ...] = ()

    @property
    def price(self) -> Decimal | None:
        """The current price: the quote mid, else the last mid, else None."""
        if self.quote is not None and self.quote.mid > 0:
            return self.quote.mid
        return self.mids[-1] if self.mids else None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the strategy wants: ``action`` with an order ``quantity`` in base units (0 for HOLD)."""

    symbol: Symbol
    action: Action
    quantity: Decimal
    reason: str
    side: Side | None = None

    @classmethod
    def hold(cls, symbol: Symbol, reason: str) -> Decision:
        return cls(symbol, Action.HOLD, ZERO, reason)

    @classmethod
    def buy(cls, symbol: Symbol, quantity: Decimal, reason: str) -> Decision:
        return cls(symbol, Action.BUY, quantity, reason, Side.BUY)

    @classmethod
    def sell(cls, symbol: Symbol, quantity: Decimal, reason: str) -> Decision:
        return cls(symbol, Action.SELL, quantity, reason, Side.SELL)

    @classmethod
    def close(cls, position: Position, reason: str) -> Decision:
        """Close ``position`` entirely (sell a long, buy back a short)."""
        side = Side.SELL if position.quantity > 0 else Side.BUY
        return cls(position.symbol, Action.CLOSE, abs(position.quantity), reason, side)

    @property
    def is_trade(self) -> bool:
        return self.action is not Action.HOLD and self.quantity > 0 and self.side is not None

    def to_order_request(
        self,
        order_type: OrderType = OrderType.MARKET,
        limit_price: Decimal | None = None,
        client_order_id: ClientOrderId | None = None,
        reduce_only: bool = False,
    ) -> OrderRequest | None:
        """Return the order that carries this decision out (None for HOLD)."""
        if not self.is_trade or self.side is None:
            return None
        tif = TimeInForce.IOC if order_type is OrderType.MARKET else TimeInForce.GTC
        return OrderRequest(
            symbol=self.symbol,
            side=self.side,
            order_type=order_type,
            quantity=self.quantity,
            limit_price=limit_price,
            time_in_force=tif,
            client_order_id=client_order_id,
            reduce_only=reduce_only,
        )


class Strategy(Protocol):
    """A pure decision rule. ``required_history`` is how many mids ``decide`` needs to act."""

    name: ClassVar[str]

    @property
    def required_history(self) -> int: ...

    def decide(self, view: MarketView, position: Position | None) -> Decision: ...


# --- math helpers -------------------------------------------------------------------------------------------


def sma(values: Sequence[Decimal], window: int) -> Decimal:
    """Simple moving average of the last ``window`` values (all of them if fewer)."""
    tail = values[-window:]
    if not tail:
        raise ValueError("sma of no values")
    return sum(tail, start=ZERO) / len(tail)


def realized_volatility_pct(values: Sequence[Decimal]) -> Decimal:
    """Standard deviation of simple returns between consecutive values, percent (0 with < 3 values)."""
    returns = [(b - a) / a for a, b in itertools.pairwise(values) if a > 0]
    if len(returns) < 2:
        return ZERO
    mean = sum(returns, start=ZERO) / len(returns)
    variance = sum(((r - mean) ** 2 for r in returns), start=ZERO) / (len(returns) - 1)
    return variance.sqrt() * 100


def size_for_notional(product: Product, notional_usd: Decimal, price: Decimal) -> Decimal:
    """Return the base quantity worth ``notional_usd`` at ``price``, rounded down to the base increment.

    The result is capped at ``base_max_size`` and is 0 when it would be below ``base_min_size`` or
    ``quote_min_size`` (the caller then holds). Futures quantities are contracts of ``contract_size``.
    """
    if notional_usd <= 0 or price <= 0:
        return ZERO
    unit = product.contract_size if product.contract_size > 0 else Decimal(1)
    quantity = notional_usd / (price * unit)
    if product.base_max_size > 0:
        quantity = min(quantity, product.base_max_size)
    quantity = _round_down(quantity, product.base_increment)
    if quantity <= 0 or quantity < product.base_min_size or quantity * price * unit < product.quote_min_size:
        return ZERO
    return quantity


def volatility_scaled_size(
    view: MarketView,
    position_fraction: Decimal,
    target_volatility_pct: Decimal | None,
    max_scale: Decimal,
    window: int,
) -> tuple[Decimal, str]:
    """Return (quantity, how it was sized) for an entry worth ``position_fraction`` of equity.

    With ``target_volatility_pct`` set, the notional is scaled by ``target / realized`` volatility of the last
    ``window`` mids (capped at ``max_scale``), so a choppier market gets a smaller position.
    """
    price = view.price
    if price is None or view.equity_usd <= 0:
        return ZERO, "no price or no equity"
    scale = Decimal(1)
    if target_volatility_pct is not None:
        vol = realized_volatility_pct(view.mids[-(window + 1) :])
        scale = max_scale if vol <= 0 else min(max_scale, target_volatility_pct / vol)
    notional = view.equity_usd * position_fraction * scale
    quantity = size_for_notional(view.product, notional, price)
    return quantity, f"{notional:.2f} USD at {price} (scale {scale:.2f})"


def _round_down(value: Decimal, increment: Decimal) -> Decimal:
    if increment <= 0:
        return value
    steps = (value / increment).to_integral_value(rounding=ROUND_DOWN)
    return (steps * increment).quantize(increment)


# --- params -------------------------------------------------------------------------------------------------


def check_sizing(
    position_fraction: Decimal, target_volatility_pct: Decimal | None, max_volatility_scale: Decimal
) -> None:
    """Validate the sizing parameters every sizing strategy shares; raise ``ValueError`` naming the bad one."""
    if not 0 < position_fraction <= 10:
        raise ValueError(f"position_fraction must be in (0, 10], got {position_fraction}")
    if target_volatility_pct is not None and target_volatility_pct <= 0:
        raise ValueError(f"target_volatility_pct must be > 0, got {target_volatility_pct}")
    if max_volatility_scale <= 0:
        raise ValueError(f"max_volatility_scale must be > 0, got {max_volatility_scale}")


def parse_params(cls: type[P], data: Mapping[str, object], where: str) -> P:
    """Build the frozen params dataclass ``cls`` from a config dict; unknown keys raise ``ConfigError``.

    Supported field types: ``int``, ``bool``, ``Decimal`` and ``Decimal | None`` (``"none"`` = None).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in kinds:
            raise ConfigError(f"{where}.{key}: unknown parameter (known: {', '.join(kinds)})")
        values[key] = _coerce_param(f"{where}.{key}", kinds[key], raw)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce_param(label: str, kind: str, raw: object) -> object:
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{label}: expected a boolean, got {raw!r}")
    if kind.endswith("| None") and (raw is None or str(raw).strip().lower() == "none"):
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise ConfigError(f"{label}: expected a number, got {raw!r}")
    try:
        number = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ConfigError(f"{label}: expected a number, got {raw!r}") from None
    if not number.is_finite():
        raise ConfigError(f"{label}: expected a finite number, got {raw!r}")
    if kind == "int":
        if number != number.to_integral_value():
            raise ConfigError(f"{label}: expected an integer, got {raw!r}")
        return int(number)
    return number


# --- price history ------------------------------------------------------------------------------------------


class PriceHistory:
    """Recent (time, mid) samples per symbol, oldest first, at most ``max_samples`` each.

    Samples must move forward in time: a sample at or before the latest one for its symbol replaces nothing
    and is ignored (a restarted loop re-feeding the same quote does not double-count).
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples < 2:
            raise ValueError("max_samples must be >= 2")
        self._max = max_samples
        self._samples: dict[Symbol, list[tuple[datetime, Decimal]]] = {}

    @property
    def max_samples(self) -> int:
        return self._max

    def symbols(self) -> tuple[Symbol, ...]:
        return tuple(self._samples)

    def append(self, symbol: Symbol, mid: Decimal, at: datetime) -> bool:
        """Add a sample; return False when it is not newer than the last one (ignored)."""
        if at.tzinfo is None:
            raise ValueError("PriceHistory needs aware datetimes")
        if mid <= 0:
            raise ValueError(f"{symbol}: price must be positive, got {mid}")
        at = at.astimezone(UTC)
        series = self._samples.setdefault(symbol, [])
        if series and at <= series[-1][0]:
            return False
        series.append((at, mid))
        del series[: -self._max]
        return True

    def seed_from_candles(self, symbol: Symbol, candles: Sequence[Candle]) -> int:
        """Append candle closes (oldest first) newer than the last sample; return how many were added."""
        added = 0
        for candle in sorted(candles, key=lambda c: c.start):
            if candle.close > 0 and self.append(symbol, candle.close, candle.start):
                added += 1
        return added

    def mids(self, symbol: Symbol) -> tuple[Decimal, ...]:
        return tuple(mid for _, mid in self._samples.get(symbol, ()))

    def samples(self, symbol: Symbol) -> tuple[tuple[datetime, Decimal], ...]:
        """The (time, mid) samples of ``symbol``, oldest first."""
        return tuple(self._samples.get(symbol, ()))

    def last_time(self, symbol: Symbol) -> datetime | None:
        series = self._samples.get(symbol)
        return series[-1][0] if series else None

    def to_dict(self) -> dict[str, object]:
        """Return ``{"max_samples": n, "samples": {symbol: [[time, mid], ...]}}`` (plain values)."""
        return {
            "max_samples": self._max,
            "samples": {sym: [[t, mid] for t, mid in series] for sym, series in self._samples.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PriceHistory:
        """Rebuild from ``to_dict`` output; corrupted data raises ``StateIntegrityError`` naming the field."""
        where = "price_history"
        if not isinstance(data, Mapping) or set(data) != {"max_samples", "samples"}:
            raise StateIntegrityError(f"{where}: expected exactly the fields max_samples, samples")
        max_samples = data["max_samples"]
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2:
            raise StateIntegrityError(f"{where}.max_samples: expected an integer >= 2, got {max_samples!r}")
        samples = data["samples"]
        if not isinstance(samples, Mapping):
            raise StateIntegrityError(f"{where}.samples: expected a mapping")
        history = cls(max_samples)
        for sym, series in samples.items():
            if not isinstance(sym, str) or not isinstance(series, list | tuple):
                raise StateIntegrityError(f"{where}.samples[{sym!r}]: expected a list of [time, mid]")
            for i, item in enumerate(series):
                label = f"{where}.samples[{sym}][{i}]"
                if not isinstance(item, list | tuple) or len(item) != 2:
                    raise StateIntegrityError(f"{label}: expected [time, mid]")
                at, mid = _read_time(item[0], label), _read_decimal(item[1], label)
                if mid <= 0:
                    raise StateIntegrityError(f"{label}: price must be positive, got {mid}")
                if not history.append(Symbol(sym), mid, at):
                    raise StateIntegrityError(f"{label}: samples out of time order")
        return history


def _read_time(value: object, label: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise StateIntegrityError(f"{label}: bad time {value!r}") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise StateIntegrityError(f"{label}: expected an aware datetime, got {value!r}")
    return value


def _read_decimal(value: object, label: str) -> Decimal:
    if isinstance(value, bool | float) or not isinstance(value, Decimal | int | str):
        raise StateIntegrityError(f"{label}: expected a decimal, got {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise StateIntegrityError(f"{label}: bad decimal {value!r}") from None
    if not result.is_finite():
        raise StateIntegrityError(f"{label}: not finite: {value!r}")
    return result
