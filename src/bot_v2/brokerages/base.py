"""The Broker port: everything the bot asks of an exchange, in domain types, all async.

Adapters: ``brokerages.coinbase.CoinbaseBroker`` (the official SDK, against api.coinbase.com or the simulated
exchange) and the paper broker used by ``--dry-run``. Unit tests use small hand-written fakes of this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from bot_v2.domain import (
    Balance,
    CancelResult,
    Candle,
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
    Portfolio,
    Position,
    Product,
    ProductBook,
    Quote,
    Symbol,
)


class Broker(Protocol):
    """An exchange account. Every method raises only ``bot_v2.errors`` exceptions."""

    async def list_products(self, symbols: Sequence[Symbol] | None = None) -> list[Product]: ...

    async def get_product(self, symbol: Symbol) -> Product:
        """Return the product; raise ``UnknownSymbolError`` for an unlisted symbol."""
        ...

    async def get_quotes(self, symbols: Sequence[Symbol]) -> dict[Symbol, Quote]: ...

    async def get_product_book(self, symbol: Symbol, limit: int = 10) -> ProductBook: ...

    async def get_candles(
        self, symbol: Symbol, start: datetime, end: datetime, granularity: str = "ONE_MINUTE"
    ) -> list[Candle]: ...

    async def list_balances(self) -> list[Balance]: ...

    async def list_positions(self) -> list[Position]:
        """Derivatives positions (CFM). Empty when derivatives are disabled."""
        ...

    async def get_futures_balance_summary(self) -> FuturesBalanceSummary | None: ...

    async def get_fee_tier(self) -> FeeTier: ...

    async def get_key_permissions(self) -> KeyPermissions: ...

    async def list_portfolios(self) -> list[Portfolio]: ...

    async def server_time(self) -> datetime: ...

    async def preview_order(self, request: OrderRequest) -> OrderPreview: ...

    async def place_order(self, request: OrderRequest) -> Order:
        """Create the order. Idempotent on ``request.client_order_id``: a repeat returns the existing order."""
        ...

    async def preview_edit(self, order_id: OrderId, size: Decimal, price: Decimal) -> EditPreview: ...

    async def edit_order(
        self, order_id: OrderId, size: Decimal, price: Decimal, preview_id: str | None = None
    ) -> Order: ...

    async def cancel_orders(self, order_ids: Sequence[OrderId]) -> list[CancelResult]: ...

    async def get_order(self, order_id: OrderId) -> Order: ...

    async def list_orders(
        self,
        statuses: Sequence[OrderStatus] | None = None,
        symbols: Sequence[Symbol] | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[Order]:
        """All matching orders, newest first, following cursors until done (or ``limit`` reached).

        ``since``: only orders created at or after it (the exchange's ``start_date``).
        """
        ...

    async def list_fills(
        self,
        order_ids: Sequence[OrderId] | None = None,
        symbols: Sequence[Symbol] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Fill]:
        """All matching fills, following cursors until done (or ``limit`` reached)."""
        ...

    async def close(self) -> None: ...
