"""``CoinbaseBroker``: the ``Broker`` port over the official synchronous SDK (coinbase-advanced-py).

Each SDK call runs on a small dedicated thread pool so the event loop never blocks on ``requests``. The call,
the rate-limit bookkeeping and the conversion of its payload to domain types run together inside
``sdk_errors``, so every failure surfaces as a ``bot_v2.errors`` exception and no SDK object leaves this
module.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import requests

from bot_v2.brokerages.base import Broker
from bot_v2.brokerages.coinbase import convert
from bot_v2.brokerages.coinbase.connection import CoinbaseConnection, build_client
from bot_v2.brokerages.coinbase.errors_map import order_rejection, sdk_errors
from bot_v2.brokerages.coinbase.orders import create_order_kwargs, decimal_str, preview_order_kwargs, rfc3339
from bot_v2.brokerages.coinbase.ratelimit import RateLimitInfo, RateLimitTracker
from bot_v2.brokerages.coinbase.stream import (
    CoinbaseStream,
    OrderCallback,
    StateCallback,
    StreamSettings,
)
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
    Symbol,
    ensure_utc,
)
from bot_v2.errors import (
    ExchangeProtocolError,
    ExchangeUnavailableError,
    InputError,
    InvalidOrderError,
    NotFoundError,
    RetryableError,
    UnknownSymbolError,
)

__all__ = ["GRANULARITY_SECONDS", "CoinbaseBroker"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
Payload = Mapping[str, Any]

GRANULARITY_SECONDS = {
    "ONE_MINUTE": 60,
    "FIVE_MINUTE": 300,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "TWO_HOUR": 7200,
    "FOUR_HOUR": 14400,
    "SIX_HOUR": 21600,
    "ONE_DAY": 86400,
}
MAX_CANDLES_PER_CALL = 350


class CoinbaseBroker:
    """An Advanced Trade account (spot, and CFM perpetual-style futures when ``enable_derivatives``).

    ``CoinbaseBroker(connection)`` builds the SDK client at once and raises ``MissingCredentialsError``
    without credentials (``AuthenticationError`` when the key cannot be loaded). ``client`` is for tests
    only: any object with the ``RESTClient`` methods used here.
    """

    page_size = 100
    accounts_page_size = 250
    cancel_batch_size = 100
    unknown_symbol_refresh_seconds = 30.0

    def __init__(self, connection: CoinbaseConnection, *, client: Any = None) -> None:
        self._connection = connection
        self._masker = connection.masker()
        self._client = client if client is not None else build_client(connection)
        for secret in (getattr(self._client, "api_key", None), getattr(self._client, "api_secret", None)):
            if isinstance(secret, str):
                self._masker.add(secret)  # a key file's key and secret are only known to the client
        self._executor = ThreadPoolExecutor(
            max_workers=connection.max_workers, thread_name_prefix="coinbase-sdk"
        )
        self._rate = RateLimitTracker()
        self._products: dict[Symbol, Product] = {}
        self._products_refreshed_at: float | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"CoinbaseBroker({self._connection!r})"

    @property
    def connection(self) -> CoinbaseConnection:
        return self._connection

    @property
    def rate_limit(self) -> RateLimitInfo | None:
        """The last rate-limit headers seen (limit, remaining, reset), or None before the first answer."""
        return self._rate.info

    def open_stream(
        self,
        symbols: Sequence[Symbol],
        *,
        user_channel: bool = True,
        on_state: StateCallback | None = None,
        on_order: OrderCallback | None = None,
    ) -> CoinbaseStream | None:
        """The WebSocket feed for ``symbols`` on this account's connection (not started), or None when the
        connection has no ``ws_url``. ``user_channel``: also follow this key's orders."""
        url = self._connection.ws_url
        if url is None:
            return None
        key, secret = getattr(self._client, "api_key", None), getattr(self._client, "api_secret", None)
        credentials = (key, secret) if isinstance(key, str) and isinstance(secret, str) else None
        ca_file = self._connection.ca_file
        return CoinbaseStream(
            StreamSettings(
                url,
                stale_seconds=self._connection.ws_stale_seconds,
                user_channel=user_channel and bool(credentials),
            ),
            symbols,
            credentials=credentials,
            ca_file=str(ca_file) if ca_file is not None else None,
            masker=self._masker,
            on_state=on_state,
            on_order=on_order,
        )

    async def __aenter__(self) -> CoinbaseBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop accepting calls, wait for calls in flight (bounded by the timeout), close the HTTP session."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        session = getattr(self._client, "session", None)
        if session is not None:
            session.close()

    # --- the one path every SDK call takes ------------------------------------------------------------------

    async def _call(
        self,
        operation: str,
        convert_payload: Callable[[Payload], T],
        method: str,
        /,
        *,
        order_path: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run ``client.<method>(**kwargs)`` on the pool; record rate limits; convert; translate errors."""
        if self._closed:
            raise ExchangeUnavailableError(f"{operation}: the Coinbase broker is closed")
        sdk_kwargs = {k: v for k, v in kwargs.items() if v is not None}
        work = functools.partial(self._run, operation, convert_payload, method, order_path, sdk_kwargs)
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        except RuntimeError:  # close() shut the pool down between the check above and here
            raise ExchangeUnavailableError(f"{operation}: the Coinbase broker is closed") from None
        return await future

    def _run(
        self,
        operation: str,
        convert_payload: Callable[[Payload], T],
        method: str,
        order_path: bool,
        kwargs: dict[str, Any],
    ) -> T:
        with sdk_errors(operation, self._masker, order_path=order_path):
            try:
                response = getattr(self._client, method)(**kwargs)
            except requests.HTTPError as exc:
                if exc.response is not None:
                    self._rate.observe_headers(exc.response.headers)
                raise
            self._rate.observe_response(response)
            payload = convert.plain(response)
            if not isinstance(payload, Mapping):
                raise ExchangeProtocolError(f"{operation}: response is not a JSON object")
            return convert_payload(payload)

    # --- products and market data ---------------------------------------------------------------------------

    async def list_products(self, symbols: Sequence[Symbol] | None = None) -> list[Product]:
        """List products (all, or just ``symbols``); futures are included only with derivatives enabled."""
        ids = list(dict.fromkeys(symbols)) if symbols else None
        products = await self._call("list products", _products, "get_products", product_ids=ids)
        if self._connection.enable_derivatives and not ids:
            futures = await self._call(
                "list futures products", _products, "get_products", product_type="FUTURE"
            )
            seen = {p.symbol for p in products}
            products += [p for p in futures if p.symbol not in seen]
        for product in products:
            self._products[product.symbol] = product
        if ids is None:
            self._products_refreshed_at = time.monotonic()
        if not self._connection.enable_derivatives:
            products = [p for p in products if not p.is_derivative]
        return products

    async def get_product(self, symbol: Symbol) -> Product:
        """Fetch one product (fresh price and limits); ``UnknownSymbolError`` when it is not listed."""
        try:
            product = await self._call(
                f"get product {symbol}", convert.to_product, "get_product", product_id=symbol
            )
        except NotFoundError:
            self._products.pop(symbol, None)
            raise UnknownSymbolError(f"{symbol}: not a product on this exchange") from None
        self._products[product.symbol] = product
        return product

    async def _cached_product(self, symbol: Symbol) -> Product:
        """The product for validating an order: cached, else one refresh of the product list."""
        product = self._products.get(symbol)
        if product is not None:
            return product
        recent = self._products_refreshed_at
        if recent is None or time.monotonic() - recent >= self.unknown_symbol_refresh_seconds:
            await self.list_products()
            product = self._products.get(symbol)
        if product is None:
            raise UnknownSymbolError(f"{symbol}: not a product on this exchange")
        return product

    async def get_quotes(self, symbols: Sequence[Symbol]) -> dict[Symbol, Quote]:
        """Best bid/ask for ``symbols``; a symbol with an empty side is left out."""
        if not symbols:
            return {}
        return await self._call(
            "get best bid/ask", _quotes, "get_best_bid_ask", product_ids=list(dict.fromkeys(symbols))
        )

    async def get_product_book(self, symbol: Symbol, limit: int = 10) -> ProductBook:
        return await self._call(
            f"get product book {symbol}", _book, "get_product_book", product_id=symbol, limit=limit
        )

    async def get_candles(
        self, symbol: Symbol, start: datetime, end: datetime, granularity: str = "ONE_MINUTE"
    ) -> list[Candle]:
        """Candles in ``[start, end]``, oldest first; long ranges are fetched in 350-bucket windows."""
        step = GRANULARITY_SECONDS.get(granularity)
        if step is None:
            raise InputError(f"granularity {granularity!r} is not one of {', '.join(GRANULARITY_SECONDS)}")
        start, end = ensure_utc(start), ensure_utc(end)
        if end <= start:
            raise InputError(f"candles: end {end.isoformat()} is not after start {start.isoformat()}")
        window = timedelta(seconds=step * MAX_CANDLES_PER_CALL)
        by_start: dict[datetime, Candle] = {}
        lo = start
        while lo < end:
            hi = min(lo + window, end)
            page = await self._call(
                f"get candles {symbol}",
                _candles,
                "get_candles",
                product_id=symbol,
                start=str(int(lo.timestamp())),
                end=str(int(hi.timestamp())),
                granularity=granularity,
            )
            by_start.update((c.start, c) for c in page)
            lo = hi
        return [by_start[k] for k in sorted(by_start)]

    # --- account --------------------------------------------------------------------------------------------

    async def list_balances(self) -> list[Balance]:
        """Every account's balance, following the accounts cursor."""
        balances: list[Balance] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page, has_next, cursor = await self._call(
                "list accounts", _accounts_page, "get_accounts", limit=self.accounts_page_size, cursor=cursor
            )
            balances.extend(page)
            if not has_next or not cursor:
                return balances
            _check_cursor("list accounts", cursor, seen)

    async def list_positions(self) -> list[Position]:
        """CFM futures positions; ``[]`` when derivatives are disabled (no request is made)."""
        if not self._connection.enable_derivatives:
            return []
        return await self._call("list futures positions", _positions, "list_futures_positions")

    async def get_futures_balance_summary(self) -> FuturesBalanceSummary | None:
        """CFM balance summary; None when derivatives are disabled (no request is made)."""
        if not self._connection.enable_derivatives:
            return None
        return await self._call(
            "get futures balance summary", _balance_summary, "get_futures_balance_summary"
        )

    async def get_fee_tier(self) -> FeeTier:
        return await self._call("get transaction summary", convert.to_fee_tier, "get_transaction_summary")

    async def get_key_permissions(self) -> KeyPermissions:
        return await self._call("get key permissions", convert.to_key_permissions, "get_api_key_permissions")

    async def list_portfolios(self) -> list[Portfolio]:
        return await self._call("list portfolios", _portfolios, "get_portfolios")

    async def server_time(self) -> datetime:
        return await self._call("get server time", convert.to_server_time, "get_unix_time")

    # --- orders ---------------------------------------------------------------------------------------------

    async def _checked(self, request: OrderRequest) -> tuple[Product, Decimal | None]:
        """Validate ``request`` before anything is sent; return the stop-direction reference price."""
        request.validate_shape()
        product = await self._cached_product(request.symbol)
        if product.is_derivative and not self._connection.enable_derivatives:
            raise InvalidOrderError(f"{request.symbol}: derivatives are disabled for this connection")
        if product.trading_disabled:
            raise InvalidOrderError(f"{request.symbol}: trading is disabled on this product")
        request.validate_for(product)
        reference: Decimal | None = None
        if request.order_type is OrderType.STOP_LIMIT:
            fresh = await self.get_product(request.symbol)
            reference = fresh.price
            if reference is None:
                quote = (await self.get_quotes([request.symbol])).get(request.symbol)
                reference = quote.mid if quote is not None else None
        return product, reference

    async def preview_order(self, request: OrderRequest) -> OrderPreview:
        """Ask the exchange to preview ``request``; its ``errs`` come back in ``OrderPreview.errors``."""
        _, reference = await self._checked(request)
        return await self._call(
            f"preview order {request.symbol}",
            functools.partial(convert.to_order_preview, symbol=request.symbol, side=request.side),
            "preview_order",
            order_path=True,
            **preview_order_kwargs(request, reference),
        )

    async def place_order(self, request: OrderRequest) -> Order:
        """Create the order and return it as the exchange reports it (idempotent on ``client_order_id``).

        A rejection raises ``OrderRejectedError`` (``InsufficientFundsError`` for funds). If the order was
        accepted but could not be read back, a ``PENDING`` order built from the request is returned.
        """
        _, reference = await self._checked(request)
        client_order_id = request.client_order_id or ClientOrderId(uuid.uuid4().hex)
        operation = f"create order {request.symbol} {client_order_id}"
        order_id = await self._call(
            operation,
            functools.partial(_created_order_id, operation=operation),
            "create_order",
            order_path=True,
            **create_order_kwargs(request, client_order_id, reference),
        )
        try:
            return await self.get_order(order_id)
        except (RetryableError, NotFoundError) as exc:
            logger.warning("order %s created but not read back: %s", order_id, exc.one_line())
            return Order(
                order_id=order_id,
                client_order_id=client_order_id,
                symbol=request.symbol,
                side=request.side,
                order_type=request.order_type,
                status=OrderStatus.PENDING,
                quantity=request.quantity,
                limit_price=request.limit_price,
                stop_price=request.stop_price,
                time_in_force=request.time_in_force,
                reduce_only=request.reduce_only,
                leverage=request.leverage,
            )

    async def _check_edit(self, order_id: OrderId, size: Decimal, price: Decimal) -> None:
        """Validate the new size and price against the order's product before sending the edit."""
        order = await self.get_order(order_id)
        product = await self._cached_product(order.symbol)
        OrderRequest(
            symbol=order.symbol, side=order.side, order_type=OrderType.LIMIT, quantity=size, limit_price=price
        ).validate_for(product)

    async def preview_edit(self, order_id: OrderId, size: Decimal, price: Decimal) -> EditPreview:
        """Preview an edit of an open GTC limit / stop-limit order; failures come back in ``errors``."""
        await self._check_edit(order_id, size, price)
        return await self._call(
            f"preview edit {order_id}",
            functools.partial(convert.to_edit_preview, order_id=order_id, size=size, price=price),
            "preview_edit_order",
            order_path=True,
            order_id=order_id,
            size=decimal_str(size),
            price=decimal_str(price),
        )

    async def edit_order(
        self, order_id: OrderId, size: Decimal, price: Decimal, preview_id: str | None = None
    ) -> Order:
        """Edit an open order, always sending both size and price; a refusal raises ``OrderRejectedError``."""
        await self._check_edit(order_id, size, price)
        operation = f"edit order {order_id}"
        await self._call(
            operation,
            functools.partial(_edit_accepted, operation=operation),
            "edit_order",
            order_path=True,
            order_id=order_id,
            size=decimal_str(size),
            price=decimal_str(price),
            preview_id=preview_id,
        )
        return await self.get_order(order_id)

    async def cancel_orders(self, order_ids: Sequence[OrderId]) -> list[CancelResult]:
        """Cancel in batches of ``cancel_batch_size``; per-order failures come back in the results."""
        ids = list(dict.fromkeys(order_ids))
        results: list[CancelResult] = []
        for i in range(0, len(ids), self.cancel_batch_size):
            chunk = ids[i : i + self.cancel_batch_size]
            results += await self._call(
                f"cancel {len(chunk)} orders", _cancel_results, "cancel_orders", order_ids=chunk
            )
        return results

    async def get_order(self, order_id: OrderId) -> Order:
        """The order as the exchange reports it; ``NotFoundError`` for an unknown id."""
        return await self._call(f"get order {order_id}", _one_order, "get_order", order_id=order_id)

    async def list_orders(
        self,
        statuses: Sequence[OrderStatus] | None = None,
        symbols: Sequence[Symbol] | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[Order]:
        """All matching orders, newest first, following cursors until done (or ``limit`` reached);
        ``since`` is sent as ``start_date`` (orders created at or after it)."""
        orders: list[Order] = []
        cursor: str | None = None
        seen: set[str] = set()
        status_filter = (
            [convert.ORDER_STATUS_TO_API[s] for s in dict.fromkeys(statuses)] if statuses else None
        )
        while limit is None or len(orders) < limit:
            want = self.page_size if limit is None else min(self.page_size, limit - len(orders))
            page, has_next, cursor = await self._call(
                "list orders",
                _orders_page,
                "list_orders",
                order_status=status_filter,
                product_ids=list(dict.fromkeys(symbols)) if symbols else None,
                start_date=rfc3339(since) if since is not None else None,
                limit=want,
                cursor=cursor,
            )
            orders.extend(page)
            if not has_next or not cursor or not page:
                break
            _check_cursor("list orders", cursor, seen)
        return orders if limit is None else orders[:limit]

    async def list_fills(
        self,
        order_ids: Sequence[OrderId] | None = None,
        symbols: Sequence[Symbol] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Fill]:
        """All matching fills, following cursors until done (or ``limit`` reached)."""
        fills: list[Fill] = []
        cursor: str | None = None
        seen: set[str] = set()
        while limit is None or len(fills) < limit:
            want = self.page_size if limit is None else min(self.page_size, limit - len(fills))
            page, cursor = await self._call(
                "list fills",
                _fills_page,
                "get_fills",
                order_ids=list(dict.fromkeys(order_ids)) if order_ids else None,
                product_ids=list(dict.fromkeys(symbols)) if symbols else None,
                start_sequence_timestamp=rfc3339(since) if since is not None else None,
                limit=want,
                cursor=cursor,
            )
            fills.extend(page)
            if not cursor or not page:
                break
            _check_cursor("list fills", cursor, seen)
        return fills if limit is None else fills[:limit]


# --- payload readers (run inside sdk_errors on the worker thread) -------------------------------------------


def _check_cursor(operation: str, cursor: str, seen: set[str]) -> None:
    if cursor in seen:
        raise ExchangeProtocolError(f"{operation}: the exchange repeated cursor {cursor[:40]!r}")
    seen.add(cursor)


def _list(payload: Payload, name: str, operation: str) -> list[Any]:
    """The payload's list ``name``. Advanced Trade always sends it (``[]`` when empty), so a payload without
    it is unreadable, never "nothing": an empty account or product list read from a garbled answer would
    make the bot believe it holds nothing, or that its symbols are not listed."""
    value = payload.get(name)
    if value is None:
        raise ExchangeProtocolError(f"{operation}: payload has no {name!r} list")
    if not isinstance(value, list):
        raise ExchangeProtocolError(f"{operation}: {name!r} is not a list")
    return value


def _products(payload: Payload) -> list[Product]:
    return [convert.to_product(p) for p in _list(payload, "products", "list products")]


def _quotes(payload: Payload) -> dict[Symbol, Quote]:
    quotes = (convert.to_quote(b) for b in _list(payload, "pricebooks", "best bid/ask"))
    return {q.symbol: q for q in quotes if q is not None}


def _book(payload: Payload) -> ProductBook:
    book = payload.get("pricebook")
    if not isinstance(book, Mapping):
        raise ExchangeProtocolError("product book: payload has no 'pricebook'")
    return convert.to_product_book(book)


def _candles(payload: Payload) -> list[Candle]:
    return [convert.to_candle(c) for c in _list(payload, "candles", "candles")]


def _accounts_page(payload: Payload) -> tuple[list[Balance], bool, str | None]:
    balances = [convert.to_balance(a) for a in _list(payload, "accounts", "list accounts")]
    return balances, bool(payload.get("has_next")), payload.get("cursor") or None


def _positions(payload: Payload) -> list[Position]:
    return [convert.to_position(p) for p in _list(payload, "positions", "futures positions")]


def _balance_summary(payload: Payload) -> FuturesBalanceSummary:
    summary = payload.get("balance_summary")
    if not isinstance(summary, Mapping):
        raise ExchangeProtocolError("futures balance summary: payload has no 'balance_summary'")
    return convert.to_futures_balance_summary(summary)


def _portfolios(payload: Payload) -> list[Portfolio]:
    return [convert.to_portfolio(p) for p in _list(payload, "portfolios", "list portfolios")]


def _one_order(payload: Payload) -> Order:
    order = payload.get("order")
    if not isinstance(order, Mapping):
        raise ExchangeProtocolError("get order: payload has no 'order'")
    return convert.to_order(order)


def _orders_page(payload: Payload) -> tuple[list[Order], bool, str | None]:
    orders = [convert.to_order(o) for o in _list(payload, "orders", "list orders")]
    return orders, bool(payload.get("has_next")), payload.get("cursor") or None


def _fills_page(payload: Payload) -> tuple[list[Fill], str | None]:
    fills = [convert.to_fill(f) for f in _list(payload, "fills", "list fills")]
    return fills, payload.get("cursor") or None


def _cancel_results(payload: Payload) -> list[CancelResult]:
    return [convert.to_cancel_result(r) for r in _list(payload, "results", "cancel orders")]


def _created_order_id(payload: Payload, operation: str) -> OrderId:
    """The new (or, for a repeated client order id, existing) order id; a rejection raises."""
    if not payload.get("success"):
        reasons, message = convert.create_failure_reasons(payload)
        raise order_rejection(operation, reasons, message)
    success = payload.get("success_response")
    order_id = success.get("order_id") if isinstance(success, Mapping) else None
    order_id = order_id or payload.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise ExchangeProtocolError(f"{operation}: accepted without an order_id")
    return OrderId(order_id)


def _edit_accepted(payload: Payload, operation: str) -> None:
    reasons = convert.edit_reasons(payload)
    if payload.get("success") is False or reasons:
        err = payload.get("error_response")
        message = err.get("message") if isinstance(err, Mapping) else None
        raise order_rejection(operation, list(reasons), message)


if TYPE_CHECKING:

    def _implements_broker(broker: CoinbaseBroker) -> Broker:
        """Let mypy prove ``CoinbaseBroker`` satisfies the ``Broker`` protocol."""
        return broker
