"""Matching-engine behaviour without any network: fills, holds, fees, stops, expiry, positions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from bot_v2.brokerages.simulated.engine import REDUCE_ONLY_REJECTION
from bot_v2.brokerages.simulated.models import ManualClock

from .builders import BTC, PERP, intent, limit_gtc, make_engine, market, placed

D = Decimal
TAKER = D("0.006")
MAKER = D("0.004")


def test_market_buy_walks_the_book_as_taker() -> None:
    engine = make_engine()
    _, asks = engine.market.book(BTC)
    order = placed(market(engine, BTC, "BUY", "1"))  # first level holds 0.5, second 0.75
    fills = [f for f in engine.fills if f.order_id == order.order_id]
    assert order.status == "FILLED"
    assert [(f.price, f.size) for f in fills] == [(asks[0][0], D("0.5")), (asks[1][0], D("0.5"))]
    assert all(f.liquidity == "TAKER" for f in fills)
    cost = sum(f.price * f.size for f in fills)
    assert order.total_fees == cost * TAKER
    assert engine.ledger.balance("USD").available == D(100_000) - cost - cost * TAKER
    assert engine.ledger.balance("BTC").available == D(2)


def test_market_buy_by_quote_size_spends_at_most_the_quote_including_fees() -> None:
    engine = make_engine()
    order = placed(engine.place(intent(BTC, "BUY", "market_market_ioc", quote_size="1000.00")))
    spent = D(100_000) - engine.ledger.balance("USD").available
    assert order.status == "FILLED"
    assert order.filled_size > 0
    assert D("999") < spent <= D("1000")


def test_limit_rests_with_a_hold_then_fills_as_maker_when_price_crosses() -> None:
    engine = make_engine()
    order = placed(limit_gtc(engine, BTC, "BUY", "0.1", "64000.00"))
    assert order.status == "OPEN"
    assert engine.ledger.balance("USD").hold == D("0.1") * D("64000") * (1 + TAKER)
    engine.set_price(BTC, D("63900"))
    assert order.status == "FILLED"
    (fill,) = [f for f in engine.fills if f.order_id == order.order_id]
    assert (fill.price, fill.liquidity, fill.commission) == (D("64000.00"), "MAKER", D("6400.000") * MAKER)
    assert engine.ledger.balance("USD").hold == 0
    assert engine.ledger.balance("USD").available == D(100_000) - D("6400") - D("6400") * MAKER


def test_marketable_limit_takes_up_to_its_price_and_rests_the_remainder() -> None:
    engine = make_engine(starting_balances={"USD": D(1_000_000)})
    _, asks = engine.market.book(BTC)
    order = placed(
        limit_gtc(engine, BTC, "BUY", "2", asks[1][0])
    )  # two levels (0.5 + 0.75) at or under limit
    assert order.status == "OPEN"
    assert order.filled_size == D("1.25")
    assert all(f.liquidity == "TAKER" and f.price <= asks[1][0] for f in engine.fills)
    assert order.hold_amount == D("0.75") * asks[1][0] * (1 + TAKER)


def test_ioc_cancels_the_unfilled_rest_and_fok_fills_all_or_nothing() -> None:
    engine = make_engine()
    _, asks = engine.market.book(BTC)
    ioc = placed(
        engine.place(intent(BTC, "BUY", "sor_limit_ioc", base_size="1", limit_price=str(asks[0][0])))
    )
    assert (ioc.status, ioc.filled_size) == ("CANCELLED", D("0.5"))
    fok = placed(
        engine.place(intent(BTC, "BUY", "limit_limit_fok", base_size="1", limit_price=str(asks[0][0])))
    )
    assert (fok.status, fok.filled_size, fok.number_of_fills) == ("CANCELLED", 0, 0)
    ok = placed(
        engine.place(intent(BTC, "BUY", "limit_limit_fok", base_size="0.2", limit_price=str(asks[0][0])))
    )
    assert (ok.status, ok.filled_size) == ("FILLED", D("0.2"))
    assert engine.ledger.balance("USD").hold == 0


def test_stop_limit_sell_holds_base_and_triggers_when_price_falls_through() -> None:
    engine = make_engine()
    order = placed(
        engine.place(
            intent(
                BTC,
                "SELL",
                "stop_limit_stop_limit_gtc",
                base_size="0.5",
                stop_price="60000.00",
                limit_price="59000.00",
                stop_direction="STOP_DIRECTION_STOP_DOWN",
            )
        )
    )
    assert (order.status, order.trigger_status) == ("OPEN", "STOP_PENDING")
    assert engine.ledger.balance("BTC").hold == D("0.5")
    engine.set_price(BTC, D("61000"))
    assert order.trigger_status == "STOP_PENDING"
    engine.set_price(BTC, D("59990"))
    assert (order.status, order.trigger_status) == ("FILLED", "STOP_TRIGGERED")
    assert engine.ledger.balance("BTC").total == D("0.5")


def test_gtd_order_expires_at_end_time_and_releases_its_hold() -> None:
    clock = ManualClock()
    engine = make_engine(clock)
    end = clock.now() + timedelta(minutes=5)
    order = placed(
        engine.place(
            intent(BTC, "BUY", "limit_limit_gtd", base_size="0.1", limit_price="50000.00", end_time=end)
        )
    )
    clock.advance(299)
    engine.process()
    assert order.status == "OPEN"
    clock.advance(1)
    engine.process()
    assert order.status == "EXPIRED"
    assert engine.ledger.balance("USD").hold == 0


def test_cancel_releases_holds_and_a_second_cancel_fails() -> None:
    engine = make_engine()
    order = placed(limit_gtc(engine, BTC, "SELL", "0.4", "70000.00"))
    assert engine.ledger.balance("BTC").hold == D("0.4")
    (first,) = engine.cancel([order.order_id])
    (second, unknown) = engine.cancel([order.order_id, "nope"])
    assert (first.success, first.failure_reason) == (True, "UNKNOWN_CANCEL_FAILURE_REASON")
    assert (second.success, second.failure_reason) == (False, "UNKNOWN_CANCEL_ORDER")
    assert unknown.failure_reason == "UNKNOWN_CANCEL_ORDER"
    assert order.status == "CANCELLED"
    assert engine.ledger.balance("BTC").hold == 0
    engine.set_price(BTC, D("80000"))
    assert order.filled_size == 0


def test_duplicate_client_order_id_returns_the_existing_order() -> None:
    engine = make_engine()
    first = limit_gtc(engine, BTC, "BUY", "0.1", "60000.00", client_order_id="dup-1")
    again = limit_gtc(engine, BTC, "BUY", "0.2", "61000.00", client_order_id="dup-1")
    assert again.duplicate
    assert again.order is first.order
    assert len(engine.orders) == 1


def test_validation_failures_use_coinbase_preview_reasons() -> None:
    engine = make_engine()
    cases = {
        "PREVIEW_INVALID_PRODUCT_ID": intent("DOGE-USD", "BUY", "market_market_ioc", base_size="1"),
        "PREVIEW_INVALID_SIZE_PRECISION": intent(BTC, "BUY", "market_market_ioc", base_size="0.000000001"),
        "PREVIEW_INVALID_PRICE_PRECISION": intent(
            BTC, "BUY", "limit_limit_gtc", base_size="0.1", limit_price="100.001"
        ),
        "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL": intent(BTC, "BUY", "market_market_ioc", base_size="0.000001"),
        "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE": intent(BTC, "SELL", "market_market_ioc", base_size="5000"),
        "PREVIEW_INSUFFICIENT_FUND": intent(BTC, "SELL", "market_market_ioc", base_size="2"),
        "PREVIEW_REDUCE_ONLY_NOT_ALLOWED_ON_SPOT_PRODUCTS": intent(
            BTC, "SELL", "market_market_ioc", base_size="0.1", reduce_only=True
        ),
        "PREVIEW_INVALID_LEVERAGE": intent(PERP, "BUY", "market_market_ioc", base_size="1", leverage="11"),
        "PREVIEW_INSUFFICIENT_FUNDS_FOR_FUTURES": intent(
            PERP, "BUY", "market_market_ioc", base_size="5000", leverage="1"
        ),
        "PREVIEW_STOP_PRICE_ABOVE_LAST_TRADE_PRICE": intent(
            BTC,
            "SELL",
            "stop_limit_stop_limit_gtc",
            base_size="0.1",
            stop_price="70000.00",
            limit_price="69000.00",
            stop_direction="STOP_DIRECTION_STOP_DOWN",
        ),
        "PREVIEW_STOP_PRICE_BELOW_LIMIT_PRICE": intent(
            BTC,
            "SELL",
            "stop_limit_stop_limit_gtc",
            base_size="0.1",
            stop_price="60000.00",
            limit_price="61000.00",
            stop_direction="STOP_DIRECTION_STOP_DOWN",
        ),
        "PREVIEW_END_TIME_IS_IN_THE_PAST": intent(
            BTC,
            "BUY",
            "limit_limit_gtd",
            base_size="0.1",
            limit_price="60000.00",
            end_time=engine.clock.now() - timedelta(seconds=1),
        ),
        "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY": intent(
            BTC, "BUY", "limit_limit_gtc", base_size="0.1", limit_price="70000.00", post_only=True
        ),
    }
    for reason, order_intent in cases.items():
        result = engine.place(order_intent)
        assert (result.ok, result.reason) == (False, reason)
        assert engine.preview(order_intent).errs == [reason]
    assert engine.orders == {}


def test_perp_position_tracks_entry_vwap_unrealized_pnl_and_reduce_only() -> None:
    engine = make_engine()
    engine.set_price(PERP, D("60000"))
    first = placed(market(engine, PERP, "BUY", "10", leverage="5"))
    engine.set_price(PERP, D("62000"))
    second = placed(market(engine, PERP, "BUY", "30", leverage="5"))
    pos = engine.ledger.positions[PERP]
    expected_vwap = (first.filled_value + second.filled_value) / 40
    assert (pos.net_size, pos.entry_vwap, pos.leverage) == (D(40), expected_vwap, D(5))
    engine.set_price(PERP, D("63000"))
    mark = engine.mark_price(PERP)
    assert engine.unrealized_pnl(pos) == (mark - expected_vwap) * 40 * D("0.01")
    assert engine.initial_margin(pos) == 40 * D("0.01") * mark / 5

    grow = market(engine, PERP, "BUY", "1", reduce_only=True)
    too_big = market(engine, PERP, "SELL", "41", reduce_only=True)
    assert (grow.reason, too_big.reason) == (REDUCE_ONLY_REJECTION, REDUCE_ONLY_REJECTION)

    usd_before = engine.ledger.balance("USD").available
    close = placed(engine.close_position(PERP, None, "close-1"))
    (fill,) = [f for f in engine.fills if f.order_id == close.order_id]
    realized = (fill.price - expected_vwap) * 40 * D("0.01")
    assert pos.net_size == 0
    assert pos.realized_pnl == realized
    assert engine.ledger.balance("USD").available == usd_before + realized - fill.commission


def test_funding_is_charged_to_longs_each_interval() -> None:
    clock = ManualClock()
    engine = make_engine(clock)
    placed(market(engine, PERP, "BUY", "10"))
    usd = engine.ledger.balance("USD").available
    clock.advance(3600)
    engine.process()
    pos = engine.ledger.positions[PERP]
    payment = 10 * D("0.01") * engine.mark_price(PERP) * D("0.00001")
    assert pos.funding_paid == payment
    assert engine.ledger.balance("USD").available == usd - payment


def test_edit_rules_history_and_crossing() -> None:
    engine = make_engine(starting_balances={"USD": D(1_000_000), "BTC": D(1)})
    order = placed(limit_gtc(engine, BTC, "BUY", "1", "60000.00"))
    assert engine.edit(order.order_id, None, D("60001.00"), apply=True).errors == [
        ("INVALID_EDITED_SIZE", "")
    ]
    ok = engine.edit(order.order_id, D("0.5"), D("60010.00"), apply=True)
    assert ok.ok
    assert order.edit_history[-1]["size"] == "0.5"
    assert order.hold_amount == D("0.5") * D("60010.00") * (1 + TAKER)
    _, asks = engine.market.book(BTC)
    crossed = engine.edit(order.order_id, D("0.5"), asks[0][0], apply=True)
    assert crossed.ok
    assert order.status == "FILLED"
    assert engine.fills[-1].liquidity == "TAKER"
    assert engine.edit(order.order_id, D("1"), D("1.00"), apply=True).errors == [
        ("ONLY_OPEN_ORDERS_CAN_BE_EDITED", "")
    ]
    partial = placed(limit_gtc(engine, BTC, "BUY", "2", asks[1][0]))  # 1.25 fills at once
    assert engine.edit(partial.order_id, D("1"), asks[1][0], apply=False).errors == [
        ("CANNOT_EDIT_TO_BELOW_FILLED_SIZE", "")
    ]
    market_order = placed(market(engine, BTC, "SELL", "0.1"))
    assert engine.edit(market_order.order_id, D("1"), D("1"), apply=False).errors[0][0] in (
        "ONLY_OPEN_ORDERS_CAN_BE_EDITED",
        "ONLY_LIMIT_ORDER_EDITS_SUPPORTED",
    )


def test_state_round_trip_meets_the_same_exchange() -> None:
    clock = ManualClock()
    engine = make_engine(clock, history_minutes=5)
    placed(limit_gtc(engine, BTC, "BUY", "0.1", "60000.00", client_order_id="keep-me"))
    placed(market(engine, PERP, "SELL", "3", leverage="2"))
    engine.advance(5)
    state = engine.to_state()
    restored = make_engine(clock, history_minutes=5)
    restored.load_state(state)
    assert restored.to_state() == state
    assert restored.order_by_client_id("keep-me") is not None
    assert [o.order_id for o in restored.open_orders()] == [o.order_id for o in engine.open_orders()]
    engine.advance(3)
    restored.advance(3)
    assert restored.market.mid(BTC) == engine.market.mid(BTC)


def test_price_walk_is_deterministic_per_seed() -> None:
    a, b, c = make_engine(seed=1), make_engine(seed=1), make_engine(seed=2)
    for engine in (a, b, c):
        engine.advance(20)
    assert a.market.mid(BTC) == b.market.mid(BTC) != c.market.mid(BTC)
    assert a.market.mid(PERP) == a.market.mid(BTC)  # the perp follows its underlying
    bids, asks = a.market.book(BTC)
    assert all(p % D("0.01") == 0 for p, _ in bids + asks)
    assert bids[0][0] < asks[0][0]
