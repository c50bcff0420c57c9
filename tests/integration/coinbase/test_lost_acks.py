"""A create-order whose answer is lost: the order exists at the exchange, the caller saw a transient error.

Also ``list_orders(since=...)`` (the exchange's ``start_date``), which the bot's order discovery relies on.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from bot_v2.brokerages.coinbase import CoinbaseBroker
from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.domain import ClientOrderId, Order, OrderRequest, OrderType, Side, Symbol
from bot_v2.errors import RetryableError
from tests.helpers import eventually_async
from tests.integration.coinbase.conftest import MakeBroker

BTC = Symbol("BTC-USD")
D = Decimal


def _request(client_id: str) -> OrderRequest:
    return OrderRequest(BTC, Side.BUY, OrderType.MARKET, D("0.001"), client_order_id=ClientOrderId(client_id))


async def _with_client_id(broker: CoinbaseBroker, client_id: str) -> list[Order]:
    return [o for o in await broker.list_orders(symbols=[BTC]) if o.client_order_id == client_id]


async def test_lost_ack_creates_the_order_once_and_the_caller_sees_a_retryable_error(
    fresh_simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(fresh_simulator)
    client_id = f"la-{uuid.uuid4().hex}"
    fresh_simulator.control.lose_acks_next(1)
    with pytest.raises(RetryableError):
        await broker.place_order(_request(client_id))

    (order,) = await _with_client_id(broker, client_id)
    assert order.filled_quantity == D("0.001")
    # the switch is spent: the next create is answered; a repeat of the client id returns the same order
    again = await broker.place_order(_request(client_id))
    assert again.order_id == order.order_id
    assert len(await _with_client_id(broker, client_id)) == 1


async def test_lost_ack_order_can_land_after_the_error(
    fresh_simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(fresh_simulator)
    client_id = f"la-{uuid.uuid4().hex}"
    fresh_simulator.control.lose_acks_next(1, land_after_seconds=0.5)
    with pytest.raises(RetryableError):
        await broker.place_order(_request(client_id))

    async def landed() -> list[Order]:
        return await _with_client_id(broker, client_id)

    (order,) = await eventually_async(landed)
    assert order.client_order_id == client_id


async def test_list_orders_since_returns_only_orders_created_from_then(
    fresh_simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(fresh_simulator)
    first = await broker.place_order(_request(f"la-{uuid.uuid4().hex}"))
    second = await broker.place_order(_request(f"la-{uuid.uuid4().hex}"))
    assert first.created_at is not None and second.created_at is not None
    assert second.created_at > first.created_at

    since_second = await broker.list_orders(since=second.created_at)
    assert [o.order_id for o in since_second] == [second.order_id]
    since_first = await broker.list_orders(symbols=[BTC], since=first.created_at)
    assert [o.order_id for o in since_first] == [second.order_id, first.order_id]
