"""Fill-derived positions: average cost, realized PnL, flips, fees, and re-derivation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot_v2.domain import Fill, Liquidity, OrderId, Side, Symbol, TradeId
from bot_v2.errors import StateIntegrityError
from bot_v2.orchestration.ledger import PositionBook, PositionRecord, derive_positions

BTC = Symbol("BTC-USD")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(n: int, side: Side, qty: str, price: str, fee: str = "0") -> Fill:
    return Fill(
        TradeId(f"t{n}"),
        OrderId(f"o{n}"),
        BTC,
        side,
        Decimal(price),
        Decimal(qty),
        Decimal(fee),
        Liquidity.TAKER,
        T0 + timedelta(seconds=n),
    )


def test_average_cost_and_partial_close() -> None:
    book = PositionBook()
    book.apply(fill(1, Side.BUY, "1", "100", "1"))
    book.apply(fill(2, Side.BUY, "1", "200", "1"))
    assert book.get(BTC).entry_price == Decimal(150)
    realized = book.apply(fill(3, Side.SELL, "0.5", "250", "1"))
    assert realized == Decimal(50)
    pos = book.get(BTC)
    assert pos.quantity == Decimal("1.5") and pos.entry_price == Decimal(150) and pos.fees == Decimal(3)
    assert pos.unrealized(Decimal(160)) == Decimal(15)


def test_flip_opens_the_remainder_at_the_fill_price_and_shorts_realize_inverted() -> None:
    book = PositionBook()
    book.apply(fill(1, Side.BUY, "1", "100"))
    assert book.apply(fill(2, Side.SELL, "3", "110")) == Decimal(10)
    pos = book.get(BTC)
    assert pos.quantity == Decimal(-2) and pos.entry_price == Decimal(110)
    assert book.apply(fill(3, Side.BUY, "2", "100")) == Decimal(20)
    assert book.get(BTC).quantity == 0 and book.get(BTC).entry_price == 0


def test_contract_size_scales_derivative_pnl() -> None:
    book = PositionBook()
    book.apply(fill(1, Side.SELL, "2", "100"), contract_size=Decimal("0.1"))
    assert book.apply(fill(2, Side.BUY, "2", "90"), contract_size=Decimal("0.1")) == Decimal(2)


def test_rederivation_matches_incremental_booking_in_any_input_order() -> None:
    fills = [
        fill(1, Side.BUY, "1", "100", "0.5"),
        fill(2, Side.SELL, "0.4", "120", "0.2"),
        fill(3, Side.BUY, "2", "90"),
    ]
    book = PositionBook()
    for f in fills:
        book.apply(f)
    assert derive_positions(reversed(fills)) == book.positions


def test_record_round_trip_and_strict_reader() -> None:
    record = PositionRecord(BTC, Decimal("1.5"), Decimal(150), Decimal(50), Decimal(3), Decimal(1), 3)
    assert PositionRecord.from_dict(record.to_dict()) == record
    broken = record.to_dict() | {"quantity": 1.5}
    with pytest.raises(StateIntegrityError, match="quantity"):
        PositionRecord.from_dict(broken)
