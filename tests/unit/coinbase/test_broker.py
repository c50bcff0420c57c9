"""CoinbaseBroker over the real SDK client, answered by a stub transport: what is sent, and what is not."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from bot_v2.brokerages.base import Broker
from bot_v2.brokerages.coinbase import CoinbaseBroker, CoinbaseConnection
from bot_v2.brokerages.coinbase.ratelimit import RateLimitTracker
from bot_v2.domain import (
    ClientOrderId,
    OrderId,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
)
from bot_v2.errors import (
    ExchangeProtocolError,
    ExchangeUnavailableError,
    InsufficientFundsError,
    InvalidOrderError,
    OrderRejectedError,
    PriceError,
    RateLimitedError,
    SizeError,
    UnknownSymbolError,
)
from tests.unit.coinbase.conftest import API_KEY, HOST, PEM, Call, make_response
from tests.unit.coinbase.test_convert import BIP, BTC_USD, ORDER

D = Decimal
BTC = Symbol("BTC-USD")
Build = Callable[..., tuple[CoinbaseBroker, Any]]


def router(routes: dict[str, Any]) -> Callable[[Call], Any]:
    """Answer ``"METHOD /path"`` from ``routes`` (a payload, a Response, an exception, or a callable)."""

    def handle(call: Call) -> Any:
        answer = routes.get(f"{call.method} {call.path}")
        if answer is None:
            return make_response(404, {"error": "NOT_FOUND", "message": f"no route {call.path}"})
        return answer(call) if callable(answer) else answer

    return handle


PRODUCTS = {"GET /products": {"products": [BTC_USD, BIP], "num_products": 2}}


def order_request(**kw: Any) -> OrderRequest:
    base: dict[str, Any] = {
        "symbol": BTC,
        "side": Side.BUY,
        "order_type": OrderType.MARKET,
        "quantity": D("0.01"),
    }
    base.update(kw)
    return OrderRequest(**base)


def derivatives() -> CoinbaseConnection:
    return CoinbaseConnection(base_url=HOST, api_key=API_KEY, api_secret=PEM, enable_derivatives=True)


def test_coinbase_broker_satisfies_the_broker_protocol() -> None:
    def accepts(broker: Broker) -> Broker:
        return broker

    assert accepts(CoinbaseBroker(derivatives())) is not None  # mypy checks the structural match


async def test_calls_run_off_the_event_loop_and_sign_every_request(stub_broker: Build) -> None:
    threads: list[str] = []

    def time_handler(call: Call) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"iso": "2024-01-01T00:00:00Z", "epochSeconds": "1704067200", "epochMillis": "1704067200000"}

    broker, transport = stub_broker(router({"GET /time": time_handler}))
    assert await broker.server_time() == datetime(2024, 1, 1, tzinfo=UTC)
    assert threads[0].startswith("coinbase-sdk") and threads[0] != threading.main_thread().name
    assert transport.calls[0].headers["Authorization"].startswith("Bearer ")
    assert transport.calls[0].body == {}  # the SDK sends {} on GET


async def test_order_validation_happens_before_anything_is_sent(stub_broker: Build) -> None:
    broker, transport = stub_broker(router(PRODUCTS))
    with pytest.raises(SizeError, match="below the minimum"):
        await broker.place_order(order_request(quantity=D("0.000000001")))
    with pytest.raises(PriceError, match="multiple"):
        await broker.preview_order(
            order_request(order_type=OrderType.LIMIT, limit_price=D("100.001"), time_in_force=TimeInForce.GTC)
        )
    with pytest.raises(SizeError, match="reduce-only"):
        await broker.place_order(order_request(reduce_only=True))
    with pytest.raises(UnknownSymbolError):
        await broker.place_order(order_request(symbol=Symbol("NOPE-USD")))
    with pytest.raises(UnknownSymbolError):  # refreshed once; the second miss does not call again
        await broker.place_order(order_request(symbol=Symbol("NOPE-USD")))
    with pytest.raises(InvalidOrderError, match="derivatives are disabled"):
        await broker.place_order(order_request(symbol=Symbol("BIP-20DEC30-CDE"), quantity=D(1)))
    assert transport.paths() == ["/products"]


async def test_derivative_reads_are_gated(stub_broker: Build) -> None:
    broker, transport = stub_broker(router({}))
    assert await broker.list_positions() == []
    assert await broker.get_futures_balance_summary() is None
    assert transport.calls == []


async def test_place_order_sends_the_mapped_body_and_reads_the_order_back(stub_broker: Build) -> None:
    created = {
        "success": True,
        "success_response": {
            "order_id": "o-1",
            "product_id": "BIP-20DEC30-CDE",
            "side": "SELL",
            "client_order_id": "cid-1",
        },
        "order_configuration": {"market_market_ioc": {"base_size": "2"}},
    }
    perp_order = {
        **ORDER,
        "order_id": "o-1",
        "product_id": "BIP-20DEC30-CDE",
        "side": "SELL",
        "status": "FILLED",
        "client_order_id": "cid-1",
        "filled_size": "2",
        "average_filled_price": "64000",
        "order_configuration": {"market_market_ioc": {"base_size": "2"}},
    }
    broker, transport = stub_broker(
        router({**PRODUCTS, "POST /orders": created, "GET /orders/historical/o-1": {"order": perp_order}}),
        derivatives(),
    )
    order = await broker.place_order(
        order_request(
            symbol=Symbol("BIP-20DEC30-CDE"),
            side=Side.SELL,
            quantity=D(2),
            reduce_only=True,
            leverage=D("3.0"),
            client_order_id=ClientOrderId("cid-1"),
        )
    )
    assert order.order_id == "o-1" and order.status is OrderStatus.FILLED and order.filled_quantity == 2
    body = next(c.body for c in transport.calls if c.path == "/orders")
    assert body == {
        "client_order_id": "cid-1",
        "product_id": "BIP-20DEC30-CDE",
        "side": "SELL",
        "order_configuration": {"market_market_ioc": {"base_size": "2"}},
        "leverage": "3",
        "reduce_only": True,
    }


async def test_a_rejection_raises_and_insufficient_funds_is_its_own_error(stub_broker: Build) -> None:
    rejected = {
        "success": False,
        "error_response": {
            "error": "INSUFFICIENT_FUND",
            "message": "Insufficient balance",
            "preview_failure_reason": "PREVIEW_INSUFFICIENT_FUND",
        },
        "order_configuration": {"market_market_ioc": {"base_size": "0.01"}},
    }
    broker, transport = stub_broker(router({**PRODUCTS, "POST /orders": rejected}))
    with pytest.raises(InsufficientFundsError) as caught:
        await broker.place_order(order_request())
    assert caught.value.reason == "INSUFFICIENT_FUND"
    generated = next(c.body for c in transport.calls if c.path == "/orders")["client_order_id"]
    assert len(generated) == 32  # a client order id is always sent, generated when the request has none


async def test_stop_limit_direction_uses_the_fresh_product_price(stub_broker: Build) -> None:
    created = {"success": True, "success_response": {"order_id": "o-2"}}
    routes = {
        **PRODUCTS,
        "GET /products/BTC-USD": {**BTC_USD, "price": "50000"},
        "POST /orders": created,
        "GET /orders/historical/o-2": make_response(503, {"error": "UNAVAILABLE"}),
    }
    broker, transport = stub_broker(router(routes))
    order = await broker.place_order(
        order_request(
            side=Side.SELL, order_type=OrderType.STOP_LIMIT, stop_price=D("49000"), limit_price=D("48900")
        )
    )
    body = next(c.body for c in transport.calls if c.path == "/orders")
    assert (
        body["order_configuration"]["stop_limit_stop_limit_gtc"]["stop_direction"]
        == "STOP_DIRECTION_STOP_DOWN"
    )
    # the order went in but could not be read back: PENDING from the request, not an error
    assert order.order_id == "o-2" and order.status is OrderStatus.PENDING and order.stop_price == D(49000)


async def test_edit_always_sends_size_and_price_and_raises_on_errors(stub_broker: Build) -> None:
    edit_answers = iter(
        [
            {"success": True, "errors": []},
            {"success": False, "errors": [{"edit_failure_reason": "ONLY_OPEN_ORDERS_CAN_BE_EDITED"}]},
        ]
    )
    routes = {
        **PRODUCTS,
        "GET /orders/historical/o-1": {"order": {**ORDER, "order_id": "o-1"}},
        "POST /orders/edit": lambda call: next(edit_answers),
    }
    broker, transport = stub_broker(router(routes))
    await broker.edit_order(OrderId("o-1"), D("0.002"), D("10001"), preview_id="pv-1")
    with pytest.raises(OrderRejectedError) as caught:
        await broker.edit_order(OrderId("o-1"), D("0.002"), D("10001"))
    assert caught.value.reason == "ONLY_OPEN_ORDERS_CAN_BE_EDITED"
    bodies = [c.body for c in transport.calls if c.path == "/orders/edit"]
    assert bodies[0] == {"order_id": "o-1", "size": "0.002", "price": "10001", "preview_id": "pv-1"}
    assert bodies[1] == {"order_id": "o-1", "size": "0.002", "price": "10001"}
    with pytest.raises(PriceError):  # off the price increment: never sent
        await broker.preview_edit(OrderId("o-1"), D("0.002"), D("10001.001"))
    assert not any(c.path == "/orders/edit_preview" for c in transport.calls)


async def test_cancel_orders_goes_in_batches(stub_broker: Build) -> None:
    def cancel(call: Call) -> dict[str, Any]:
        return {
            "results": [
                {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": i}
                for i in call.body["order_ids"]
            ]
        }

    broker, transport = stub_broker(router({"POST /orders/batch_cancel": cancel}))
    ids = [OrderId(f"o-{i}") for i in range(250)] + [OrderId("o-0")]
    results = await broker.cancel_orders(ids)
    assert [len(c.body["order_ids"]) for c in transport.calls] == [100, 100, 50]
    assert len(results) == 250 and all(r.success for r in results)
    assert await broker.cancel_orders([]) == []


async def test_paging_follows_cursors_and_stops_at_limit(stub_broker: Build) -> None:
    def orders(call: Call) -> dict[str, Any]:
        page = int(call.query.get("cursor", ["0"])[0])
        size = int(call.query["limit"][0])
        batch = [{**ORDER, "order_id": f"o-{page + i}"} for i in range(size) if page + i < 7]
        nxt = page + size
        return {"orders": batch, "has_next": nxt < 7, "cursor": str(nxt) if nxt < 7 else "", "sequence": 0}

    broker, transport = stub_broker(router({"GET /orders/historical/batch": orders}))
    broker.page_size = 3
    everything = await broker.list_orders(statuses=[OrderStatus.OPEN], symbols=[BTC])
    assert [o.order_id for o in everything] == [f"o-{i}" for i in range(7)]
    assert len(transport.calls) == 3 and transport.calls[0].query["order_status"] == ["OPEN"]
    assert [o.order_id for o in await broker.list_orders(limit=4)] == ["o-0", "o-1", "o-2", "o-3"]


async def test_a_repeated_cursor_is_a_protocol_error(stub_broker: Build) -> None:
    fill = {
        "trade_id": "t",
        "order_id": "o",
        "product_id": "BTC-USD",
        "side": "BUY",
        "price": "1",
        "size": "1",
        "trade_time": "2021-05-31T09:59:59Z",
    }
    broker, _ = stub_broker(router({"GET /orders/historical/fills": {"fills": [fill], "cursor": "same"}}))
    with pytest.raises(ExchangeProtocolError, match="repeated cursor"):
        await broker.list_fills(since=datetime.now(UTC) - timedelta(days=1))


async def test_rate_limit_headers_are_exposed_and_429_carries_retry_after(stub_broker: Build) -> None:
    headers = {"x-ratelimit-limit": "30", "x-ratelimit-remaining": "29", "x-ratelimit-reset": "1"}
    answers = iter(
        [
            make_response(200, {"can_view": True, "can_trade": True, "can_transfer": False}, headers),
            make_response(429, {"error": "RATE_LIMITED"}, {**headers, "x-ratelimit-remaining": "0"}),
        ]
    )
    broker, _ = stub_broker(router({"GET /key_permissions": lambda call: next(answers)}))
    assert broker.rate_limit is None
    assert (await broker.get_key_permissions()).can_trade
    assert broker.rate_limit is not None and (broker.rate_limit.limit, broker.rate_limit.remaining) == (
        30,
        29,
    )
    with pytest.raises(RateLimitedError) as caught:
        await broker.get_key_permissions()
    assert caught.value.retry_after_seconds == 1.0
    assert broker.rate_limit.remaining == 0


async def test_transport_failures_and_closed_broker_are_retryable(stub_broker: Build) -> None:
    broker, _ = stub_broker(router({"GET /portfolios": requests.ConnectTimeout("connect timed out")}))
    with pytest.raises(ExchangeUnavailableError, match="timed out"):
        await broker.list_portfolios()
    await broker.close()
    with pytest.raises(ExchangeUnavailableError, match="closed"):
        await broker.list_portfolios()


def test_low_rate_limit_warning_is_throttled() -> None:
    now = [100.0]
    tracker = RateLimitTracker(warn_interval_seconds=30, clock=lambda: now[0])
    tracker.observe("30", "2", "1")
    tracker.observe("30", "1", "1")
    now[0] += 31
    tracker.observe("30", "1", "1")
    tracker.observe("30", "20", "1")  # healthy again: nothing to warn about
    assert tracker.suppressed_warnings == 1
    assert tracker.info is not None and tracker.info.remaining == 20 and not tracker.info.low
