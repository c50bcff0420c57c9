"""``RiskSnapshot``: the market and account facts the guards judge, gathered by the loop once per cycle.

It holds no clock: every guard receives ``now`` separately, so the same snapshot can be judged at any time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from bot_v2.domain import Position, Product, Quote, Symbol

__all__ = ["RiskSnapshot", "price_move_pct"]

ZERO = Decimal(0)


def price_move_pct(marks: Sequence[Decimal]) -> Decimal:
    """Return the price range over ``marks`` as a percent of the low: ``(max - min) / min * 100``.

    This is the volatility measure the circuit breaker compares with ``volatility_*_pct``; the loop applies it
    to the marks of its volatility window (e.g. the strategy's recent mids) and puts the result in
    ``RiskSnapshot.volatility_pct``.
    """
    values = [m for m in marks if m > 0]
    if len(values) < 2:
        return ZERO
    low = min(values)
    return (max(values) - low) / low * 100


@dataclass(frozen=True)
class RiskSnapshot:
    """Now-independent inputs of every risk decision.

    * ``equity_usd``: account equity (cash + positions' value, or CFM total balance).
    * ``positions``: net positions by symbol (spot holdings may be given as positions too).
    * ``quotes``: latest best bid/ask per symbol with their exchange time (staleness is judged from it).
    * ``products``: product rules per symbol (increments, min/max size, derivative or spot).
    * ``symbols``: the symbols the bot trades; a traded symbol with no quote counts as stale.
    * ``volatility_pct``: price move % per symbol over the loop's window (see ``price_move_pct``).
    * ``error_count`` / ``cycle_count``: failed cycles and all cycles in the loop's error-rate window.
    * ``liquidation_buffer_pct``: derivatives account liquidation buffer % (None when not reported).
    * ``expected_slippage_bps``: optional per-symbol estimate of a market order's slippage beyond the touch
      (e.g. from the exchange preview); added to the half-spread the slippage guard measures.
    * ``open_orders_count``: resting orders (reported; the position guards judge filled positions).
    """

    equity_usd: Decimal
    positions: Mapping[Symbol, Position] = field(default_factory=dict)
    quotes: Mapping[Symbol, Quote] = field(default_factory=dict)
    products: Mapping[Symbol, Product] = field(default_factory=dict)
    symbols: tuple[Symbol, ...] = ()
    volatility_pct: Mapping[Symbol, Decimal] = field(default_factory=dict)
    error_count: int = 0
    cycle_count: int = 0
    liquidation_buffer_pct: Decimal | None = None
    expected_slippage_bps: Mapping[Symbol, Decimal] = field(default_factory=dict)
    open_orders_count: int = 0

    def __post_init__(self) -> None:
        if self.error_count < 0 or self.cycle_count < 0 or self.open_orders_count < 0:
            raise ValueError("RiskSnapshot: counts must be >= 0")
        if self.error_count > self.cycle_count:
            raise ValueError("RiskSnapshot: error_count cannot exceed cycle_count")
        for name in ("positions", "quotes", "products", "volatility_pct", "expected_slippage_bps"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        object.__setattr__(self, "symbols", tuple(self.symbols))

    def position_quantity(self, symbol: Symbol) -> Decimal:
        """Return the signed position in ``symbol`` (0 when flat)."""
        position = self.positions.get(symbol)
        return position.quantity if position is not None else ZERO

    def mark(self, symbol: Symbol) -> Decimal | None:
        """Return the best available mark: quote mid, else the position's mark, else None."""
        quote = self.quotes.get(symbol)
        if quote is not None:
            return quote.mid
        position = self.positions.get(symbol)
        if position is not None:
            return position.mark_price if position.mark_price is not None else position.entry_price
        return None

    def contract_size(self, symbol: Symbol) -> Decimal:
        """Return base units per unit of order quantity: the product's contract size (1 when unknown)."""
        product = self.products.get(symbol)
        return product.contract_size if product is not None and product.contract_size > 0 else Decimal(1)

    def position_notional_usd(self, symbol: Symbol) -> Decimal:
        """Return |position| x contract size x mark for ``symbol`` (0 when flat)."""
        quantity = self.position_quantity(symbol)
        if quantity == 0:
            return ZERO
        mark = self.mark(symbol)
        return abs(quantity) * self.contract_size(symbol) * (mark if mark is not None else ZERO)

    def total_exposure_usd(self, exclude: Symbol | None = None) -> Decimal:
        """Return the sum of position notionals, optionally leaving one symbol out."""
        return sum(
            (self.position_notional_usd(sym) for sym in self.positions if sym != exclude),
            start=ZERO,
        )

    @property
    def open_positions_count(self) -> int:
        return sum(1 for p in self.positions.values() if p.quantity != 0)

    @property
    def unrealized_pnl_usd(self) -> Decimal:
        return sum((p.unrealized_pnl for p in self.positions.values()), start=ZERO)

    @property
    def error_rate_pct(self) -> Decimal:
        """Return failed cycles as a percent of all cycles in the window (0 with no cycles)."""
        if self.cycle_count == 0:
            return ZERO
        return Decimal(self.error_count) / Decimal(self.cycle_count) * 100
