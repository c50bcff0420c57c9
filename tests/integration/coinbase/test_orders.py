"""Orders end to end: preview, place (every type), idempotency, edit, cancel, perps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

import pytest

from bot_v2.brokerages.coinbase import CoinbaseBroker
from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.domain import (
    ClientOrderId,
    Liquidity,
    MarginType,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
)
from bot_v2.errors import OrderRejectedError
from tests.integration.coinbase.conftest import MakeBroker

BTC = Symbol("BTC-USD")
BIP = Symbol("BIP-20DEC30-CDE")
D = Decimal


def cid() -> ClientOrderId:
    return ClientOrderId(uuid.uuid4().hex)


def on_tick(value: Decimal, increment: Decimal) -> Decimal:
    return (value / increment).to_integral_value(ROUND_DOWN) * increment


async def far_prices(broker: CoinbaseBroker, symbol: Symbol) -> tuple[Decimal, Decimal, Decimal]:
    """(a buy price far below the market, the mid, a sell price far above it), on the price increment."""
    product = await broker.get_product(symbol)
    quote = (await broker.get_quotes([symbol]))[symbol]
    inc = product.price_increment
    return on_tick(quote.bid * D("0.5"), inc), on_tick(quote.mid, inc), on_tick(quote.ask * D("1.5"), inc)


async def test_preview_then_market_order_and_its_fills(
    simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(simulator)
    request = OrderRequest(BTC, Side.BUY, OrderType.MARKET, D("0.001"), client_order_id=cid())
    preview = await broker.preview_order(request)
    assert preview.errors == () and preview.preview_id and preview.base_size == D("0.001")
    assert preview.best_bid is not None and preview.best_ask is not None and preview.commission_total > 0
    order = await broker.place_order(request)
    assert order.status is OrderStatus.FILLED and order.filled_quantity == D("0.001")
    assert order.client_order_id == request.client_order_id and order.average_fill_price is not None
    assert (await broker.get_order(order.order_id)).status is OrderStatus.FILLED
    fills = await broker.list_fills(order_ids=[order.order_id])
    assert sum(f.quantity for f in fills) == D("0.001") and {f.liquidity for f in fills} == {Liquidity.TAKER}
    assert all(f.order_id == order.order_id and f.trade_time.tzinfo is UTC for f in fills)
    recent = await broker.list_fills(symbols=[BTC], since=datetime.now(UTC) - timedelta(minutes=5))
    assert {f.trade_id for f in fills} <= {f.trade_id for f in recent}


async def test_client_order_id_is_idempotent(simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    broker = make_broker(simulator)
    low, _, _ = await far_prices(broker, BTC)
    request = OrderRequest(BTC, Side.BUY, OrderType.LIMIT, D("0.001"), limit_price=low, client_order_id=cid())
    first = await broker.place_order(request)
    again = await broker.place_order(request)
    assert again.order_id == first.order_id and again.status is OrderStatus.OPEN
    await broker.cancel_orders([first.order_id])


async def test_resting_limit_order_preview_edit_edit_and_cancel(
    simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(simulator)
    low, _, _ = await far_prices(broker, BTC)
    order = await broker.place_order(
        OrderRequest(BTC, Side.BUY, OrderType.LIMIT, D("0.002"), limit_price=low, client_order_id=cid())
    )
    assert (
        order.status is OrderStatus.OPEN
        and order.limit_price == low
        and order.time_in_force is TimeInForce.GTC
    )
    new_price = low - D("1.00")
    preview = await broker.preview_edit(order.order_id, D("0.003"), new_price)
    assert preview.errors == () and preview.new_size == D("0.003") and preview.new_price == new_price
    edited = await broker.edit_order(order.order_id, D("0.003"), new_price, preview_id=preview.preview_id)
    assert (
        edited.order_id == order.order_id
        and edited.quantity == D("0.003")
        and edited.limit_price == new_price
    )
    open_orders = await broker.list_orders(statuses=[OrderStatus.OPEN], symbols=[BTC])
    assert order.order_id in {o.order_id for o in open_orders}
    (result,) = await broker.cancel_orders([order.order_id])
    assert result.success and result.order_id == order.order_id
    assert (await broker.get_order(order.order_id)).status is OrderStatus.CANCELLED
    (again,) = await broker.cancel_orders([order.order_id])
    assert not again.success and again.failure_reason
    with pytest.raises(OrderRejectedError) as caught:
        await broker.edit_order(order.order_id, D("0.003"), new_price)
    assert caught.value.reason == "ONLY_OPEN_ORDERS_CAN_BE_EDITED"


async def test_every_order_type_is_accepted(simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    broker = make_broker(simulator)
    simulator.control.set_ticking(False)  # stops must stay on their side of the market while we place them
    try:
        low, mid, high = await far_prices(broker, BTC)
        quote = (await broker.get_quotes([BTC]))[BTC]
        size = D("0.001")
        end = datetime.now(UTC) + timedelta(hours=1)
        cases = [
            (
                OrderRequest(
                    BTC, Side.BUY, OrderType.LIMIT, size, low, time_in_force=TimeInForce.GTD, end_time=end
                ),
                OrderStatus.OPEN,
            ),
            (
                OrderRequest(
                    BTC, Side.BUY, OrderType.LIMIT, size, low, time_in_force=TimeInForce.GTC, post_only=True
                ),
                OrderStatus.OPEN,
            ),
            (
                OrderRequest(BTC, Side.BUY, OrderType.LIMIT, size, low, time_in_force=TimeInForce.IOC),
                OrderStatus.CANCELLED,
            ),
            (
                OrderRequest(BTC, Side.BUY, OrderType.LIMIT, size, high, time_in_force=TimeInForce.IOC),
                OrderStatus.FILLED,
            ),
            (
                OrderRequest(BTC, Side.SELL, OrderType.LIMIT, size, low, time_in_force=TimeInForce.FOK),
                OrderStatus.FILLED,
            ),
            (
                OrderRequest(
                    BTC,
                    Side.SELL,
                    OrderType.STOP_LIMIT,
                    size,
                    on_tick(mid * D("0.89"), D("0.01")),
                    stop_price=on_tick(mid * D("0.9"), D("0.01")),
                ),
                OrderStatus.OPEN,
            ),
            (
                OrderRequest(
                    BTC,
                    Side.BUY,
                    OrderType.STOP_LIMIT,
                    size,
                    on_tick(mid * D("1.11"), D("0.01")),
                    stop_price=on_tick(mid * D("1.1"), D("0.01")),
                    time_in_force=TimeInForce.GTD,
                    end_time=end,
                ),
                OrderStatus.OPEN,
            ),
        ]
        placed = []
        for request, status in cases:
            order = await broker.place_order(request)
            placed.append(order)
            assert (order.order_type, order.time_in_force, order.status) == (
                request.order_type,
                request.time_in_force,
                status,
            ), request
            assert order.stop_price == request.stop_price and order.limit_price == request.limit_price
        assert quote.bid > 0
    finally:
        simulator.control.set_ticking(True)
    results = await broker.cancel_orders([o.order_id for o in placed if o.status is OrderStatus.OPEN])
    assert len(results) == 4 and all(r.success for r in results)


async def test_perp_position_with_leverage_margin_and_reduce_only(
    fresh_simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(fresh_simulator)
    opened = await broker.place_order(
        OrderRequest(BIP, Side.BUY, OrderType.MARKET, D(3), leverage=D(2), margin_type=MarginType.CROSS)
    )
    assert opened.status is OrderStatus.FILLED and opened.filled_quantity == 3
    (position,) = await broker.list_positions()
    assert position.symbol == BIP and position.quantity == 3 and position.entry_price > 0
    summary = await broker.get_futures_balance_summary()
    assert summary is not None and summary.initial_margin > 0
    await broker.place_order(OrderRequest(BIP, Side.SELL, OrderType.MARKET, D(1), reduce_only=True))
    (position,) = await broker.list_positions()
    assert position.quantity == 2
    with pytest.raises(OrderRejectedError):  # would flip the position: not reduce-only
        await broker.place_order(OrderRequest(BIP, Side.SELL, OrderType.MARKET, D(5), reduce_only=True))
