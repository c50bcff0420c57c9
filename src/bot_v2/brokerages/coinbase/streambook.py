"""What the WebSocket feed's messages mean, in domain terms: level-2 books and user-channel order updates.

Kept apart from the connection loop (``stream.py``) so the parsing is plain functions over dicts. Payloads are
the Advanced Trade shapes (``l2_data`` snapshot/update events with absolute ``new_quantity``; ``user`` events
with ``orders[]``); nothing here leaves the adapter but ``Quote`` and ``OrderUpdate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot_v2.domain import ClientOrderId, OrderId, Quote, Symbol

__all__ = ["Level2Book", "OrderUpdate", "order_updates"]

ZERO = Decimal(0)


class Level2Book:
    """One symbol's book from ``l2_data`` events: a snapshot replaces it, an update sets absolute sizes."""

    def __init__(self, symbol: Symbol) -> None:
        self.symbol = symbol
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.has_snapshot = False

    def apply(self, event: Mapping[str, Any]) -> None:
        """Apply one ``l2_data`` event (``type`` snapshot or update); raise ``ValueError`` when malformed."""
        if event.get("type") == "snapshot":
            self.bids.clear()
            self.asks.clear()
            self.has_snapshot = True
        for update in event.get("updates") or ():
            try:
                price = Decimal(str(update["price_level"]))
                size = Decimal(str(update["new_quantity"]))
            except (KeyError, InvalidOperation) as exc:
                raise ValueError(f"l2_data update for {self.symbol}: {exc!r}") from None
            side = self.bids if update.get("side") == "bid" else self.asks
            if size == ZERO:
                side.pop(price, None)
            else:
                side[price] = size

    def quote(self, as_of: datetime) -> Quote | None:
        """Best bid/ask as of ``as_of`` (the newest message of a gap-free socket), or None without both sides."""
        if not (self.has_snapshot and self.bids and self.asks):
            return None
        return Quote(self.symbol, max(self.bids), min(self.asks), as_of)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One order as the ``user`` channel reports it (a snapshot row or an update)."""

    order_id: OrderId
    client_order_id: ClientOrderId
    symbol: Symbol
    status: str
    filled_quantity: Decimal


def order_updates(event: Mapping[str, Any]) -> list[OrderUpdate]:
    """The orders of one ``user`` event; rows without an order id are skipped."""
    found: list[OrderUpdate] = []
    for row in event.get("orders") or ():
        order_id = row.get("order_id")
        if not order_id:
            continue
        try:
            filled = Decimal(str(row.get("cumulative_quantity") or "0"))
        except InvalidOperation:
            filled = ZERO
        found.append(
            OrderUpdate(
                order_id=OrderId(str(order_id)),
                client_order_id=ClientOrderId(str(row.get("client_order_id") or "")),
                symbol=Symbol(str(row.get("product_id") or "")),
                status=str(row.get("status") or ""),
                filled_quantity=filled,
            )
        )
    return found
