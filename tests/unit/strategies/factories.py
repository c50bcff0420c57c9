"""Builders for strategy tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from bot_v2.domain import Position, Product, Quote, Symbol
from bot_v2.strategies import MarketView

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BTC = Symbol("BTC-USD")
D = Decimal


def product(**overrides: object) -> Product:
    fields: dict[str, object] = {
        "symbol": BTC,
        "base_currency": "BTC",
        "quote_currency": "USD",
        "base_increment": D("0.001"),
        "price_increment": D("0.01"),
        "base_min_size": D("0.001"),
        "base_max_size": D("10"),
        "quote_min_size": D("1"),
    }
    fields |= overrides
    return Product(**fields)  # type: ignore[arg-type]


def view(
    mids: Sequence[Decimal | int | str], equity: str = "10000", prod: Product | None = None
) -> MarketView:
    values = tuple(D(m) for m in mids)
    last = values[-1] if values else D(100)
    return MarketView(
        symbol=BTC,
        mids=values,
        quote=Quote(BTC, last - D("0.01"), last + D("0.01"), NOW),
        product=prod if prod is not None else product(),
        equity_usd=D(equity),
        now=NOW,
    )


def long(qty: str = "1") -> Position:
    return Position(BTC, D(qty), D(100))


def short(qty: str = "1") -> Position:
    return Position(BTC, -D(qty), D(100))
