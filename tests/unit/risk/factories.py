"""Builders for risk tests: products, quotes, positions and snapshots with sensible defaults."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot_v2.domain import OrderRequest, OrderType, Position, Product, ProductType, Quote, Side, Symbol
from bot_v2.risk import RiskSnapshot

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BTC = Symbol("BTC-USD")
ETH = Symbol("ETH-USD")
PERP = Symbol("BIP-20DEC30-CDE")
D = Decimal


def product(symbol: Symbol = BTC, derivative: bool = False, **overrides: object) -> Product:
    fields: dict[str, object] = {
        "symbol": symbol,
        "base_currency": symbol.split("-")[0],
        "quote_currency": "USD",
        "base_increment": D("0.0001"),
        "price_increment": D("0.01"),
        "base_min_size": D("0.0001"),
        "base_max_size": D("1000"),
    }
    if derivative:
        fields |= {
            "product_type": ProductType.FUTURE,
            "perpetual": True,
            "base_increment": D(1),
            "base_min_size": D(1),
            "contract_size": D("0.01"),
            "max_leverage": D(10),
        }
    fields |= overrides
    return Product(**fields)  # type: ignore[arg-type]


def quote(
    symbol: Symbol = BTC, mid: str | Decimal = "50000", spread: str = "1", age_seconds: float = 1.0
) -> Quote:
    m = D(mid)
    half = D(spread) / 2
    return Quote(symbol, m - half, m + half, NOW - timedelta(seconds=age_seconds))


def position(
    symbol: Symbol = BTC, quantity: str | Decimal = "0.1", price: str = "50000", **kw: object
) -> Position:
    return Position(symbol, D(quantity), D(price), mark_price=D(price), **kw)  # type: ignore[arg-type]


def snapshot(
    equity: str | Decimal = "100000",
    positions: Iterable[Position] = (),
    quotes: Iterable[Quote] | None = None,
    products: Iterable[Product] | None = None,
    **kw: object,
) -> RiskSnapshot:
    quotes = [quote(BTC), quote(ETH, "3000", "0.1")] if quotes is None else list(quotes)
    products = [product(BTC), product(ETH)] if products is None else list(products)
    return RiskSnapshot(  # type: ignore[arg-type]
        equity_usd=D(equity),
        positions={p.symbol: p for p in positions},
        quotes={q.symbol: q for q in quotes},
        products={p.symbol: p for p in products},
        **kw,
    )


def order(
    side: Side = Side.BUY,
    quantity: str | Decimal = "0.1",
    symbol: Symbol = BTC,
    order_type: OrderType = OrderType.MARKET,
    **kw: object,
) -> OrderRequest:
    return OrderRequest(symbol, side, order_type, D(quantity), **kw)  # type: ignore[arg-type]
