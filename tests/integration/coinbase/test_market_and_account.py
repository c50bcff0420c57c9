"""Market data and account reads through the real SDK, over TLS, against the simulated exchange."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot_v2.brokerages.base import Broker
from bot_v2.brokerages.coinbase import CoinbaseBroker
from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.domain import ProductType, Symbol, is_multiple
from bot_v2.errors import UnknownSymbolError
from tests.integration.coinbase.conftest import MakeBroker

BTC = Symbol("BTC-USD")
BIP = Symbol("BIP-20DEC30-CDE")


async def test_products_spot_and_perps(simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    broker = make_broker(simulator)
    products = {p.symbol: p for p in await broker.list_products()}
    assert {"BTC-USD", "ETH-USD", "SOL-USD", "BIP-20DEC30-CDE", "ETP-20DEC30-CDE"} <= set(products)
    btc, bip = products[BTC], products[BIP]
    assert btc.product_type is ProductType.SPOT and btc.base_increment > 0 and btc.price_increment > 0
    assert btc.price is not None and btc.price > 0
    assert bip.is_derivative and bip.perpetual and bip.max_leverage > 1 and bip.contract_size < 1
    only = await broker.list_products([BTC, Symbol("ETH-USD")])
    assert sorted(p.symbol for p in only) == ["BTC-USD", "ETH-USD"]
    fresh = await broker.get_product(BTC)
    assert fresh.symbol == BTC and fresh.base_min_size == btc.base_min_size
    with pytest.raises(UnknownSymbolError):
        await broker.get_product(Symbol("NOPE-USD"))


async def test_spot_only_connection_hides_futures(
    simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(simulator, enable_derivatives=False)
    assert all(not p.is_derivative for p in await broker.list_products())
    assert await broker.list_positions() == []
    assert await broker.get_futures_balance_summary() is None


async def test_quotes_book_and_candles(simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    broker = make_broker(simulator)
    quotes = await broker.get_quotes([BTC, BIP])
    assert set(quotes) == {BTC, BIP}
    assert 0 < quotes[BTC].bid < quotes[BTC].ask and quotes[BTC].time.tzinfo is UTC
    book = await broker.get_product_book(BTC, limit=5)
    assert book.symbol == BTC and 0 < len(book.bids) <= 5 and 0 < len(book.asks) <= 5
    assert book.bids[0][0] < book.asks[0][0]
    assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
    product = await broker.get_product(BTC)
    assert all(is_multiple(p, product.price_increment) for p, _ in book.bids + book.asks)
    end = datetime.now(UTC)
    candles = await broker.get_candles(BTC, end - timedelta(minutes=30), end, "ONE_MINUTE")
    assert candles and [c.start for c in candles] == sorted(c.start for c in candles)  # oldest first
    assert all(c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close) for c in candles)
    # more than 350 buckets: fetched in windows, merged, still ordered and unique
    long = await broker.get_candles(BTC, end - timedelta(minutes=400), end, "ONE_MINUTE")
    assert len(long) >= len(candles) and len({c.start for c in long}) == len(long)


async def test_account_reads(simulator: RunningSimulator, make_broker: MakeBroker) -> None:
    broker = make_broker(simulator)
    balances = {b.currency: b for b in await broker.list_balances()}
    assert {"USD", "BTC"} <= set(balances) and balances["USD"].total > 0
    tier = await broker.get_fee_tier()
    assert tier.pricing_tier and 0 < tier.maker_fee_rate <= tier.taker_fee_rate < 1
    perms = await broker.get_key_permissions()
    assert perms.can_view and perms.can_trade and perms.portfolio_uuid
    portfolios = await broker.list_portfolios()
    assert perms.portfolio_uuid in {p.uuid for p in portfolios}
    now = await broker.server_time()
    assert now.tzinfo is UTC and abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    summary = await broker.get_futures_balance_summary()
    assert summary is not None and summary.total_usd_balance > 0
    assert isinstance(await broker.list_positions(), list)
    limits = broker.rate_limit
    assert limits is not None and limits.limit is not None and limits.remaining is not None


async def test_accounts_paging_follows_the_cursor(
    simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    one_page = make_broker(simulator)
    small_pages = make_broker(simulator)
    small_pages.accounts_page_size = 1
    expected = await one_page.list_balances()
    assert len(expected) >= 3
    assert await small_pages.list_balances() == expected


def test_every_broker_method_is_exercised() -> None:
    """A guard: the integration suite calls every public method of the Broker protocol."""
    methods = {m for m in vars(Broker) if not m.startswith("_")}
    text = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    assert {m for m in methods if f".{m}(" not in text} == set()
    assert all(hasattr(CoinbaseBroker, m) for m in methods)
