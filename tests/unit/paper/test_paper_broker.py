"""PaperBroker: fills at the quote with taker fees, in-memory balances, idempotent client ids."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot_v2.brokerages.base import Broker
from bot_v2.brokerages.paper import PaperBroker
from bot_v2.domain import ClientOrderId, OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from bot_v2.errors import InsufficientFundsError
from tests.unit.orchestration.fakes import BTC, FakeBroker

FEE = Decimal("0.006")


def _paper(usd: str = "100000") -> tuple[PaperBroker, FakeBroker]:
    market = FakeBroker()
    return PaperBroker(market, balances={"USD": Decimal(usd)}, taker_fee_rate=FEE), market


def _market(side: Side, qty: str, cid: str | None = None) -> OrderRequest:
    return OrderRequest(
        BTC, side, OrderType.MARKET, Decimal(qty), client_order_id=ClientOrderId(cid) if cid else None
    )


async def test_market_buy_fills_at_the_ask_with_the_taker_fee_and_never_calls_the_exchange() -> None:
    paper, market = _paper()
    broker: Broker = paper
    order = await broker.place_order(_market(Side.BUY, "0.1", "pb-1"))
    assert order.status is OrderStatus.FILLED and order.average_fill_price == Decimal(50_001)
    fee = Decimal(50_001) * Decimal("0.1") * FEE
    assert order.total_fees == fee
    balances = {b.currency: b.available for b in await broker.list_balances()}
    assert balances["BTC"] == Decimal("0.1")
    assert balances["USD"] == Decimal(100_000) - Decimal("5000.1") - fee
    fills = await broker.list_fills(order_ids=[order.order_id])
    assert len(fills) == 1 and fills[0].commission == fee
    assert "place_order" not in market.calls


async def test_repeated_client_order_id_returns_the_existing_order() -> None:
    paper, _ = _paper()
    first = await paper.place_order(_market(Side.BUY, "0.1", "pb-dup"))
    again = await paper.place_order(_market(Side.BUY, "0.1", "pb-dup"))
    assert again == first
    assert len(await paper.list_fills()) == 1


async def test_insufficient_funds_are_rejected() -> None:
    paper, _ = _paper(usd="100")
    with pytest.raises(InsufficientFundsError):
        await paper.place_order(_market(Side.BUY, "0.1"))
    with pytest.raises(InsufficientFundsError):
        await paper.place_order(_market(Side.SELL, "0.1"))


async def test_resting_limit_fills_when_the_market_crosses_and_can_be_cancelled() -> None:
    paper, market = _paper()
    request = OrderRequest(
        BTC,
        Side.BUY,
        OrderType.LIMIT,
        Decimal("0.1"),
        limit_price=Decimal(49_000),
        time_in_force=TimeInForce.GTC,
    )
    order = await paper.place_order(request)
    assert order.status is OrderStatus.OPEN
    other = await paper.place_order(request)
    market.prices[BTC] = Decimal(48_000)
    assert (await paper.get_order(order.order_id)).status is OrderStatus.FILLED
    assert (await paper.get_order(other.order_id)).status is OrderStatus.FILLED
    market.prices[BTC] = Decimal(50_000)
    resting = await paper.place_order(request)
    results = await paper.cancel_orders([resting.order_id])
    assert results[0].success and (await paper.get_order(resting.order_id)).status is OrderStatus.CANCELLED


async def test_ioc_limit_that_does_not_cross_is_cancelled() -> None:
    paper, _ = _paper()
    request = OrderRequest(
        BTC, Side.BUY, OrderType.LIMIT, Decimal("0.1"), limit_price=Decimal(1), time_in_force=TimeInForce.IOC
    )
    assert (await paper.place_order(request)).status is OrderStatus.CANCELLED


async def test_market_data_is_delegated() -> None:
    paper, market = _paper()
    quotes = await paper.get_quotes([BTC])
    assert quotes[BTC].ask == Decimal(50_001) and "get_quotes" in market.calls
    assert [p.symbol for p in await paper.list_products([BTC])] == [BTC]


async def test_list_orders_since_filters_on_creation_time() -> None:
    from datetime import timedelta

    paper, _ = _paper()
    order = await paper.place_order(_market(Side.BUY, "0.1", "pb-since"))
    assert order.created_at is not None
    assert [o.order_id for o in await paper.list_orders(since=order.created_at)] == [order.order_id]
    assert await paper.list_orders(since=order.created_at + timedelta(seconds=1)) == []
