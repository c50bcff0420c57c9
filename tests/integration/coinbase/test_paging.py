"""Cursor paging end to end: more orders and fills than one page, and batched cancels."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from bot_v2.brokerages.coinbase import CoinbaseBroker
from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.domain import OrderRequest, OrderStatus, OrderType, Side, Symbol
from tests.integration.coinbase.conftest import CountingAdapter

ETH = Symbol("ETH-USD")
SOL = Symbol("SOL-USD")
D = Decimal
Counting = Callable[..., tuple[CoinbaseBroker, CountingAdapter]]


def calls_to(adapter: CountingAdapter, path: str) -> int:
    return sum(1 for sent in adapter.sent if sent.endswith(path))


async def test_orders_and_cancels_page_and_batch(
    fresh_simulator: RunningSimulator, counting_broker: Counting
) -> None:
    broker, adapter = counting_broker(fresh_simulator)
    broker.page_size = 5
    broker.cancel_batch_size = 5
    product = await broker.get_product(ETH)
    quote = (await broker.get_quotes([ETH]))[ETH]
    base = (quote.bid * D("0.5") / product.price_increment).to_integral_value() * product.price_increment
    placed = [
        await broker.place_order(
            OrderRequest(ETH, Side.BUY, OrderType.LIMIT, D("0.01"), base - i * D("0.01"))
        )
        for i in range(12)
    ]
    assert {o.status for o in placed} == {OrderStatus.OPEN}

    before = calls_to(adapter, "/orders/historical/batch")
    listed = await broker.list_orders(statuses=[OrderStatus.OPEN], symbols=[ETH])
    assert {o.order_id for o in listed} == {o.order_id for o in placed}
    assert len(listed) == 12 and calls_to(adapter, "/orders/historical/batch") - before == 3  # 5 + 5 + 2
    assert len(await broker.list_orders(symbols=[ETH], limit=7)) == 7

    results = await broker.cancel_orders([o.order_id for o in placed])
    assert len(results) == 12 and all(r.success for r in results)
    assert calls_to(adapter, "/orders/batch_cancel") == 3
    assert await broker.list_orders(statuses=[OrderStatus.OPEN], symbols=[ETH]) == []
    cancelled = await broker.list_orders(statuses=[OrderStatus.CANCELLED], symbols=[ETH])
    assert len(cancelled) == 12


async def test_fills_page(fresh_simulator: RunningSimulator, counting_broker: Counting) -> None:
    broker, adapter = counting_broker(fresh_simulator)
    broker.page_size = 5
    orders = [
        await broker.place_order(OrderRequest(SOL, Side.BUY, OrderType.MARKET, D("0.01"))) for _ in range(11)
    ]
    assert {o.status for o in orders} == {OrderStatus.FILLED}
    fills = await broker.list_fills(symbols=[SOL])
    assert {f.order_id for f in fills} == {o.order_id for o in orders}
    assert len({f.trade_id for f in fills}) == len(fills) >= 11
    assert calls_to(adapter, "/orders/historical/fills") >= 3
    assert len(await broker.list_fills(symbols=[SOL], limit=6)) == 6
