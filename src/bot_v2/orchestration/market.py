"""Market inputs of one cycle: quotes (the WebSocket feed's, or REST best bid/ask), equity, price history, the
risk snapshot.

Everything here is read-only toward the exchange; the cycle decides what to do with it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot_v2.brokerages.base import Broker
from bot_v2.domain import (
    Balance,
    FuturesBalanceSummary,
    OrderId,
    OrderRequest,
    OrderType,
    Position,
    Product,
    Quote,
    Side,
    Symbol,
)
from bot_v2.orchestration.concurrency import task_group
from bot_v2.orchestration.ledger import PositionRecord
from bot_v2.orchestration.records import OrderRecord
from bot_v2.risk import RiskSnapshot, price_move_pct
from bot_v2.strategies.base import PriceHistory

__all__ = [
    "CycleOutcomes",
    "MarketData",
    "equity_usd",
    "fetch_market",
    "record_marks",
    "risk_snapshot",
    "snapshot_for_next",
]

ZERO = Decimal(0)
_USD_LIKE = frozenset({"USD", "USDC", "USDT"})


@dataclass(frozen=True, slots=True)
class MarketData:
    """One cycle's quotes and account facts; ``source`` says where the quotes came from (``ws`` or ``rest``)."""

    quotes: Mapping[Symbol, Quote]
    balances: Sequence[Balance]
    futures: FuturesBalanceSummary | None
    source: str = "rest"

    @property
    def marks(self) -> dict[Symbol, Decimal]:
        return {s: q.mid for s, q in self.quotes.items() if q.mid > 0}


async def fetch_market(
    broker: Broker,
    symbols: Sequence[Symbol],
    derivatives: bool,
    feed_quotes: Callable[[], Mapping[Symbol, Quote] | None] | None = None,
) -> MarketData:
    """Fetch quotes and balances (and the CFM summary when derivatives are on) concurrently.

    ``feed_quotes``: the WebSocket feed's quotes from memory (None while the feed cannot be trusted); REST best
    bid/ask is asked only when it has none."""
    streamed = feed_quotes() if feed_quotes is not None else None
    async with task_group() as group:
        quotes = group.create_task(broker.get_quotes(symbols)) if streamed is None else None
        balances = group.create_task(broker.list_balances())
        futures = group.create_task(broker.get_futures_balance_summary()) if derivatives else None
    fut = futures.result() if futures is not None else None
    if quotes is None:
        assert streamed is not None
        return MarketData({s: streamed[s] for s in symbols if s in streamed}, balances.result(), fut, "ws")
    return MarketData(quotes.result(), balances.result(), fut, "rest")


def equity_usd(market: MarketData) -> Decimal:
    """Equity in USD: USD-like cash plus other holdings at their ``<CCY>-USD`` mark (CFM total if set)."""
    if market.futures is not None:
        return market.futures.total_usd_balance
    marks = market.marks
    total = ZERO
    for balance in market.balances:
        if balance.currency in _USD_LIKE:
            total += balance.total
        else:
            mark = marks.get(Symbol(f"{balance.currency}-USD"))
            if mark is not None:
                total += balance.total * mark
    return total


class CycleOutcomes:
    """The last ``window`` cycle outcomes, for the error-rate guard."""

    def __init__(self, window: int = 20) -> None:
        self._outcomes: deque[bool] = deque(maxlen=window)

    def record(self, ok: bool) -> None:
        self._outcomes.append(ok)

    @property
    def cycles(self) -> int:
        return len(self._outcomes)

    @property
    def errors(self) -> int:
        return sum(1 for ok in self._outcomes if not ok)


def risk_snapshot(
    *,
    symbols: Sequence[Symbol],
    market: MarketData,
    products: Mapping[Symbol, Product],
    positions: Mapping[Symbol, PositionRecord],
    history: PriceHistory,
    outcomes: CycleOutcomes,
    open_orders: int,
) -> RiskSnapshot:
    """Build the guards' snapshot from this cycle's facts and the bot's fill-derived positions."""
    marks = market.marks
    return RiskSnapshot(
        equity_usd=equity_usd(market),
        positions={s: p.to_position(marks.get(s)) for s, p in positions.items() if p.quantity != 0},
        quotes=market.quotes,
        products=products,
        symbols=tuple(symbols),
        volatility_pct={s: price_move_pct(history.mids(s)) for s in symbols},
        error_count=outcomes.errors,
        cycle_count=outcomes.cycles,
        liquidation_buffer_pct=market.futures.liquidation_buffer_percentage if market.futures else None,
        open_orders_count=open_orders,
    )


def unbooked_requests(
    followed_orders: Iterable[OrderRecord], exclude: OrderId | None = None
) -> list[OrderRequest]:
    """What each followed order (``OrderTracker.open_orders``: not terminal, or terminal with its bookkeeping
    still to finish) may still move the booked position by, as requests ``snapshot_for_next`` can count: the
    unfilled part of a resting order (it may fill at any moment) plus any filled part whose fills are not
    booked yet (``OrderRecord.unbooked_quantity``). Exposure and position limits judge a new order as if all
    of it lands on the stored position -- an order acknowledged FILLED whose fills could not be listed yet
    counts until they are booked (``exclude``: an order being edited, replaced by its edited version)."""
    found = []
    for record in followed_orders:
        unbooked = record.unbooked_quantity
        if unbooked <= 0 or record.order_id == exclude:
            continue
        found.append(OrderRequest(record.symbol, record.side, OrderType.MARKET, unbooked))
    return found


def with_resting(
    snapshot: RiskSnapshot, resting: Sequence[OrderRequest], request: OrderRequest
) -> RiskSnapshot:
    """``snapshot_for_next`` over the followed orders' unbooked parts (``unbooked_requests``); those orders are
    counted in ``open_orders_count`` already."""
    judged = snapshot_for_next(snapshot, resting, request)
    return dataclasses.replace(judged, open_orders_count=snapshot.open_orders_count) if resting else judged


def snapshot_for_next(
    snapshot: RiskSnapshot, approved: Sequence[OrderRequest], request: OrderRequest
) -> RiskSnapshot:
    """The snapshot the guards must judge ``request`` on, after ``approved`` earlier orders of this cycle.

    Each earlier order may or may not fill, so every symbol with earlier orders is taken at its worst case:
    for ``request``'s own symbol the bound in ``request``'s direction (all earlier buys filled and no sells, or
    the reverse), for the other symbols the bound with the larger |position| (exposure, leverage, open
    positions). Every earlier order also counts as open. With one order per symbol per cycle this means: growth
    is credited, a reduction is not credited until it fills.
    """
    if not approved:
        return snapshot
    buys: dict[Symbol, Decimal] = {}
    sells: dict[Symbol, Decimal] = {}
    for order in approved:
        side_sums = buys if order.side is Side.BUY else sells
        side_sums[order.symbol] = side_sums.get(order.symbol, ZERO) + order.quantity
    positions = dict(snapshot.positions)
    for symbol in buys.keys() | sells.keys():
        current = snapshot.positions.get(symbol)
        before = current.quantity if current is not None else ZERO
        upper, lower = before + buys.get(symbol, ZERO), before - sells.get(symbol, ZERO)
        if symbol == request.symbol:
            worst = upper if request.side is Side.BUY else lower
        else:
            worst = upper if abs(upper) >= abs(lower) else lower
        if worst == before:
            continue
        mark = snapshot.mark(symbol)
        positions[symbol] = Position(
            symbol=symbol,
            quantity=worst,
            entry_price=current.entry_price if current is not None else (mark or ZERO),
            mark_price=mark,
            unrealized_pnl=current.unrealized_pnl if current is not None else ZERO,
            realized_pnl=current.realized_pnl if current is not None else ZERO,
        )
    return dataclasses.replace(
        snapshot, positions=positions, open_orders_count=snapshot.open_orders_count + len(approved)
    )


def record_marks(history: PriceHistory, quotes: Mapping[Symbol, Quote], now: datetime) -> None:
    """Append each quote's mid to the price history as this cycle's sample (one sample per cycle)."""
    for symbol, quote in quotes.items():
        if quote.mid > 0:
            history.append(symbol, quote.mid, now)
