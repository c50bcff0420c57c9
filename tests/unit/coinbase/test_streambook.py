"""The feed's message parsing: level-2 books from ``l2_data`` events, user-channel order rows, message times."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot_v2.brokerages.coinbase.stream import _message_time
from bot_v2.brokerages.coinbase.streambook import Level2Book, order_updates
from bot_v2.domain import Symbol

AT = datetime(2026, 1, 1, tzinfo=UTC)


def level(side: str, price: str, size: str) -> dict[str, str]:
    return {"side": side, "event_time": "", "price_level": price, "new_quantity": size}


def test_snapshot_then_absolute_updates_give_the_best_bid_and_ask() -> None:
    book = Level2Book(Symbol("BTC-USD"))
    assert book.quote(AT) is None  # no snapshot yet
    book.apply({"type": "update", "updates": [level("bid", "99", "1")]})
    assert book.quote(AT) is None  # updates before a snapshot never make a quote
    book.apply(
        {
            "type": "snapshot",
            "updates": [level("bid", "100", "1"), level("bid", "99", "2"), level("offer", "101", "3")],
        }
    )
    quote = book.quote(AT)
    assert quote is not None and (quote.bid, quote.ask, quote.time) == (Decimal(100), Decimal(101), AT)
    book.apply({"type": "update", "updates": [level("bid", "100", "0"), level("offer", "100.5", "1")]})
    quote = book.quote(AT)
    assert quote is not None and (quote.bid, quote.ask) == (Decimal(99), Decimal("100.5"))
    book.apply({"type": "snapshot", "updates": [level("bid", "50", "1")]})
    assert book.quote(AT) is None  # a new snapshot replaces the book: no ask now
    with pytest.raises(ValueError, match="BTC-USD"):
        book.apply({"type": "update", "updates": [{"side": "bid", "price_level": "x", "new_quantity": "1"}]})


def test_user_rows_become_order_updates() -> None:
    event = {
        "type": "update",
        "orders": [
            {"order_id": "o1", "client_order_id": "pb-1", "product_id": "BTC-USD", "status": "FILLED",
             "cumulative_quantity": "0.001"},
            {"client_order_id": "no-id"},
            {"order_id": "o2", "status": "OPEN", "cumulative_quantity": "bad"},
        ],
    }  # fmt: skip
    first, second = order_updates(event)
    assert (first.order_id, first.client_order_id, first.status) == ("o1", "pb-1", "FILLED")
    assert first.filled_quantity == Decimal("0.001") and second.filled_quantity == 0


def test_message_times_with_nanoseconds() -> None:
    assert _message_time("2026-01-01T00:00:00.123456789Z") == datetime(
        2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC
    )
    assert _message_time("2026-01-01T00:00:00Z") == AT
    assert _message_time("2026-01-01T00:00:00.25Z") == datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    assert _message_time("2026-01-01T00:00:00.000001+00:00") == datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert _message_time("garbage").tzinfo is not None  # unreadable: now
