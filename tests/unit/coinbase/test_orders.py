"""OrderRequest -> order_configuration for every order type the bot sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bot_v2.brokerages.coinbase.orders import (
    STOP_DOWN,
    STOP_UP,
    create_order_kwargs,
    decimal_str,
    order_configuration,
    preview_order_kwargs,
    rfc3339,
    stop_direction,
)
from bot_v2.domain import ClientOrderId, MarginType, OrderRequest, OrderType, Side, Symbol, TimeInForce
from bot_v2.errors import PriceError, SizeError

BTC = Symbol("BTC-USD")
END = datetime(2030, 5, 31, 9, 59, 59, 123456, tzinfo=UTC)
D = Decimal


def req(order_type: OrderType, tif: TimeInForce = TimeInForce.GTC, **kw: object) -> OrderRequest:
    base: dict[str, object] = {
        "symbol": BTC,
        "side": Side.BUY,
        "order_type": order_type,
        "quantity": D("0.0100"),
    }
    base.update(kw)
    return OrderRequest(time_in_force=tif, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_,expected",
    [
        (req(OrderType.MARKET, TimeInForce.IOC), {"market_market_ioc": {"base_size": "0.01"}}),
        (req(OrderType.MARKET), {"market_market_ioc": {"base_size": "0.01"}}),
        (
            req(OrderType.LIMIT, limit_price=D("50000.00")),
            {"limit_limit_gtc": {"base_size": "0.01", "limit_price": "50000", "post_only": False}},
        ),
        (
            req(OrderType.LIMIT, limit_price=D("50000.5"), post_only=True),
            {"limit_limit_gtc": {"base_size": "0.01", "limit_price": "50000.5", "post_only": True}},
        ),
        (
            req(OrderType.LIMIT, TimeInForce.GTD, limit_price=D("50000"), end_time=END),
            {
                "limit_limit_gtd": {
                    "base_size": "0.01",
                    "limit_price": "50000",
                    "end_time": "2030-05-31T09:59:59.123Z",
                    "post_only": False,
                }
            },
        ),
        (
            req(OrderType.LIMIT, TimeInForce.IOC, limit_price=D("50000")),
            {"sor_limit_ioc": {"base_size": "0.01", "limit_price": "50000"}},
        ),
        (
            req(OrderType.LIMIT, TimeInForce.FOK, limit_price=D("50000")),
            {"limit_limit_fok": {"base_size": "0.01", "limit_price": "50000"}},
        ),
        (
            req(OrderType.STOP_LIMIT, limit_price=D("51000"), stop_price=D("50500")),
            {
                "stop_limit_stop_limit_gtc": {
                    "base_size": "0.01",
                    "limit_price": "51000",
                    "stop_price": "50500",
                    "stop_direction": STOP_UP,
                }
            },
        ),
        (
            req(
                OrderType.STOP_LIMIT,
                TimeInForce.GTD,
                limit_price=D("51000"),
                stop_price=D("50500"),
                end_time=END,
            ),
            {
                "stop_limit_stop_limit_gtd": {
                    "base_size": "0.01",
                    "limit_price": "51000",
                    "stop_price": "50500",
                    "stop_direction": STOP_UP,
                    "end_time": "2030-05-31T09:59:59.123Z",
                }
            },
        ),
    ],
    ids=[
        "market-ioc",
        "market-gtc",
        "limit-gtc",
        "limit-post-only",
        "limit-gtd",
        "limit-ioc",
        "limit-fok",
        "stop-limit-gtc",
        "stop-limit-gtd",
    ],
)
def test_order_configuration_per_type(request_: OrderRequest, expected: dict[str, object]) -> None:
    assert order_configuration(request_, reference_price=D("50000")) == expected


@pytest.mark.parametrize(
    "side,stop,reference,expected",
    [
        (Side.BUY, "50500", "50000", STOP_UP),  # buy stop above the market: breakout / short stop-loss
        (Side.SELL, "49500", "50000", STOP_DOWN),  # sell stop below the market: long stop-loss
        (Side.BUY, "49500", "50000", STOP_DOWN),
        (Side.SELL, "50500", "50000", STOP_UP),
        (Side.BUY, "50000", "50000", STOP_UP),
        (Side.SELL, "50000", None, STOP_DOWN),
    ],
)
def test_stop_direction_follows_the_market(
    side: Side, stop: str, reference: str | None, expected: str
) -> None:
    assert stop_direction(side, D(stop), D(reference) if reference else None) == expected


def test_sell_stop_limit_below_market_is_stop_down() -> None:
    sell = req(OrderType.STOP_LIMIT, side=Side.SELL, limit_price=D("48900"), stop_price=D("49000"))
    config = order_configuration(sell, reference_price=D("50000"))
    assert config["stop_limit_stop_limit_gtc"]["stop_direction"] == STOP_DOWN


def test_create_kwargs_carry_client_id_leverage_margin_and_reduce_only() -> None:
    perp = OrderRequest(
        symbol=Symbol("BIP-20DEC30-CDE"),
        side=Side.SELL,
        order_type=OrderType.MARKET,
        quantity=D("3"),
        client_order_id=ClientOrderId("abc"),
        reduce_only=True,
        leverage=D("2.50"),
        margin_type=MarginType.ISOLATED,
    )
    kwargs = create_order_kwargs(perp, "abc")
    assert kwargs == {
        "client_order_id": "abc",
        "product_id": "BIP-20DEC30-CDE",
        "side": "SELL",
        "order_configuration": {"market_market_ioc": {"base_size": "3"}},
        "leverage": "2.5",
        "margin_type": "ISOLATED",
        "reduce_only": True,
    }
    assert "client_order_id" not in preview_order_kwargs(perp)


def test_spot_kwargs_leave_derivative_fields_out() -> None:
    kwargs = preview_order_kwargs(req(OrderType.MARKET))
    assert set(kwargs) == {"product_id", "side", "order_configuration"}


@pytest.mark.parametrize(
    "bad,error",
    [
        (req(OrderType.LIMIT), PriceError),  # no limit price
        (req(OrderType.STOP_LIMIT, limit_price=D("1")), PriceError),  # no stop price
        (req(OrderType.STOP_LIMIT, TimeInForce.IOC, limit_price=D("1"), stop_price=D("1")), PriceError),
        (req(OrderType.LIMIT, TimeInForce.GTD, limit_price=D("1")), PriceError),  # no end time
        (req(OrderType.LIMIT, TimeInForce.IOC, limit_price=D("1"), post_only=True), PriceError),
        (req(OrderType.MARKET, quantity=D("0")), SizeError),
    ],
)
def test_malformed_requests_never_become_a_configuration(bad: OrderRequest, error: type[Exception]) -> None:
    with pytest.raises(error):
        order_configuration(bad)


@pytest.mark.parametrize(
    "value,text",
    [
        ("100", "100"),
        ("1E+2", "100"),
        ("0.00010000", "0.0001"),
        ("1e-8", "0.00000001"),
        ("0", "0"),
        ("2.50", "2.5"),
    ],
)
def test_decimal_str_is_plain(value: str, text: str) -> None:
    assert decimal_str(D(value)) == text


def test_rfc3339_is_utc_with_z_and_rejects_naive() -> None:
    plus_two = datetime(2030, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(plus_two) == "2030-01-01T10:00:00.000Z"
    with pytest.raises(ValueError, match="naive"):
        rfc3339(datetime(2030, 1, 1))
