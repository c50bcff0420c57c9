"""Positions and PnL derived from fills, and nothing else.

One rule for both kinds of product: a signed net quantity with an average entry price. A fill that adds to
the position moves the entry to the volume-weighted average (spot: average cost; derivatives: VWAP entry);
a fill against it realizes ``(price - entry) x closed x contract_size`` in the position's direction, and one
that crosses zero opens the remainder at the fill price. Fees are summed separately (``net`` subtracts them).
Applying the same fills in the same order always yields the same book, so reconciliation can re-derive it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from bot_v2.domain import Fill, Position, Symbol
from bot_v2.risk import serde

__all__ = ["PositionBook", "PositionRecord", "derive_positions"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PositionRecord:
    """The bot's position in one symbol, from its own fills."""

    symbol: Symbol
    quantity: Decimal = ZERO
    entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    contract_size: Decimal = Decimal(1)
    fill_count: int = 0

    def apply(self, fill: Fill) -> tuple[PositionRecord, Decimal]:
        """Return the position after ``fill`` and the PnL that fill realized."""
        signed = fill.quantity * fill.side.sign
        qty, entry = self.quantity, self.entry_price
        realized = ZERO
        if qty == 0 or (qty > 0) == (signed > 0):
            new_qty = qty + signed
            entry = (entry * abs(qty) + fill.price * abs(signed)) / abs(new_qty)
        else:
            closed = min(abs(signed), abs(qty))
            direction = 1 if qty > 0 else -1
            realized = (fill.price - entry) * closed * self.contract_size * direction
            new_qty = qty + signed
            if new_qty == 0:
                entry = ZERO
            elif abs(signed) > closed:
                entry = fill.price
        updated = replace(
            self,
            quantity=new_qty,
            entry_price=entry,
            realized_pnl=self.realized_pnl + realized,
            fees=self.fees + fill.commission,
            fill_count=self.fill_count + 1,
        )
        return updated, realized

    def unrealized(self, mark: Decimal | None) -> Decimal:
        """Unrealized PnL at ``mark`` (0 when flat or no mark)."""
        if mark is None or self.quantity == 0:
            return ZERO
        return (mark - self.entry_price) * self.quantity * self.contract_size

    def to_position(self, mark: Decimal | None = None) -> Position:
        """The domain ``Position`` (what the risk snapshot and strategies see)."""
        return Position(
            symbol=self.symbol,
            quantity=self.quantity,
            entry_price=self.entry_price,
            mark_price=mark,
            unrealized_pnl=self.unrealized(mark),
            realized_pnl=self.realized_pnl,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "quantity": self.quantity,
            "entry_price": self.entry_price,
            "realized_pnl": self.realized_pnl,
            "fees": self.fees,
            "contract_size": self.contract_size,
            "fill_count": self.fill_count,
        }

    @classmethod
    def from_dict(cls, data: object) -> PositionRecord:
        where = "position"
        d = serde.expect_mapping(data, where)
        serde.expect_keys(
            d,
            {"symbol", "quantity", "entry_price", "realized_pnl", "fees", "contract_size", "fill_count"},
            where,
        )
        return cls(
            symbol=Symbol(serde.read_str(d["symbol"], f"{where}.symbol")),
            quantity=serde.read_decimal(d["quantity"], f"{where}.quantity"),
            entry_price=serde.read_decimal(d["entry_price"], f"{where}.entry_price"),
            realized_pnl=serde.read_decimal(d["realized_pnl"], f"{where}.realized_pnl"),
            fees=serde.read_decimal(d["fees"], f"{where}.fees"),
            contract_size=serde.read_decimal(d["contract_size"], f"{where}.contract_size"),
            fill_count=serde.read_int(d["fill_count"], f"{where}.fill_count"),
        )


class PositionBook:
    """Fill-derived positions for every symbol; remembers which symbols changed since the last flush."""

    def __init__(self, positions: Mapping[Symbol, PositionRecord] | None = None) -> None:
        self.positions: dict[Symbol, PositionRecord] = dict(positions or {})
        self.dirty: set[Symbol] = set()

    def get(self, symbol: Symbol) -> PositionRecord:
        return self.positions.get(symbol) or PositionRecord(symbol=symbol)

    def apply(self, fill: Fill, contract_size: Decimal = Decimal(1)) -> Decimal:
        """Book one fill (the caller guarantees each trade id once); return the PnL it realized."""
        current = self.positions.get(fill.symbol) or PositionRecord(
            symbol=fill.symbol, contract_size=contract_size
        )
        updated, realized = current.apply(fill)
        self.positions[fill.symbol] = updated
        self.dirty.add(fill.symbol)
        return realized

    def quantity(self, symbol: Symbol) -> Decimal:
        return self.get(symbol).quantity

    @property
    def realized_pnl(self) -> Decimal:
        return sum((p.realized_pnl for p in self.positions.values()), start=ZERO)

    @property
    def fees(self) -> Decimal:
        return sum((p.fees for p in self.positions.values()), start=ZERO)

    def unrealized_pnl(self, marks: Mapping[Symbol, Decimal]) -> Decimal:
        return sum((p.unrealized(marks.get(s)) for s, p in self.positions.items()), start=ZERO)

    def take_dirty(self) -> list[PositionRecord]:
        """Return the changed positions and forget them (they are about to be written)."""
        changed = [self.positions[s] for s in sorted(self.dirty)]
        self.dirty.clear()
        return changed


def derive_positions(
    fills: Iterable[Fill], contract_sizes: Mapping[Symbol, Decimal] | None = None
) -> dict[Symbol, PositionRecord]:
    """Re-derive positions from fills in trade-time order (reconciliation's reference book)."""
    sizes = contract_sizes or {}
    book = PositionBook()
    for fill in sorted(fills, key=lambda f: (f.trade_time, f.trade_id)):
        book.apply(fill, sizes.get(fill.symbol, Decimal(1)))
    return book.positions
