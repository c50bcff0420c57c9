"""Property tests: money is conserved, limits are respected, cancelled orders never fill."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot_v2.brokerages.simulated.engine import Engine
from bot_v2.brokerages.simulated.models import floor_to

from .builders import BTC, PERP, limit_gtc, make_engine, market

D = Decimal
EPSILON = D("1e-12")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sides = st.sampled_from(["BUY", "SELL"])
spot_actions = st.lists(
    st.one_of(
        st.tuples(st.just("market"), sides, st.integers(1, 400)),
        st.tuples(st.just("limit"), sides, st.integers(1, 400), st.integers(-60, 60)),
        st.tuples(st.just("move"), st.integers(-150, 150)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("advance"), st.integers(1, 3)),
    ),
    min_size=1,
    max_size=30,
)


def _move(engine: Engine, product_id: str, bps: int) -> None:
    price = engine.market.mid(product_id) * (1 + D(bps) / 10_000)
    engine.set_price(product_id, floor_to(price, D("0.01")))


@SETTINGS
@given(actions=spot_actions)
def test_spot_trading_conserves_money_respects_limits_and_never_fills_cancelled_orders(
    actions: list[tuple],
) -> None:
    engine = make_engine(starting_balances={"USD": D(1_000_000), "BTC": D(10)})
    placed: list[str] = []
    fills_at_cancel: dict[str, int] = {}
    for action in actions:
        kind = action[0]
        if kind == "market":
            result = market(engine, BTC, action[1], str(D(action[2]) / 1000))
        elif kind == "limit":
            price = floor_to(engine.market.mid(BTC) * (1 + D(action[3]) / 10_000), D("0.01"))
            result = limit_gtc(engine, BTC, action[1], str(D(action[2]) / 1000), price)
        elif kind == "move":
            _move(engine, BTC, action[1])
            continue
        elif kind == "advance":
            engine.advance(action[1])
            continue
        else:
            if placed:
                order_id = placed[action[1] % len(placed)]
                if engine.cancel([order_id])[0].success:
                    fills_at_cancel[order_id] = engine.orders[order_id].number_of_fills
            continue
        if result.order is not None:
            placed.append(result.order.order_id)
        for bal in engine.ledger.balances.values():
            assert bal.available >= 0 and bal.hold >= 0

    engine.cancel([o.order_id for o in engine.open_orders()])
    usd, btc = engine.ledger.balance("USD"), engine.ledger.balance("BTC")
    assert usd.hold == 0 and btc.hold == 0
    flow = sum((f.price * f.size * (1 if f.side == "BUY" else -1) for f in engine.fills), D(0))
    fees = sum((f.commission for f in engine.fills), D(0))
    base = sum((f.size * (1 if f.side == "BUY" else -1) for f in engine.fills), D(0))
    assert btc.total - 10 == base
    # valued at the fill prices, the account changed by exactly minus the fees
    assert (usd.total - 1_000_000) + flow == -fees
    for fill in engine.fills:
        order = engine.orders[fill.order_id]
        if order.limit_price is not None:
            assert fill.price <= order.limit_price if fill.side == "BUY" else fill.price >= order.limit_price
    for order_id, count in fills_at_cancel.items():
        assert engine.orders[order_id].number_of_fills == count
        assert engine.orders[order_id].status == "CANCELLED"


perp_actions = st.lists(
    st.one_of(
        st.tuples(st.just("trade"), sides, st.integers(1, 60), st.booleans()),
        st.tuples(st.just("move"), st.integers(-300, 300)),
    ),
    min_size=1,
    max_size=25,
)


@SETTINGS
@given(actions=perp_actions)
def test_perp_cash_equals_realized_pnl_minus_fees_once_flat(actions: list[tuple]) -> None:
    engine = make_engine(starting_balances={"USD": D(1_000_000)})
    for action in actions:
        if action[0] == "move":
            bps = action[1]
            price = engine.market.mid(PERP) * (1 + D(bps) / 10_000)
            engine.set_price(PERP, floor_to(price, D(5)))
        else:
            _, side, size, reduce_only = action
            market(engine, PERP, side, str(size), reduce_only=reduce_only, leverage="3")
        pos = engine.ledger.positions.get(PERP)
        if pos is not None and pos.net_size:
            signed = sum((f.size * (1 if f.side == "BUY" else -1) for f in engine.fills), D(0))
            assert pos.net_size == signed
    if engine.open_positions():
        assert engine.close_position(PERP, None, "flatten").ok
    pos = engine.ledger.positions.get(PERP)
    realized = pos.realized_pnl if pos else D(0)
    fees = sum((f.commission for f in engine.fills), D(0))
    cash_flow = sum(
        (f.price * f.size * D("0.01") * (-1 if f.side == "BUY" else 1) for f in engine.fills), D(0)
    )
    # entry VWAPs are divisions, so allow for Decimal's 28-digit rounding
    assert abs(realized - cash_flow) < EPSILON
    assert abs(engine.ledger.balance("USD").total - 1_000_000 - (realized - fees)) < EPSILON
