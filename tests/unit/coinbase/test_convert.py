"""Captured Advanced Trade payload shapes -> domain types, through the SDK's own response classes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from coinbase.rest.types.accounts_types import ListAccountsResponse
from coinbase.rest.types.data_api_types import GetAPIKeyPermissionsResponse
from coinbase.rest.types.fees_types import GetTransactionSummaryResponse
from coinbase.rest.types.futures_types import GetFuturesBalanceSummaryResponse, ListFuturesPositionsResponse
from coinbase.rest.types.orders_types import (
    CancelOrdersResponse,
    CreateOrderResponse,
    EditOrderPreviewResponse,
    EditOrderResponse,
    GetOrderResponse,
    ListFillsResponse,
    ListOrdersResponse,
    PreviewOrderResponse,
)
from coinbase.rest.types.portfolios_types import ListPortfoliosResponse
from coinbase.rest.types.product_types import (
    GetBestBidAskResponse,
    GetProductBookResponse,
    GetProductCandlesResponse,
    GetProductResponse,
    ListProductsResponse,
)
from coinbase.rest.types.public_types import GetServerTimeResponse

from bot_v2.brokerages.coinbase import convert
from bot_v2.brokerages.coinbase.errors_map import sdk_errors
from bot_v2.domain import (
    Liquidity,
    OrderId,
    OrderStatus,
    OrderType,
    ProductType,
    Side,
    Symbol,
    TimeInForce,
)
from bot_v2.errors import ExchangeProtocolError

D = Decimal


def sdk(cls: Any, payload: dict[str, Any]) -> Any:
    """The plain form of ``payload`` after it went through the SDK's response class."""
    return convert.plain(cls(copy.deepcopy(payload)))


BTC_USD = {
    "product_id": "BTC-USD",
    "price": "64000.12",
    "price_percentage_change_24h": "1.2",
    "volume_24h": "1000",
    "base_increment": "0.00000001",
    "quote_increment": "0.01",
    "quote_min_size": "1",
    "quote_max_size": "150000000",
    "base_min_size": "0.00000001",
    "base_max_size": "3400",
    "base_name": "Bitcoin",
    "quote_name": "US Dollar",
    "watched": False,
    "is_disabled": False,
    "new": False,
    "status": "online",
    "cancel_only": False,
    "limit_only": False,
    "post_only": False,
    "trading_disabled": False,
    "auction_mode": False,
    "product_type": "SPOT",
    "quote_currency_id": "USD",
    "base_currency_id": "BTC",
    "mid_market_price": "",
    "base_display_symbol": "BTC",
    "quote_display_symbol": "USD",
    "price_increment": "0.01",
    "product_venue": "CBE",
}
BIP = {
    **BTC_USD,
    "product_id": "BIP-20DEC30-CDE",
    "price": "64010",
    "base_increment": "1",
    "base_min_size": "1",
    "base_max_size": "10000",
    "quote_increment": "5",
    "price_increment": "5",
    "product_type": "FUTURE",
    "product_venue": "FCM",
    "base_currency_id": "BTC",
    "future_product_details": {
        "venue": "cde",
        "contract_code": "BIP",
        "contract_expiry": "2030-12-20T16:00:00Z",
        "contract_size": "0.01",
        "contract_root_unit": "BTC",
        "contract_expiry_type": "PERPETUAL",
        "perpetual_details": {"open_interest": "10", "funding_rate": "0.0001", "max_leverage": "10"},
    },
}
ORDER = {
    "order_id": "0000-000000-000000",
    "product_id": "BTC-USD",
    "user_id": "2222-000000-000000",
    "order_configuration": {
        "limit_limit_gtc": {"base_size": "0.001", "limit_price": "10000.00", "post_only": False}
    },
    "side": "BUY",
    "client_order_id": "11111-000000-000000",
    "status": "OPEN",
    "time_in_force": "GOOD_UNTIL_CANCELLED",
    "created_time": "2021-05-31T09:59:59.123456789Z",
    "completion_percentage": "0",
    "filled_size": "0",
    "average_filled_price": "0",
    "fee": "",
    "number_of_fills": "0",
    "filled_value": "0",
    "pending_cancel": False,
    "size_in_quote": False,
    "total_fees": "0",
    "size_inclusive_of_fees": False,
    "total_value_after_fees": "0",
    "trigger_status": "INVALID_ORDER_TYPE",
    "order_type": "LIMIT",
    "reject_reason": "REJECT_REASON_UNSPECIFIED",
    "settled": False,
    "product_type": "SPOT",
    "reject_message": "",
    "cancel_message": "",
    "order_placement_source": "RETAIL_ADVANCED",
    "outstanding_hold_amount": "10.06",
    "is_liquidation": False,
    "last_fill_time": None,
    "edit_history": [],
    "leverage": "",
    "margin_type": "UNKNOWN_MARGIN_TYPE",
    "retail_portfolio_id": "3333",
}


def test_products_spot_and_cfm_perpetual() -> None:
    plain = sdk(ListProductsResponse, {"products": [BTC_USD, BIP], "num_products": 2})
    spot, perp = (convert.to_product(p) for p in plain["products"])
    assert spot.symbol == "BTC-USD" and spot.product_type is ProductType.SPOT
    assert (spot.base_currency, spot.quote_currency) == ("BTC", "USD")
    assert spot.base_increment == D("0.00000001") and spot.price_increment == D("0.01")
    assert spot.base_min_size == D("0.00000001") and spot.base_max_size == D("3400")
    assert spot.quote_min_size == D("1") and spot.price == D("64000.12")
    assert not spot.perpetual and spot.max_leverage == 1 and not spot.trading_disabled
    assert perp.is_derivative and perp.perpetual
    assert perp.contract_size == D("0.01") and perp.max_leverage == D("10") and perp.base_increment == 1
    assert perp.funding_rate == D("0.0001") and spot.funding_rate is None


def test_single_product_is_unwrapped_and_price_increment_falls_back_to_quote_increment() -> None:
    payload = {k: v for k, v in BTC_USD.items() if k != "price_increment"} | {
        "price": "",
        "is_disabled": True,
    }
    product = convert.to_product(sdk(GetProductResponse, payload))
    assert product.price_increment == D("0.01") and product.price is None and product.trading_disabled


def test_product_missing_increment_is_a_protocol_error() -> None:
    payload = {k: v for k, v in BTC_USD.items() if k != "base_increment"}
    with pytest.raises(ExchangeProtocolError, match="base_increment"):
        convert.to_product(sdk(GetProductResponse, payload))


def test_accounts_page() -> None:
    payload = {
        "accounts": [
            {
                "uuid": "8bfc20d7-f7c6-4422-bf07-8243ca4169fe",
                "name": "BTC Wallet",
                "currency": "BTC",
                "available_balance": {"value": "1.23", "currency": "BTC"},
                "default": False,
                "active": True,
                "created_at": "2021-05-31T09:59:59Z",
                "updated_at": "2021-05-31T09:59:59Z",
                "deleted_at": None,
                "type": "ACCOUNT_TYPE_CRYPTO",
                "ready": True,
                "hold": {"value": "0.10", "currency": "BTC"},
                "retail_portfolio_id": "b87a2d3f",
                "platform": "ACCOUNT_PLATFORM_CONSUMER",
            }
        ],
        "has_next": True,
        "cursor": "789100",
        "size": 1,
    }
    plain = sdk(ListAccountsResponse, payload)
    (balance,) = (convert.to_balance(a) for a in plain["accounts"])
    assert (balance.currency, balance.available, balance.hold, balance.total) == (
        "BTC",
        D("1.23"),
        D("0.10"),
        D("1.33"),
    )
    assert plain["has_next"] is True and plain["cursor"] == "789100"


def test_best_bid_ask_and_book() -> None:
    level = {"product_id": "BTC-USD", "time": "2024-01-01T00:00:00.5Z"}
    bba = sdk(
        GetBestBidAskResponse,
        {
            "pricebooks": [
                {
                    **level,
                    "bids": [{"price": "63999.99", "size": "0.5"}],
                    "asks": [{"price": "64000.01", "size": "1"}],
                },
                {"product_id": "ETH-USD", "bids": [], "asks": [], "time": "2024-01-01T00:00:00Z"},
            ]
        },
    )
    quote = convert.to_quote(bba["pricebooks"][0])
    assert quote is not None and quote.bid == D("63999.99") and quote.ask == D("64000.01")
    assert quote.time == datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert convert.to_quote(bba["pricebooks"][1]) is None  # empty book: no quote
    book = sdk(
        GetProductBookResponse,
        {
            "pricebook": {
                **level,
                "bids": [{"price": "2", "size": "1"}, {"price": "1", "size": "3"}],
                "asks": [{"price": "3", "size": "2"}],
            },
            "last": "2.5",
            "mid_market": "2.5",
            "spread_bps": "4000",
            "spread_absolute": "1",
        },
    )
    pb = convert.to_product_book(book["pricebook"])
    assert pb.bids == ((D(2), D(1)), (D(1), D(3))) and pb.asks == ((D(3), D(2)),)


def test_candles_from_unix_second_strings() -> None:
    plain = sdk(
        GetProductCandlesResponse,
        {
            "candles": [
                {"start": "1700000060", "low": "1", "high": "3", "open": "2", "close": "2.5", "volume": "10"}
            ]
        },
    )
    candle = convert.to_candle(plain["candles"][0])
    assert candle.start == datetime.fromtimestamp(1700000060, UTC)
    assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == (
        D(2),
        D(3),
        D(1),
        D("2.5"),
        D(10),
    )


def test_order_list_and_single_order() -> None:
    plain = sdk(ListOrdersResponse, {"orders": [ORDER], "sequence": 0, "has_next": False, "cursor": ""})
    order = convert.to_order(plain["orders"][0])
    assert order.order_id == "0000-000000-000000" and order.client_order_id == "11111-000000-000000"
    assert (order.symbol, order.side, order.order_type, order.time_in_force) == (
        "BTC-USD",
        Side.BUY,
        OrderType.LIMIT,
        TimeInForce.GTC,
    )
    assert (
        order.status is OrderStatus.OPEN and order.quantity == D("0.001") and order.limit_price == D("10000")
    )
    assert order.average_fill_price is None and order.leverage is None and order.reject_reason is None
    assert order.created_at == datetime(2021, 5, 31, 9, 59, 59, 123456, tzinfo=UTC)
    filled = {
        **ORDER,
        "status": "FILLED",
        "filled_size": "0.001",
        "average_filled_price": "9999.5",
        "total_fees": "0.06",
        "order_configuration": {"market_market_ioc": {"base_size": "0.001", "reduce_only": True}},
        "time_in_force": "IMMEDIATE_OR_CANCEL",
        "order_type": "MARKET",
        "leverage": "2",
    }
    single = convert.to_order(sdk(GetOrderResponse, {"order": filled})["order"])
    assert single.order_type is OrderType.MARKET and single.time_in_force is TimeInForce.IOC
    assert single.status is OrderStatus.FILLED and single.filled_quantity == D("0.001")
    assert single.average_fill_price == D("9999.5") and single.total_fees == D("0.06")
    assert single.reduce_only and single.leverage == D(2) and single.remaining_quantity == 0


@pytest.mark.parametrize(
    "key,fields,order_type,tif",
    [
        ("sor_limit_ioc", {"base_size": "1", "limit_price": "2"}, OrderType.LIMIT, TimeInForce.IOC),
        ("limit_limit_fok", {"base_size": "1", "limit_price": "2"}, OrderType.LIMIT, TimeInForce.FOK),
        (
            "limit_limit_gtd",
            {"base_size": "1", "limit_price": "2", "end_time": "2030-01-01T00:00:00Z", "post_only": False},
            OrderType.LIMIT,
            TimeInForce.GTD,
        ),
        (
            "stop_limit_stop_limit_gtc",
            {
                "base_size": "1",
                "limit_price": "2",
                "stop_price": "3",
                "stop_direction": "STOP_DIRECTION_STOP_UP",
            },
            OrderType.STOP_LIMIT,
            TimeInForce.GTC,
        ),
        (
            "stop_limit_stop_limit_gtd",
            {
                "base_size": "1",
                "limit_price": "2",
                "stop_price": "3",
                "end_time": "2030-01-01T00:00:00Z",
                "stop_direction": "STOP_DIRECTION_STOP_DOWN",
            },
            OrderType.STOP_LIMIT,
            TimeInForce.GTD,
        ),
        ("twap_limit_gtd", {"base_size": "1", "limit_price": "2"}, OrderType.LIMIT, TimeInForce.GTC),
    ],
)
def test_every_order_configuration_reads_back(
    key: str, fields: dict[str, Any], order_type: OrderType, tif: TimeInForce
) -> None:
    payload = {**ORDER, "order_configuration": {key: fields}}
    if key == "twap_limit_gtd":
        payload["time_in_force"] = "UNKNOWN_TIME_IN_FORCE"
    order = convert.to_order(sdk(GetOrderResponse, {"order": payload})["order"])
    assert (order.order_type, order.time_in_force) == (order_type, tif)
    assert (order.quantity, order.limit_price) == (D(1), D(2))
    if order_type is OrderType.STOP_LIMIT:
        assert order.stop_price == 3


@pytest.mark.parametrize(
    "raw,status",
    [
        ("QUEUED", OrderStatus.PENDING),
        ("CANCEL_QUEUED", OrderStatus.OPEN),
        ("UNKNOWN_ORDER_STATUS", OrderStatus.UNKNOWN),
        ("EXPIRED", OrderStatus.EXPIRED),
        ("brand-new", OrderStatus.UNKNOWN),
    ],
)
def test_order_status_enum(raw: str, status: OrderStatus) -> None:
    assert convert.to_order({**ORDER, "status": raw}).status is status


def test_null_order_configuration_crashes_the_sdk_and_maps_to_protocol_error() -> None:
    with pytest.raises(ExchangeProtocolError, match="malformed payload"), sdk_errors("get order"):
        sdk(GetOrderResponse, {"order": {**ORDER, "order_configuration": None}})
    with pytest.raises(ExchangeProtocolError), sdk_errors("list orders"):
        sdk(ListOrdersResponse, {"orders": None})


def test_fills() -> None:
    fill = {
        "entry_id": "22222-2222222-22222222",
        "trade_id": "1111-11111-111111",
        "order_id": "0000-000000-000000",
        "trade_time": "2021-05-31T09:59:59Z",
        "trade_type": "FILL",
        "price": "10000.00",
        "size": "0.001",
        "commission": "1.25",
        "product_id": "BTC-USD",
        "sequence_timestamp": "2021-05-31T09:58:59Z",
        "liquidity_indicator": "UNKNOWN_LIQUIDITY_INDICATOR",
        "size_in_quote": False,
        "user_id": "3333-333333-3333333",
        "side": "BUY",
    }
    plain = sdk(
        ListFillsResponse,
        {
            "fills": [
                fill,
                {**fill, "liquidity_indicator": "MAKER", "size_in_quote": True, "size": "20", "side": "SELL"},
            ],
            "cursor": "789",
        },
    )
    taker, maker = (convert.to_fill(f) for f in plain["fills"])
    assert taker.trade_id == "1111-11111-111111" and taker.order_id == "0000-000000-000000"
    assert (taker.price, taker.quantity, taker.commission) == (D("10000"), D("0.001"), D("1.25"))
    assert taker.liquidity is Liquidity.UNKNOWN and taker.trade_time == datetime(
        2021, 5, 31, 9, 59, 59, tzinfo=UTC
    )
    assert maker.liquidity is Liquidity.MAKER and maker.quantity == D("0.002") and maker.side is Side.SELL
    assert plain["cursor"] == "789"


def test_preview_captured_sample() -> None:
    sample = {
        "order_total": "10.035",
        "commission_total": "0.035",
        "errs": [],
        "warning": ["UNKNOWN"],
        "quote_size": "10",
        "base_size": "0.1",
        "best_bid": "255.73",
        "best_ask": "255.74",
        "is_max": False,
        "order_margin_total": "0",
        "leverage": "0",
        "long_leverage": "0",
        "short_leverage": "0",
        "slippage": "0",
        "preview_id": "b7a7e6b2-4d52-4a0e-9c4e-1c1b3c0b7f11",
        "current_liquidation_buffer": "0",
        "projected_liquidation_buffer": "0",
        "max_leverage": "",
    }
    preview = convert.to_order_preview(sdk(PreviewOrderResponse, sample), Symbol("SOL-USD"), Side.BUY)
    assert preview.errors == () and preview.warnings == ()
    assert (preview.order_total, preview.commission_total, preview.base_size, preview.quote_size) == (
        D("10.035"),
        D("0.035"),
        D("0.1"),
        D("10"),
    )
    assert preview.best_bid == D("255.73") and preview.best_ask == D("255.74")
    assert (
        preview.preview_id == sample["preview_id"]
        and preview.leverage is None
        and preview.max_leverage is None
    )
    failing = convert.to_order_preview(
        sdk(
            PreviewOrderResponse, {**sample, "errs": ["PREVIEW_INSUFFICIENT_FUND"], "warning": ["BIG_ORDER"]}
        ),
        Symbol("SOL-USD"),
        Side.BUY,
    )
    assert failing.errors == ("PREVIEW_INSUFFICIENT_FUND",) and failing.warnings == ("BIG_ORDER",)


def test_create_order_failure_sample() -> None:
    sample = {
        "success": False,
        "error_response": {
            "error": "INSUFFICIENT_FUND",
            "message": "Insufficient balance in source account",
            "error_details": "",
            "preview_failure_reason": "PREVIEW_INSUFFICIENT_FUND",
        },
        "order_configuration": {"market_market_ioc": {"quote_size": "50"}},
    }
    reasons, message = convert.create_failure_reasons(sdk(CreateOrderResponse, sample))
    assert reasons[:2] == ("INSUFFICIENT_FUND", "PREVIEW_INSUFFICIENT_FUND")
    assert message == "Insufficient balance in source account"


def test_edit_errors_and_edit_preview() -> None:
    errors = [
        {
            "edit_failure_reason": "UNKNOWN_EDIT_ORDER_FAILURE_REASON",
            "preview_failure_reason": "PREVIEW_INVALID_SIZE_PRECISION",
        },
        {"edit_failure_reason": "CANNOT_EDIT_TO_BELOW_FILLED_SIZE"},
    ]
    plain = sdk(EditOrderResponse, {"success": False, "errors": errors})
    assert convert.edit_reasons(plain) == (
        "PREVIEW_INVALID_SIZE_PRECISION",
        "CANNOT_EDIT_TO_BELOW_FILLED_SIZE",
    )
    preview = convert.to_edit_preview(
        sdk(
            EditOrderPreviewResponse,
            {
                "errors": [],
                "slippage": "0",
                "order_total": "100.6",
                "commission_total": "0.6",
                "quote_size": "100",
                "base_size": "0.01",
                "best_bid": "9999",
                "best_ask": "10001",
                "average_filled_price": "0",
            },
        ),
        OrderId("o1"),
        D("0.01"),
        D("10000"),
    )
    assert preview.errors == () and preview.order_total == D("100.6") and preview.best_ask == D("10001")


def test_cancel_results() -> None:
    plain = sdk(
        CancelOrdersResponse,
        {
            "results": [
                {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": "a"},
                {"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": "b"},
            ]
        },
    )
    ok, failed = (convert.to_cancel_result(r) for r in plain["results"])
    assert ok.success and ok.failure_reason is None
    assert not failed.success and failed.failure_reason == "UNKNOWN_CANCEL_ORDER"


def test_cfm_positions_and_balance_summary() -> None:
    position = {
        "product_id": "BIP-20DEC30-CDE",
        "expiration_time": "2030-12-20T16:00:00Z",
        "side": "FUTURES_POSITION_SIDE_SHORT",
        "number_of_contracts": "3",
        "current_price": "64000",
        "avg_entry_price": "65000",
        "unrealized_pnl": "30",
        "daily_realized_pnl": "-1.5",
    }
    plain = sdk(
        ListFuturesPositionsResponse,
        {"positions": [position, {**position, "side": "FUTURES_POSITION_SIDE_LONG"}]},
    )
    short, long = (convert.to_position(p) for p in plain["positions"])
    assert short.quantity == -3 and short.side is Side.SELL and long.quantity == 3
    assert (short.entry_price, short.mark_price, short.unrealized_pnl, short.realized_pnl) == (
        D(65000),
        D(64000),
        D(30),
        D("-1.5"),
    )

    def usd(value: str) -> dict[str, str]:
        return {"value": value, "currency": "USD"}

    summary = sdk(
        GetFuturesBalanceSummaryResponse,
        {
            "balance_summary": {
                "futures_buying_power": usd("1000"),
                "total_usd_balance": usd("2000"),
                "cbi_usd_balance": usd("1500"),
                "cfm_usd_balance": usd("500"),
                "total_open_orders_hold_amount": usd("0"),
                "unrealized_pnl": usd("30"),
                "daily_realized_pnl": usd("-1.5"),
                "initial_margin": usd("190"),
                "available_margin": usd("310"),
                "liquidation_threshold": usd("95"),
                "liquidation_buffer_amount": usd("405"),
                "liquidation_buffer_percentage": "426",
                "intraday_margin_window_measure": {"margin_window_type": "FCM_MARGIN_WINDOW_TYPE_INTRADAY"},
            }
        },
    )
    fbs = convert.to_futures_balance_summary(summary["balance_summary"])
    assert fbs.buying_power == 1000 and fbs.total_usd_balance == 2000 and fbs.initial_margin == 190
    assert fbs.liquidation_buffer_percentage == 426 and fbs.extras["cfm_usd_balance"] == "500"


def test_fee_tier_permissions_portfolios_time() -> None:
    fees = sdk(
        GetTransactionSummaryResponse,
        {
            "total_volume": 1000.5,
            "total_fees": 25,
            "fee_tier": {
                "pricing_tier": "<$10k",
                "usd_from": "0",
                "usd_to": "10000",
                "taker_fee_rate": "0.006",
                "maker_fee_rate": "0.004",
            },
            "has_promo_fee": False,
        },
    )
    tier = convert.to_fee_tier(fees)
    assert (tier.pricing_tier, tier.maker_fee_rate, tier.taker_fee_rate) == ("<$10k", D("0.004"), D("0.006"))
    assert tier.total_volume == D("1000.5") and tier.total_fees == 25
    perms = convert.to_key_permissions(
        sdk(
            GetAPIKeyPermissionsResponse,
            {
                "can_view": True,
                "can_trade": True,
                "can_transfer": False,
                "portfolio_uuid": "p1",
                "portfolio_type": "DEFAULT",
            },
        )
    )
    assert perms.can_trade and not perms.can_transfer and perms.portfolio_uuid == "p1"
    plain = sdk(
        ListPortfoliosResponse,
        {"portfolios": [{"name": "Default", "uuid": "p1", "type": "DEFAULT", "deleted": False}]},
    )
    assert [convert.to_portfolio(p).portfolio_type for p in plain["portfolios"]] == ["DEFAULT"]
    stamp = sdk(
        GetServerTimeResponse,
        {"iso": "2023-05-10T12:00:00.123Z", "epochSeconds": "1683720000", "epochMillis": "1683720000123"},
    )
    assert convert.to_server_time(stamp) == datetime(2023, 5, 10, 12, 0, 0, 123000, tzinfo=UTC)
    assert convert.to_server_time({"epoch_seconds": "1683720000"}) == datetime(2023, 5, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["2021-05-31T09:59:59Z", "2021-05-31T09:59:59.000000001Z", "2021-05-31T11:59:59+02:00", "1622455199"],
)
def test_parse_time_is_aware_utc(text: str) -> None:
    parsed = convert.parse_time(text)
    assert parsed.tzinfo is UTC and parsed.replace(microsecond=0) == datetime(
        2021, 5, 31, 9, 59, 59, tzinfo=UTC
    )


@pytest.mark.parametrize("bad", ["", "yesterday", None, True])
def test_parse_time_rejects_garbage(bad: Any) -> None:
    with pytest.raises(ExchangeProtocolError):
        convert.parse_time(bad)


@pytest.mark.parametrize("price", ["abc", "NaN", "Infinity", None, True])
def test_bad_numbers_are_protocol_errors(price: Any) -> None:
    fill = {
        "trade_id": "t",
        "order_id": "o",
        "product_id": "BTC-USD",
        "side": "BUY",
        "price": price,
        "size": "1",
        "trade_time": "2021-05-31T09:59:59Z",
    }
    with pytest.raises(ExchangeProtocolError, match="price"):
        convert.to_fill(fill)
