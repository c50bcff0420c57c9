"""Hand-written fakes of the project's ports for the loop's unit tests (no patching)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bot_v2.domain import (
    Balance,
    CancelResult,
    Candle,
    ClientOrderId,
    EditPreview,
    FeeTier,
    Fill,
    FuturesBalanceSummary,
    KeyPermissions,
    Liquidity,
    Order,
    OrderId,
    OrderPreview,
    OrderRequest,
    OrderStatus,
    OrderType,
    Portfolio,
    Position,
    Product,
    ProductBook,
    Quote,
    Side,
    Symbol,
    TradeId,
)
from bot_v2.errors import ExchangeUnavailableError, NotFoundError
from bot_v2.strategies import Decision, MarketView

BTC = Symbol("BTC-USD")
ETH = Symbol("ETH-USD")


def product(symbol: Symbol) -> Product:
    base, quote = symbol.split("-")
    return Product(
        symbol=symbol,
        base_currency=base,
        quote_currency=quote,
        base_increment=Decimal("0.0001"),
        price_increment=Decimal("0.01"),
        base_min_size=Decimal("0.0001"),
        base_max_size=Decimal(1000),
    )


class FakeBroker:
    """A Broker that fills market orders at the touch, records every call and can be told to fail."""

    def __init__(
        self, prices: Mapping[Symbol, Decimal] | None = None, usd: Decimal = Decimal(100_000)
    ) -> None:
        self.prices: dict[Symbol, Decimal] = dict(prices or {BTC: Decimal(50_000), ETH: Decimal(3_000)})
        self.products = {s: product(s) for s in self.prices}
        self.usd = usd
        self.base_balances: dict[str, Decimal] = {}  # moved by fills, like the exchange's accounts
        self.calls: list[str] = []
        self.fill_calls: list[list[OrderId] | None] = []  # order ids of each list_fills call
        self.lose_acks = 0  # the next n orders are created, but place_order raises (the ack is lost)
        self.land_late = False  # with lose_acks: the order lands only on land_pending()
        self.pending_landings: list[OrderRequest] = []
        self.placed: list[OrderRequest] = []
        self.orders: dict[OrderId, Order] = {}
        self.fills: list[Fill] = []
        self.place_error: Exception | None = None
        self.rest_orders = False  # True: orders go OPEN and fill only on fill_open()
        self.on_place: Any = None  # callable(request) run before the order is created
        self.candles: dict[Symbol, list[Candle]] = {}
        self.candles_error: Exception | None = None
        self.fills_error: Exception | None = None  # list_fills raises it (an outage of the fills listing)
        self._ids = itertools.count(1)
        self.now = datetime.now(UTC)

    # market data
    async def list_products(self, symbols: Sequence[Symbol] | None = None) -> list[Product]:
        self.calls.append("list_products")
        return [p for s, p in self.products.items() if symbols is None or s in symbols]

    async def get_product(self, symbol: Symbol) -> Product:
        return self.products[symbol]

    async def get_quotes(self, symbols: Sequence[Symbol]) -> dict[Symbol, Quote]:
        self.calls.append("get_quotes")
        now = datetime.now(UTC)
        return {
            s: Quote(s, self.prices[s] - Decimal(1), self.prices[s] + Decimal(1), now)
            for s in symbols
            if s in self.prices
        }

    async def get_product_book(self, symbol: Symbol, limit: int = 10) -> ProductBook:
        raise NotImplementedError

    async def get_candles(
        self, symbol: Symbol, start: datetime, end: datetime, granularity: str = "ONE_MINUTE"
    ) -> list[Candle]:
        self.calls.append("get_candles")
        if self.candles_error is not None:
            raise self.candles_error
        return [c for c in self.candles.get(symbol, []) if start <= c.start <= end]

    def seed_candles(self, minutes: int, end: datetime) -> None:
        """One-minute candles (newest first, as Coinbase answers) ending at ``end`` for every symbol."""
        floor = end.replace(second=0, microsecond=0)
        for symbol, price in self.prices.items():
            self.candles[symbol] = [
                Candle(floor - timedelta(minutes=i), price, price, price, price + i, Decimal(1))
                for i in range(minutes)
            ]

    async def list_balances(self) -> list[Balance]:
        self.calls.append("list_balances")
        return [Balance("USD", self.usd), *(Balance(c, q) for c, q in sorted(self.base_balances.items()))]

    async def list_positions(self) -> list[Position]:
        return []

    async def get_futures_balance_summary(self) -> FuturesBalanceSummary | None:
        return None

    async def get_fee_tier(self) -> FeeTier:
        return FeeTier("test", Decimal("0.004"), Decimal("0.006"))

    async def get_key_permissions(self) -> KeyPermissions:
        return KeyPermissions(True, True, False)

    async def list_portfolios(self) -> list[Portfolio]:
        return []

    async def server_time(self) -> datetime:
        return datetime.now(UTC)

    # orders
    async def preview_order(self, request: OrderRequest) -> OrderPreview:
        raise NotImplementedError

    async def place_order(self, request: OrderRequest) -> Order:
        self.calls.append("place_order")
        if self.on_place is not None:
            await self.on_place(request)
        if self.place_error is not None:
            raise self.place_error
        if self.lose_acks > 0:
            self.lose_acks -= 1
            if self.land_late:
                self.pending_landings.append(request)
            else:
                self._create(request)
            raise ExchangeUnavailableError(f"create order {request.client_order_id}: timed out")
        return self._create(request)

    def land_pending(self) -> list[Order]:
        """The orders whose acks were lost reach the exchange now."""
        landed = [self._create(request) for request in self.pending_landings]
        self.pending_landings.clear()
        return landed

    def _create(self, request: OrderRequest) -> Order:
        assert request.client_order_id is not None
        for order in self.orders.values():
            if order.client_order_id == request.client_order_id:
                return order
        self.placed.append(request)
        order = Order(
            order_id=OrderId(f"o-{next(self._ids)}"),
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            status=OrderStatus.OPEN,
            quantity=request.quantity,
            limit_price=request.limit_price,
            created_at=datetime.now(UTC),
        )
        self.orders[order.order_id] = order
        if not self.rest_orders and request.order_type is OrderType.MARKET:
            order = self.fill(order.order_id)
        return order

    def fill(self, order_id: OrderId, quantity: Decimal | None = None) -> Order:
        """Fill (part of) an order at the touch; return the updated order."""
        order = self.orders[order_id]
        qty = quantity if quantity is not None else order.remaining_quantity
        price = self.prices[order.symbol] + (Decimal(1) if order.side is Side.BUY else Decimal(-1))
        fee = price * qty * Decimal("0.006")
        base = order.symbol.split("-")[0]
        signed = qty if order.side is Side.BUY else -qty
        self.base_balances[base] = self.base_balances.get(base, Decimal(0)) + signed
        self.fills.append(
            Fill(
                trade_id=TradeId(f"t-{next(self._ids)}"),
                order_id=order.order_id,
                symbol=order.symbol,
                side=order.side,
                price=price,
                quantity=qty,
                commission=fee,
                liquidity=Liquidity.TAKER,
                trade_time=datetime.now(UTC),
            )
        )
        filled = order.filled_quantity + qty
        order = dataclasses.replace(
            order,
            filled_quantity=filled,
            average_fill_price=price,
            total_fees=order.total_fees + fee,
            status=OrderStatus.FILLED if filled >= order.quantity else OrderStatus.OPEN,
        )
        self.orders[order_id] = order
        return order

    async def preview_edit(self, order_id: OrderId, size: Decimal, price: Decimal) -> EditPreview:
        raise NotImplementedError

    async def edit_order(
        self, order_id: OrderId, size: Decimal, price: Decimal, preview_id: str | None = None
    ) -> Order:
        raise NotImplementedError

    async def cancel_orders(self, order_ids: Sequence[OrderId]) -> list[CancelResult]:
        self.calls.append("cancel_orders")
        results = []
        for order_id in order_ids:
            order = self.orders.get(order_id)
            if order is None or order.status.is_terminal:
                results.append(CancelResult(order_id, False, "UNKNOWN_CANCEL_ORDER"))
                continue
            self.orders[order_id] = dataclasses.replace(order, status=OrderStatus.CANCELLED)
            results.append(CancelResult(order_id, True))
        return results

    async def get_order(self, order_id: OrderId) -> Order:
        self.calls.append("get_order")
        try:
            return self.orders[order_id]
        except KeyError:
            raise NotFoundError(order_id) from None

    async def list_orders(
        self,
        statuses: Sequence[OrderStatus] | None = None,
        symbols: Sequence[Symbol] | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[Order]:
        self.calls.append("list_orders")
        return [
            o
            for o in reversed(self.orders.values())
            if (statuses is None or o.status in statuses)
            and (symbols is None or o.symbol in symbols)
            and (since is None or o.created_at is None or o.created_at >= since)
        ]

    async def list_fills(
        self,
        order_ids: Sequence[OrderId] | None = None,
        symbols: Sequence[Symbol] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Fill]:
        self.calls.append("list_fills")
        self.fill_calls.append(None if order_ids is None else list(order_ids))
        if self.fills_error is not None:
            raise self.fills_error
        return [
            f
            for f in reversed(self.fills)
            if (order_ids is None or f.order_id in order_ids) and (symbols is None or f.symbol in symbols)
        ]

    async def close(self) -> None:
        self.calls.append("close")

    # helpers
    def client_ids(self) -> list[ClientOrderId]:
        return [o.client_order_id for o in self.orders.values()]


class ScriptedStrategy:
    """Buys ``quantity`` of each symbol on the listed cycles (1-based call count per symbol), else holds."""

    name = "scripted"

    def __init__(
        self, buy_on: Sequence[int] = (1,), quantity: Decimal = Decimal("0.01"), sell_on: Sequence[int] = ()
    ):
        self.buy_on = set(buy_on)
        self.sell_on = set(sell_on)
        self.quantity = quantity
        self.calls: dict[Symbol, int] = {}

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        n = self.calls[view.symbol] = self.calls.get(view.symbol, 0) + 1
        if n in self.buy_on:
            return Decision.buy(view.symbol, self.quantity, f"scripted buy #{n}")
        if n in self.sell_on:
            return Decision.sell(view.symbol, self.quantity, f"scripted sell #{n}")
        return Decision.hold(view.symbol, "scripted hold")


class RecordingStrategy:
    """Holds; records how many mids it saw on each call (per symbol)."""

    name = "recording"

    def __init__(self, required: int = 21) -> None:
        self.required = required
        self.seen: dict[Symbol, list[int]] = {}

    @property
    def required_history(self) -> int:
        return self.required

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        self.seen.setdefault(view.symbol, []).append(len(view.mids))
        return Decision.hold(view.symbol, "recording")


class CountingState:
    """Wraps a StateStore and counts the calls the loop makes (to prove one batch per cycle)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batch_writes: list[list[str]] = []
        self.set_calls: list[str] = []

    async def get_state(self, key: str) -> Any:
        return await self.inner.get_state(key)

    async def set_state(self, key: str, value: Any, category: Any, ttl_seconds: float | None = None) -> int:
        self.set_calls.append(key)
        result: int = await self.inner.set_state(key, value, category, ttl_seconds)
        return result

    async def delete_state(self, key: str) -> Any:
        return await self.inner.delete_state(key)

    async def batch_get_state(self, keys: Sequence[str]) -> Mapping[str, Any]:
        result: Mapping[str, Any] = await self.inner.batch_get_state(keys)
        return result

    async def batch_write(self, writes: Sequence[Any]) -> Mapping[str, int]:
        self.batch_writes.append([w.key for w in writes])
        result: Mapping[str, int] = await self.inner.batch_write(writes)
        return result

    async def get_keys_by_pattern(self, pattern: str) -> list[str]:
        result: list[str] = await self.inner.get_keys_by_pattern(pattern)
        return result
