"""The official SDK over TLS against the simulator: auth, every endpoint, error shapes."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bot_v2.brokerages.simulated import RunningSimulator
from tests.fixtures.simulator import make_sdk_client


def _cid() -> str:
    return f"test-{uuid.uuid4().hex}"


def _pem_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_valid_jwt_is_accepted_and_time_is_public(sdk_client: Any) -> None:
    now = sdk_client.get_unix_time()
    assert abs(int(now.epoch_seconds) - time.time()) < 5
    assert sdk_client.get_accounts().accounts


def test_unregistered_key_gets_401_until_registered(simulator: RunningSimulator) -> None:
    private, public = _pem_pair()
    name = f"organizations/test/apiKeys/{uuid.uuid4()}"
    client = make_sdk_client(simulator, api_key=name, api_secret=private)
    try:
        with pytest.raises(requests.HTTPError) as excinfo:
            client.get_accounts()
        assert excinfo.value.response.status_code == 401
        assert excinfo.value.response.text == "Unauthorized"
        simulator.control.register_key(name, public)
        assert client.get_accounts().accounts
    finally:
        client.session.close()


def test_every_read_endpoint_returns_parseable_sdk_objects(sdk_client: Any) -> None:
    now = int(time.time())
    accounts = sdk_client.get_accounts(limit=2)
    assert (len(accounts.accounts), accounts.has_next, accounts.size) == (2, True, 2)
    rest = sdk_client.get_accounts(limit=250, cursor=accounts.cursor)
    currencies = {a.currency for a in accounts.accounts + rest.accounts}
    assert {"USD", "BTC", "ETH", "SOL"} <= currencies
    usd = next(a for a in accounts.accounts + rest.accounts if a.currency == "USD")
    assert sdk_client.get_account(usd.uuid).account["currency"] == "USD"
    perms = sdk_client.get_api_key_permissions()
    assert (perms.can_trade, perms.portfolio_type) == (True, "DEFAULT")
    assert sdk_client.get_portfolios().portfolios[0]["uuid"] == perms.portfolio_uuid

    products = sdk_client.get_products()
    ids = {p.product_id for p in products.products}
    assert {"BTC-USD", "ETH-USD", "SOL-USD", "BIP-20DEC30-CDE", "ETP-20DEC30-CDE"} <= ids
    futures = sdk_client.get_products(product_type="FUTURE").products
    assert {p.product_id for p in futures} == {"BIP-20DEC30-CDE", "ETP-20DEC30-CDE"}
    btc = sdk_client.get_product("BTC-USD")
    assert (btc.base_increment, btc.quote_increment, btc.base_min_size) == ("0.00000001", "0.01", "0.00001")
    perp = sdk_client.get_product("BIP-20DEC30-CDE")
    details = perp.future_product_details
    assert (perp.product_type, perp.product_venue) == ("FUTURE", "FCM")
    assert (details["contract_expiry_type"], details["contract_size"]) == ("PERPETUAL", "0.01")
    assert details["perpetual_details"]["max_leverage"] == "10"
    assert sdk_client.get_public_product("ETH-USD").product_id == "ETH-USD"
    assert sdk_client.get_public_products().products

    books = sdk_client.get_best_bid_ask(product_ids=["BTC-USD", "ETH-USD"]).pricebooks
    assert [b.product_id for b in books] == ["BTC-USD", "ETH-USD"]
    assert float(books[0].bids[0].price) < float(books[0].asks[0].price)
    book = sdk_client.get_product_book("BTC-USD", limit=5)
    assert len(book.pricebook.bids) == 5
    assert float(book.spread_bps) > 0
    assert sdk_client.get_public_product_book("SOL-USD", limit=3).pricebook.asks

    candles = sdk_client.get_candles("BTC-USD", str(now - 3600), str(now), "FIVE_MINUTE").candles
    assert 10 <= len(candles) <= 13
    assert int(candles[0].start) > int(candles[-1].start)  # newest first
    assert sdk_client.get_public_candles("BTC-USD", str(now - 600), str(now), "ONE_MINUTE").candles
    assert len(sdk_client.get_candles("BTC-USD", str(now - 350 * 60), str(now), "ONE_MINUTE").candles) <= 350
    with pytest.raises(requests.HTTPError) as too_many:  # the real API refuses, it does not truncate
        sdk_client.get_candles("BTC-USD", str(now - 351 * 60), str(now), "ONE_MINUTE")
    assert too_many.value.response.status_code == 400
    assert too_many.value.response.json()["error"] == "INVALID_ARGUMENT"
    assert "number of candles requested should be less than 350" in too_many.value.response.json()["message"]
    trades = sdk_client.get_market_trades("BTC-USD", limit=5)
    assert trades.best_bid and trades.best_ask
    summary = sdk_client.get_transaction_summary()
    assert summary.fee_tier["pricing_tier"]
    assert isinstance(summary.total_volume, float)
    assert sdk_client.get_futures_balance_summary().balance_summary.futures_buying_power["currency"] == "USD"
    assert isinstance(sdk_client.list_futures_positions().positions, list)
    assert isinstance(sdk_client.list_orders(limit=1).orders, list)
    assert isinstance(sdk_client.get_fills(limit=1).fills, list)


def test_order_lifecycle_preview_create_edit_cancel(sdk_client: Any) -> None:
    bid = float(sdk_client.get_best_bid_ask(product_ids=["BTC-USD"]).pricebooks[0].bids[0].price)
    price = f"{bid * 0.8:.2f}"
    preview = sdk_client.preview_limit_order_gtc_buy("BTC-USD", base_size="0.001", limit_price=price)
    assert preview.errs == [] and preview.preview_id
    cid = _cid()
    created = sdk_client.limit_order_gtc_buy(
        cid, "BTC-USD", base_size="0.001", limit_price=price, preview_id=preview.preview_id
    )
    assert created.success
    order_id = created.success_response["order_id"]
    again = sdk_client.limit_order_gtc_buy(cid, "BTC-USD", base_size="0.5", limit_price=price)
    assert again.success_response["order_id"] == order_id  # duplicate client_order_id

    order = sdk_client.get_order(order_id).order
    assert (order.status, order.client_order_id, order.order_type) == ("OPEN", cid, "LIMIT")
    # the API writes decimals without trailing zeros ("51433.7" for a 51433.70 limit): compare the numbers
    assert Decimal(order.order_configuration.limit_limit_gtc.limit_price) == Decimal(price)
    listed = sdk_client.list_orders(order_ids=[order_id], order_status=["OPEN"]).orders
    assert [o.order_id for o in listed] == [order_id]

    bad_edit = sdk_client.edit_order(order_id, price=price)  # size omitted -> treated as 0
    assert not bad_edit.success
    assert bad_edit.errors[0].edit_failure_reason == "INVALID_EDITED_SIZE"
    new_price = f"{bid * 0.79:.2f}"
    edit_preview = sdk_client.preview_edit_order(order_id, size="0.002", price=new_price)
    assert edit_preview.errors == [] and edit_preview.base_size == "0.002"
    assert sdk_client.edit_order(order_id, size="0.002", price=new_price).success
    edited = sdk_client.get_order(order_id).order
    assert Decimal(edited.edit_history[-1].price) == Decimal(new_price)

    results = sdk_client.cancel_orders([order_id, order_id]).results
    assert (results[0].success, results[0].failure_reason) == (True, "UNKNOWN_CANCEL_FAILURE_REASON")
    assert (results[1].success, results[1].failure_reason) == (False, "UNKNOWN_CANCEL_ORDER")
    assert sdk_client.get_order(order_id).order.status == "CANCELLED"


def test_market_order_fills_and_fills_endpoint_filters(sdk_client: Any) -> None:
    created = sdk_client.market_order_buy(_cid(), "ETH-USD", quote_size="100.00")
    order_id = created.success_response["order_id"]
    order = sdk_client.get_order(order_id).order
    assert order.status == "FILLED" and order.size_in_quote
    fills = sdk_client.get_fills(order_ids=[order_id]).fills
    assert fills and all(f.order_id == order_id and f.liquidity_indicator == "TAKER" for f in fills)
    by_trade = sdk_client.get_fills(trade_ids=[fills[0].trade_id]).fills
    assert [f.trade_id for f in by_trade] == [fills[0].trade_id]


def test_business_failures_are_200_with_coinbase_shapes(sdk_client: Any) -> None:
    broke = sdk_client.market_order_buy(_cid(), "BTC-USD", base_size="1000")
    assert broke.success is False
    assert broke.error_response["preview_failure_reason"] == "PREVIEW_INSUFFICIENT_FUND"
    assert broke.error_response["error"] == "INSUFFICIENT_FUND"
    assert broke.order_configuration.market_market_ioc.base_size == "1000"
    spot_reduce = sdk_client.market_order_sell(_cid(), "BTC-USD", base_size="0.001", reduce_only=True)
    assert (
        spot_reduce.error_response["preview_failure_reason"]
        == "PREVIEW_REDUCE_ONLY_NOT_ALLOWED_ON_SPOT_PRODUCTS"
    )
    precision = sdk_client.preview_market_order_buy("BTC-USD", base_size="0.000000001")
    assert precision.errs == ["PREVIEW_INVALID_SIZE_PRECISION"]
    unknown = sdk_client.create_order(_cid(), "NOPE-USD", "BUY", {"market_market_ioc": {"base_size": "1"}})
    assert unknown.error_response["preview_failure_reason"] == "PREVIEW_INVALID_PRODUCT_ID"
    with pytest.raises(requests.HTTPError) as excinfo:
        sdk_client.get_order("no-such-order")
    assert excinfo.value.response.status_code == 404
    assert excinfo.value.response.json()["error"] == "NOT_FOUND"


def test_perp_positions_leverage_and_close_position(fresh_simulator: RunningSimulator) -> None:
    client = make_sdk_client(fresh_simulator)
    try:
        product = "ETP-20DEC30-CDE"
        bad = client.market_order_buy(_cid(), product, base_size="1", leverage="50")
        assert bad.error_response["preview_failure_reason"] == "PREVIEW_INVALID_LEVERAGE"
        assert client.market_order_buy(
            _cid(), product, base_size="5", leverage="3", margin_type="CROSS"
        ).success
        position = client.get_futures_position(product).position
        assert (position.side, position.number_of_contracts) == ("LONG", "5")
        assert float(position.avg_entry_price) > 0
        grow = client.market_order_buy(_cid(), product, base_size="1", reduce_only=True)
        assert grow.success is False
        summary = client.get_futures_balance_summary().balance_summary
        assert float(summary.initial_margin["value"]) > 0
        closed = client.close_position(_cid(), product)
        assert closed.success
        assert client.list_futures_positions().positions == []
        with pytest.raises(requests.HTTPError) as excinfo:
            client.get_futures_position(product)
        assert excinfo.value.response.status_code == 404
    finally:
        client.session.close()


def test_portfolio_breakdown_has_the_shape_the_sdk_parses(sdk_client: Any) -> None:
    uuid_ = sdk_client.get_portfolios().portfolios[0].uuid
    breakdown = sdk_client.get_portfolio_breakdown(uuid_).breakdown
    assert breakdown.portfolio.uuid == uuid_
    assert breakdown.portfolio_balances["total_balance"]["currency"] == "USD"
    usd = next(p for p in breakdown.spot_positions if p.asset == "USD")
    assert usd.is_cash and usd.total_balance_fiat >= 0
    with pytest.raises(requests.HTTPError) as missing:
        sdk_client.get_portfolio_breakdown(str(uuid.uuid4()))
    assert missing.value.response.status_code == 404
