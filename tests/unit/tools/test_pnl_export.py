"""Daily PnL export: per UTC day and symbol, realized PnL replayed through the bot's own PositionBook."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

from bot_v2.domain import Fill, Liquidity, OrderId, Side, Symbol, TradeId
from bot_v2.tools.pnl_export import daily_rows, to_csv, to_json_rows

BTC = Symbol("BTC-USD")
D = Decimal


def _fill(trade: str, side: Side, qty: str, price: str, day: int, fee: str = "1") -> Fill:
    return Fill(
        trade_id=TradeId(trade),
        order_id=OrderId(f"o-{trade}"),
        symbol=BTC,
        side=side,
        price=D(price),
        quantity=D(qty),
        commission=D(fee),
        liquidity=Liquidity.TAKER,
        trade_time=datetime(2026, 11, day, 12, tzinfo=UTC),
    )


def test_days_realize_against_the_average_entry_of_earlier_days() -> None:
    fills = [
        _fill("t1", Side.BUY, "1", "100", 1),
        _fill("t2", Side.BUY, "1", "120", 1),
        _fill("t3", Side.SELL, "1", "130", 2),  # average entry 110: realizes 20
        _fill("t4", Side.SELL, "1", "100", 3),  # realizes -10
    ]
    rows = daily_rows(fills, {})
    assert [(r.day.day, r.fills, r.realized_pnl_usd, r.net_pnl_usd, r.position_end) for r in rows] == [
        (1, 2, D(0), D(-2), D(2)),
        (2, 1, D(20), D(19), D(1)),
        (3, 1, D(-10), D(-11), D(0)),
    ]
    assert rows[0].buy_notional_usd == D(220) and rows[1].sell_notional_usd == D(130)
    only_day2 = daily_rows(fills, {}, since=date(2026, 11, 2), until=date(2026, 11, 2))
    assert [r.realized_pnl_usd for r in only_day2] == [D(20)]  # the replay still starts at day 1


def test_csv_and_json_are_exact() -> None:
    rows = daily_rows([_fill("t1", Side.BUY, "0.001", "65012.55", 5, fee="0.39")], {})
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert parsed == [{k: str(v) for k, v in to_json_rows(rows)[0].items()}]
    assert parsed[0]["day"] == "2026-11-05" and parsed[0]["buy_notional_usd"] == "65.01255"
