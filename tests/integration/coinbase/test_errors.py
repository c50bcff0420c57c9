"""Error mapping end to end: bad input stops before the wire; exchange and transport failures map."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bot_v2.brokerages.coinbase import CoinbaseBroker
from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.domain import OrderId, OrderRequest, OrderType, Side, Symbol
from bot_v2.errors import (
    AuthenticationError,
    ExchangeUnavailableError,
    InsufficientFundsError,
    NotFoundError,
    PriceError,
    RateLimitedError,
    SizeError,
    UnknownSymbolError,
)
from tests.integration.coinbase.conftest import CountingAdapter, MakeBroker

BTC = Symbol("BTC-USD")
D = Decimal
Counting = Callable[..., tuple[CoinbaseBroker, CountingAdapter]]


async def test_bad_orders_never_reach_the_exchange(
    simulator: RunningSimulator, counting_broker: Counting
) -> None:
    broker, adapter = counting_broker(simulator)
    bad = [
        (OrderRequest(Symbol("NOPE-USD"), Side.BUY, OrderType.MARKET, D("1")), UnknownSymbolError),
        (OrderRequest(BTC, Side.BUY, OrderType.MARKET, D("0.000001")), SizeError),  # below the minimum
        (
            OrderRequest(BTC, Side.BUY, OrderType.MARKET, D("0.000100001")),
            SizeError,
        ),  # off the base increment
        (OrderRequest(BTC, Side.BUY, OrderType.LIMIT, D("0.001"), limit_price=D("100.001")), PriceError),
        (OrderRequest(BTC, Side.BUY, OrderType.LIMIT, D("0.001")), PriceError),  # no price
    ]
    for request, error in bad:
        with pytest.raises(error):
            await broker.place_order(request)
        with pytest.raises(error):
            await broker.preview_order(request)
    assert not any("/orders" in sent for sent in adapter.sent)
    # The first order loaded the product list (spot, then futures); later misses did not refetch it.
    assert adapter.sent == ["GET /api/v3/brokerage/products"] * 2


async def test_insufficient_funds(simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    broker = make_broker(simulator)
    with pytest.raises(InsufficientFundsError) as caught:
        await broker.place_order(OrderRequest(BTC, Side.BUY, OrderType.MARKET, D("1000")))
    assert "INSUFFICIENT_FUND" in caught.value.reason
    preview = await broker.preview_order(OrderRequest(BTC, Side.BUY, OrderType.MARKET, D("1000")))
    assert any("INSUFFICIENT_FUND" in e for e in preview.errors)


async def test_unknown_order_is_not_found(simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    broker = make_broker(simulator)
    with pytest.raises(NotFoundError):
        await broker.get_order(OrderId(str(uuid.uuid4())))


async def test_bad_credentials_are_an_authentication_error(
    simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    broker = make_broker(simulator, api_secret=stranger.decode())
    with pytest.raises(AuthenticationError) as caught:
        await broker.list_balances()
    text = str(caught.value)
    assert "PRIVATE KEY" not in text and "eyJ" not in text and "\n" not in text
    assert "Bearer" not in repr(caught.value)


async def test_server_faults_map_and_recover(
    fresh_simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(fresh_simulator)
    fresh_simulator.control.fail_next(1, status=503)
    with pytest.raises(ExchangeUnavailableError, match="503"):
        await broker.list_portfolios()
    fresh_simulator.control.fail_next(1, status=500)
    with pytest.raises(ExchangeUnavailableError, match="500"):
        await broker.get_fee_tier()
    fresh_simulator.control.drop_next(1)
    with pytest.raises(ExchangeUnavailableError):
        await broker.server_time()
    assert (await broker.list_portfolios())[0].uuid


async def test_rate_limit_is_a_retryable_error(
    fresh_simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(fresh_simulator)
    fresh_simulator.control.set_rate_limit(2)
    with pytest.raises(RateLimitedError) as caught:
        for _ in range(20):
            await broker.get_key_permissions()
    assert caught.value.retry_after_seconds is not None and caught.value.retry_after_seconds >= 0
    assert broker.rate_limit is not None and broker.rate_limit.remaining == 0


async def test_a_slow_exchange_times_out(fresh_simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    broker = make_broker(fresh_simulator, timeout_seconds=0.3)
    fresh_simulator.control.set_latency(1.0)
    started = time.monotonic()
    with pytest.raises(ExchangeUnavailableError, match="timed out"):
        await broker.list_portfolios()
    assert time.monotonic() - started < 1.5


async def test_unreachable_port_fails_fast(simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = make_broker(simulator, base_url=f"127.0.0.1:{port}", timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(ExchangeUnavailableError):
        await broker.server_time()
    assert time.monotonic() - started < 2


async def test_untrusted_certificate_is_unavailable(
    simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(simulator, ca_file=None)
    with pytest.raises(ExchangeUnavailableError, match="TLS"):
        await broker.server_time()


async def test_a_closed_broker_refuses_calls(simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    broker = make_broker(simulator)
    assert await broker.server_time()
    await broker.close()
    await broker.close()  # idempotent
    with pytest.raises(ExchangeUnavailableError, match="closed"):
        await broker.server_time()
