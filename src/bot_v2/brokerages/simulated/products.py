"""The simulated exchange's product table: spot pairs and CFM perpetual-style futures."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["DEFAULT_PRODUCTS", "ProductSpec", "product_table"]

D = Decimal


@dataclass(frozen=True, slots=True)
class ProductSpec:
    """One listed product: increments, limits, and how its simulated market behaves.

    For futures, sizes are in contracts (``base_increment`` 1) and one contract is ``contract_size`` units of
    the underlying; a future with ``underlying`` set follows that spot product's price.
    """

    product_id: str
    base_currency: str
    quote_currency: str
    base_increment: Decimal
    quote_increment: Decimal
    base_min_size: Decimal
    base_max_size: Decimal
    quote_min_size: Decimal
    quote_max_size: Decimal
    initial_price: Decimal
    base_name: str
    volatility_per_sqrt_second: Decimal = Decimal("0.0004")
    spread_bps: Decimal = Decimal("2")
    level_step_bps: Decimal = Decimal("1")
    level_size: Decimal = Decimal("1")
    book_depth: int = 10
    product_type: str = "SPOT"
    product_venue: str = "CBE"
    contract_size: Decimal = Decimal(1)
    max_leverage: Decimal = Decimal(1)
    funding_rate: Decimal = Decimal(0)
    funding_interval_seconds: int = 3600
    maintenance_margin_rate: Decimal = Decimal("0.05")
    underlying: str | None = None
    contract_code: str = ""
    contract_expiry: str = ""
    trading_disabled: bool = False

    @property
    def price_increment(self) -> Decimal:
        return self.quote_increment

    @property
    def is_future(self) -> bool:
        return self.product_type == "FUTURE"

    @property
    def display_name(self) -> str:
        if self.is_future:
            return f"{self.base_currency} PERP"
        return f"{self.base_currency}-{self.quote_currency}"


def _spot(pid: str, name: str, price: str, min_size: str, max_size: str, level: str) -> ProductSpec:
    base, quote = pid.split("-")
    return ProductSpec(
        product_id=pid,
        base_currency=base,
        quote_currency=quote,
        base_increment=D("0.00000001"),
        quote_increment=D("0.01"),
        base_min_size=D(min_size),
        base_max_size=D(max_size),
        quote_min_size=D("1"),
        quote_max_size=D("150000000"),
        initial_price=D(price),
        base_name=name,
        level_size=D(level),
    )


def _perp(
    pid: str, base: str, name: str, price: str, tick: str, contract: str, underlying: str
) -> ProductSpec:
    return ProductSpec(
        product_id=pid,
        base_currency=base,
        quote_currency="USD",
        base_increment=D(1),
        quote_increment=D(tick),
        base_min_size=D(1),
        base_max_size=D(5000),
        quote_min_size=D(0),
        quote_max_size=D("100000000"),
        initial_price=D(price),
        base_name=name,
        level_size=D(40),
        product_type="FUTURE",
        product_venue="FCM",
        contract_size=D(contract),
        max_leverage=D(10),
        funding_rate=D("0.00001"),
        underlying=underlying,
        contract_code=pid.split("-")[0],
        contract_expiry="2030-12-20T16:00:00Z",
    )


DEFAULT_PRODUCTS: tuple[ProductSpec, ...] = (
    _spot("BTC-USD", "Bitcoin", "65000.00", "0.00001", "3400", "0.5"),
    _spot("ETH-USD", "Ethereum", "3200.00", "0.0001", "38000", "5"),
    _spot("SOL-USD", "Solana", "150.00", "0.001", "500000", "100"),
    _perp("BIP-20DEC30-CDE", "BTC", "Bitcoin", "65000", "5", "0.01", "BTC-USD"),
    _perp("ETP-20DEC30-CDE", "ETH", "Ethereum", "3200", "0.5", "0.1", "ETH-USD"),
)


def product_table(products: tuple[ProductSpec, ...] = DEFAULT_PRODUCTS) -> dict[str, ProductSpec]:
    """Index products by id, checking that every future's underlying is listed."""
    table = {p.product_id: p for p in products}
    for p in products:
        if p.underlying is not None and p.underlying not in table:
            raise ValueError(f"{p.product_id}: underlying {p.underlying} is not listed")
    return table
