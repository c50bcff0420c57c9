"""The paper broker behind ``--dry-run``: its own ``Broker``, so no order ever leaves the process.

Market data (products, quotes, books, candles, fee tier, server time) is delegated to the real exchange
(``market``). Orders are matched in memory against the current best bid/ask with the taker fee:
market orders and marketable limits fill at once, other limits rest and fill when a later quote crosses
them (checked whenever orders or fills are read). Balances, derivatives positions and fills are tracked
here; client order ids are idempotent like on Coinbase (a repeat returns the existing order).
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from bot_v2.brokerages.base import Broker
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
    TimeInForce,
    TradeId,
)
from bot_v2.errors import (
    InsufficientFundsError,
    NotFoundError,
    OrderRejectedError,
    RetryableError,
)

__all__ = ["DEFAULT_PAPER_BALANCES", "DEFAULT_TAKER_FEE_RATE", "PaperBroker"]

ZERO = Decimal(0)
DEFAULT_TAKER_FEE_RATE = Decimal("0.006")
DEFAULT_PAPER_BALANCES: Mapping[str, Decimal] = {"USD": Decimal(100_000)}


@dataclasses.dataclass(slots=True)
class _PaperPosition:
    quantity: Decimal = ZERO
    entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO


class PaperBroker:
    """A ``Broker`` that trades against quotes in memory. ``market`` supplies market data only."""

    def __init__(
        self,
        market: Broker,
        *,
        balances: Mapping[str, Decimal] | None = None,
        taker_fee_rate: Decimal | None = None,
    ) -> None:
        self.market = market
        self._balances: dict[str, Decimal] = dict(
            balances if balances is not None else DEFAULT_PAPER_BALANCES
        )
        self._fee_rate = taker_fee_rate
        self._orders: dict[OrderId, Order] = {}
        self._by_client_id: dict[ClientOrderId, OrderId] = {}
        self._requests: dict[OrderId, OrderRequest] = {}
        self._fills: list[Fill] = []
        self._positions: dict[Symbol, _PaperPosition] = {}
        self._products: dict[Symbol, Product] = {}
        self._trade_seq = itertools.count(1)
        self.placed_requests: list[OrderRequest] = []

    # --- market data: delegated -------------------------------------------------------------------------

    async def list_products(self, symbols: Sequence[Symbol] | None = None) -> list[Product]:
        return await self.market.list_products(symbols)

    async def get_product(self, symbol: Symbol) -> Product:
        product = self._products.get(symbol)
        if product is None:
            product = await self.market.get_product(symbol)
            self._products[symbol] = product
        return product

    async def get_quotes(self, symbols: Sequence[Symbol]) -> dict[Symbol, Quote]:
        return await self.market.get_quotes(symbols)

    async def get_product_book(self, symbol: Symbol, limit: int = 10) -> ProductBook:
        return await self.market.get_product_book(symbol, limit)

    async def get_candles(
        self, symbol: Symbol, start: datetime, end: datetime, granularity: str = "ONE_MINUTE"
    ) -> list[Candle]:
        return await self.market.get_candles(symbol, start, end, granularity)

    async def get_fee_tier(self) -> FeeTier:
        rate = await self._taker_fee_rate()
        return FeeTier(pricing_tier="paper", maker_fee_rate=rate, taker_fee_rate=rate)

    async def server_time(self) -> datetime:
        return await self.market.server_time()

    async def get_key_permissions(self) -> KeyPermissions:
        return KeyPermissions(can_view=True, can_trade=True, can_transfer=False, portfolio_type="PAPER")

    async def list_portfolios(self) -> list[Portfolio]:
        return [Portfolio(uuid="paper", name="paper", portfolio_type="PAPER")]

    # --- account: in memory ----------------------------------------------------------------------------

    async def list_balances(self) -> list[Balance]:
        return [Balance(currency=c, available=a) for c, a in sorted(self._balances.items())]

    async def list_positions(self) -> list[Position]:
        result = []
        for symbol, pos in sorted(self._positions.items()):
            product = self._products.get(symbol)
            if pos.quantity != 0 and product is not None and product.is_derivative:
                result.append(
                    Position(
                        symbol=symbol,
                        quantity=pos.quantity,
                        entry_price=pos.entry_price,
                        realized_pnl=pos.realized_pnl,
                    )
                )
        return result

    async def get_futures_balance_summary(self) -> FuturesBalanceSummary | None:
        return None

    # --- orders ------------------------------------------------------------------------------------------

    async def preview_order(self, request: OrderRequest) -> OrderPreview:
        product = await self.get_product(request.symbol)
        quote = await self._quote(request.symbol)
        price = quote.ask if request.side is Side.BUY else quote.bid
        fee = price * request.quantity * product.contract_size * await self._taker_fee_rate()
        errors: tuple[str, ...] = ()
        try:
            request.validate_for(product)
        except Exception as exc:
            errors = (str(exc),)
        return OrderPreview(
            symbol=request.symbol,
            side=request.side,
            preview_id=None,
            order_total=price * request.quantity + fee,
            commission_total=fee,
            base_size=request.quantity,
            quote_size=price * request.quantity,
            best_bid=quote.bid,
            best_ask=quote.ask,
            errors=errors,
        )

    async def place_order(self, request: OrderRequest) -> Order:
        """Fill at the quote (market / marketable limit) or rest; a repeated client id returns the order."""
        client_id = request.client_order_id or ClientOrderId(uuid.uuid4().hex)
        existing = self._by_client_id.get(client_id)
        if existing is not None:
            return self._orders[existing]
        product = await self.get_product(request.symbol)
        request.validate_for(product)
        request = dataclasses.replace(request, client_order_id=client_id)
        quote = await self._quote(request.symbol)
        order_id = OrderId(f"paper-{uuid.uuid4().hex}")
        order = Order(
            order_id=order_id,
            client_order_id=client_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            status=OrderStatus.OPEN,
            quantity=request.quantity,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            time_in_force=request.time_in_force,
            created_at=quote.time if quote.time.tzinfo else datetime.now(UTC),
            reduce_only=request.reduce_only,
            leverage=request.leverage,
        )
        price = self._match_price(request, quote)
        if price is None and request.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            order = dataclasses.replace(order, status=OrderStatus.CANCELLED)
        elif price is not None:
            await self._check_funds(product, request, price)
            order = await self._fill(order, product, price)
        self._orders[order_id] = order
        self._by_client_id[client_id] = order_id
        self._requests[order_id] = request
        self.placed_requests.append(request)
        return order

    async def preview_edit(self, order_id: OrderId, size: Decimal, price: Decimal) -> EditPreview:
        self._get(order_id)
        return EditPreview(order_id=order_id, new_size=size, new_price=price)

    async def edit_order(
        self, order_id: OrderId, size: Decimal, price: Decimal, preview_id: str | None = None
    ) -> Order:
        order = self._get(order_id)
        if order.status is not OrderStatus.OPEN:
            raise OrderRejectedError(f"order {order_id} is {order.status}", reason="ORDER_NOT_OPEN")
        order = dataclasses.replace(order, quantity=size, limit_price=price)
        self._orders[order_id] = order
        self._requests[order_id] = dataclasses.replace(
            self._requests[order_id], quantity=size, limit_price=price
        )
        return order

    async def cancel_orders(self, order_ids: Sequence[OrderId]) -> list[CancelResult]:
        results = []
        for order_id in order_ids:
            order = self._orders.get(order_id)
            if order is None:
                results.append(CancelResult(order_id, False, "UNKNOWN_CANCEL_ORDER"))
            elif order.status.is_terminal:
                results.append(CancelResult(order_id, False, "DUPLICATE_CANCEL_REQUEST"))
            else:
                self._orders[order_id] = dataclasses.replace(order, status=OrderStatus.CANCELLED)
                results.append(CancelResult(order_id, True))
        return results

    async def get_order(self, order_id: OrderId) -> Order:
        await self._sweep()
        return self._get(order_id)

    async def list_orders(
        self,
        statuses: Sequence[OrderStatus] | None = None,
        symbols: Sequence[Symbol] | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[Order]:
        await self._sweep()
        orders = [
            o
            for o in reversed(self._orders.values())
            if (statuses is None or o.status in statuses)
            and (symbols is None or o.symbol in symbols)
            and (since is None or o.created_at is None or o.created_at >= since)
        ]
        return orders[:limit] if limit is not None else orders

    async def list_fills(
        self,
        order_ids: Sequence[OrderId] | None = None,
        symbols: Sequence[Symbol] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Fill]:
        await self._sweep()
        fills = [
            f
            for f in reversed(self._fills)
            if (order_ids is None or f.order_id in order_ids)
            and (symbols is None or f.symbol in symbols)
            and (since is None or f.trade_time >= since)
        ]
        return fills[:limit] if limit is not None else fills

    async def close(self) -> None:
        """Nothing to release: the market broker is closed by its owner."""

    # --- matching ----------------------------------------------------------------------------------------

    def _get(self, order_id: OrderId) -> Order:
        try:
            return self._orders[order_id]
        except KeyError:
            raise NotFoundError(f"paper order {order_id} not found") from None

    async def _quote(self, symbol: Symbol) -> Quote:
        quotes = await self.market.get_quotes([symbol])
        quote = quotes.get(symbol)
        if quote is None:
            raise RetryableError(f"{symbol}: no quote from the market")
        return quote

    async def _taker_fee_rate(self) -> Decimal:
        if self._fee_rate is None:
            try:
                self._fee_rate = (await self.market.get_fee_tier()).taker_fee_rate
            except RetryableError:
                return DEFAULT_TAKER_FEE_RATE
        return self._fee_rate

    @staticmethod
    def _match_price(request: OrderRequest, quote: Quote) -> Decimal | None:
        """Price the order fills at now, or None if it rests."""
        touch = quote.ask if request.side is Side.BUY else quote.bid
        if request.order_type is OrderType.MARKET:
            return touch
        if request.order_type is OrderType.STOP_LIMIT:
            assert request.stop_price is not None
            triggered = (
                touch >= request.stop_price if request.side is Side.BUY else touch <= request.stop_price
            )
            if not triggered:
                return None
        assert request.limit_price is not None
        if request.post_only:
            return None
        crosses = touch <= request.limit_price if request.side is Side.BUY else touch >= request.limit_price
        return touch if crosses else None

    async def _check_funds(self, product: Product, request: OrderRequest, price: Decimal) -> None:
        if product.is_derivative:
            return
        fee = price * request.quantity * await self._taker_fee_rate()
        if request.side is Side.BUY:
            need, have = price * request.quantity + fee, self._balances.get(product.quote_currency, ZERO)
            currency = product.quote_currency
        else:
            need, have = request.quantity, self._balances.get(product.base_currency, ZERO)
            currency = product.base_currency
        if need > have:
            raise InsufficientFundsError(
                f"paper: {request.symbol} needs {need} {currency}, has {have}", reason="INSUFFICIENT_FUND"
            )

    async def _fill(self, order: Order, product: Product, price: Decimal) -> Order:
        quantity = order.remaining_quantity
        notional = price * quantity * product.contract_size
        fee = notional * await self._taker_fee_rate()
        fill = Fill(
            trade_id=TradeId(f"paper-t{next(self._trade_seq)}"),
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            quantity=quantity,
            commission=fee,
            liquidity=Liquidity.TAKER,
            trade_time=datetime.now(UTC),
            client_order_id=order.client_order_id,
        )
        self._fills.append(fill)
        self._book(product, fill)
        return dataclasses.replace(
            order,
            status=OrderStatus.FILLED,
            filled_quantity=order.quantity,
            average_fill_price=price,
            total_fees=order.total_fees + fee,
        )

    def _book(self, product: Product, fill: Fill) -> None:
        signed = fill.quantity * fill.side.sign
        notional = fill.price * fill.quantity * product.contract_size
        quote_ccy = product.quote_currency
        if product.is_derivative:
            pos = self._positions.setdefault(fill.symbol, _PaperPosition())
            if pos.quantity == 0 or (pos.quantity > 0) == (signed > 0):
                total = pos.quantity + signed
                pos.entry_price = (pos.entry_price * abs(pos.quantity) + fill.price * fill.quantity) / abs(
                    total
                )
                pos.quantity = total
            else:
                closed = min(abs(signed), abs(pos.quantity))
                pnl = (
                    (fill.price - pos.entry_price)
                    * closed
                    * product.contract_size
                    * (1 if pos.quantity > 0 else -1)
                )
                pos.realized_pnl += pnl
                self._balances[quote_ccy] = self._balances.get(quote_ccy, ZERO) + pnl
                pos.quantity += signed
                if pos.quantity == 0:
                    pos.entry_price = ZERO
                elif abs(signed) > closed:
                    pos.entry_price = fill.price
            self._balances[quote_ccy] = self._balances.get(quote_ccy, ZERO) - fill.commission
            return
        base = product.base_currency
        self._balances[base] = self._balances.get(base, ZERO) + signed
        self._balances[quote_ccy] = (
            self._balances.get(quote_ccy, ZERO) - notional * fill.side.sign - fill.commission
        )

    async def _sweep(self) -> None:
        """Fill resting orders the current quotes cross."""
        resting = [o for o in self._orders.values() if o.status is OrderStatus.OPEN]
        if not resting:
            return
        quotes = await self.market.get_quotes(sorted({o.symbol for o in resting}))
        for order in resting:
            quote = quotes.get(order.symbol)
            if quote is None:
                continue
            request = self._requests[order.order_id]
            if request.order_type is OrderType.STOP_LIMIT and request.stop_price is not None:
                touch = quote.ask if request.side is Side.BUY else quote.bid
                hit = touch >= request.stop_price if request.side is Side.BUY else touch <= request.stop_price
                if hit:
                    request = dataclasses.replace(request, order_type=OrderType.LIMIT, stop_price=None)
                    self._requests[order.order_id] = request
                else:
                    continue
            price = self._match_price(dataclasses.replace(request, post_only=False), quote)
            if price is None:
                continue
            product = await self.get_product(order.symbol)
            try:
                await self._check_funds(product, request, price)
            except InsufficientFundsError:
                self._orders[order.order_id] = dataclasses.replace(
                    order, status=OrderStatus.CANCELLED, reject_reason="INSUFFICIENT_FUND"
                )
                continue
            self._orders[order.order_id] = await self._fill(order, product, price)
