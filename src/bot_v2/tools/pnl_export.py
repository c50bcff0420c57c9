"""Daily PnL export (``scripts/export_pnl.py``): per UTC day and symbol, from the bot's stored fills.

Read-only: it opens the profile's state like the dashboard (no write, no promotion) and reads every booked
fill -- live ``fills:*`` and archived ``archive:fills:*`` (history older than the retention window) -- then
replays them oldest first through the bot's own ``PositionBook``, so a day's realized PnL is exactly what the
bot booked for the fills of that day (average-entry accounting, fees separate, contract sizes from the
stored positions). Days without fills are not listed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from bot_v2.config import BotSettings
from bot_v2.domain import Fill, Side, Symbol
from bot_v2.orchestration import keys
from bot_v2.orchestration.ledger import PositionBook, PositionRecord
from bot_v2.orchestration.records import fill_from_dict
from bot_v2.orchestration.wiring import open_state, reader_settings

__all__ = ["DayRow", "daily_rows", "load_fills", "to_csv", "to_json_rows"]

ZERO = Decimal(0)
ARCHIVED_FILLS = keys.ARCHIVE_PREFIX + keys.FILL_PREFIX


@dataclass(frozen=True, slots=True)
class DayRow:
    """One UTC day of one symbol."""

    day: date
    symbol: Symbol
    fills: int
    bought: Decimal  # base quantity
    sold: Decimal
    buy_notional_usd: Decimal
    sell_notional_usd: Decimal
    fees_usd: Decimal
    realized_pnl_usd: Decimal  # gross of fees, as the bot books it
    net_pnl_usd: Decimal  # realized - fees
    position_end: Decimal  # the net position after the day's last fill


async def load_fills(settings: BotSettings) -> tuple[list[Fill], dict[Symbol, Decimal]]:
    """Every booked fill (live and archived), oldest first, and contract sizes from the stored positions."""
    async with open_state(reader_settings(settings)) as state:
        names = [
            *await state.get_keys_by_pattern("fills:*"),
            *await state.get_keys_by_pattern("archive:fills:*"),
        ]
        values = await state.batch_get_state(names)
        positions = await state.batch_get_state(await state.get_keys_by_pattern("positions:*"))
    by_trade: dict[str, Fill] = {}
    for value in values.values():
        fill = fill_from_dict(value)
        by_trade[fill.trade_id] = fill  # a fill is live or archived, never both; a trade id counts once
    sizes = {}
    for value in positions.values():
        record = PositionRecord.from_dict(value)
        sizes[record.symbol] = record.contract_size
    return sorted(by_trade.values(), key=lambda f: (f.trade_time, f.trade_id)), sizes


def daily_rows(
    fills: Iterable[Fill],
    contract_sizes: dict[Symbol, Decimal],
    since: date | None = None,
    until: date | None = None,
) -> list[DayRow]:
    """Aggregate ``fills`` (oldest first) per day and symbol; ``since``/``until`` bound the days listed (the
    replay still starts at the first fill, so realized PnL uses the right average entry)."""
    book = PositionBook()
    rows: dict[tuple[date, Symbol], dict[str, Any]] = {}
    for fill in fills:
        size = contract_sizes.get(fill.symbol, Decimal(1))
        realized = book.apply(fill, size)
        day = fill.trade_time.date()
        row = rows.setdefault(
            (day, fill.symbol),
            {
                "fills": 0,
                "bought": ZERO,
                "sold": ZERO,
                "buy": ZERO,
                "sell": ZERO,
                "fees": ZERO,
                "realized": ZERO,
            },
        )
        notional = fill.quantity * fill.price * size
        row["fills"] += 1
        if fill.side is Side.BUY:
            row["bought"] += fill.quantity
            row["buy"] += notional
        else:
            row["sold"] += fill.quantity
            row["sell"] += notional
        row["fees"] += fill.commission
        row["realized"] += realized
        row["position"] = book.quantity(fill.symbol)
    out = []
    for (day, symbol), row in sorted(rows.items()):
        if (since is not None and day < since) or (until is not None and day > until):
            continue
        out.append(
            DayRow(
                day=day,
                symbol=symbol,
                fills=row["fills"],
                bought=row["bought"],
                sold=row["sold"],
                buy_notional_usd=row["buy"],
                sell_notional_usd=row["sell"],
                fees_usd=row["fees"],
                realized_pnl_usd=row["realized"],
                net_pnl_usd=row["realized"] - row["fees"],
                position_end=row["position"],
            )
        )
    return out


def to_json_rows(rows: Sequence[DayRow]) -> list[dict[str, Any]]:
    """Plain values: ISO dates, Decimals as strings (exact)."""
    return [{k: (v.isoformat() if isinstance(v, date) else str(v) if isinstance(v, Decimal) else v)
             for k, v in asdict(row).items()} for row in rows]  # fmt: skip


def to_csv(rows: Sequence[DayRow]) -> str:
    """CSV with a header row (the ``DayRow`` fields)."""
    buffer = io.StringIO()
    fields = list(DayRow.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(to_json_rows(rows))
    return buffer.getvalue()
