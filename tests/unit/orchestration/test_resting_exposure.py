"""Resting orders count toward exposure and position limits; an order edit is judged like a new order.

``market.with_resting`` puts every resting order at its worst case (it may fill at any moment), as the loop's
executor, ``--preview-order`` and ``--apply-order-edit`` (``replacing`` the edited order) all judge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot_v2.domain import OrderId, OrderStatus, Side
from bot_v2.orchestration.market import unbooked_requests, with_resting
from bot_v2.orchestration.records import OrderRecord
from bot_v2.risk import RiskConfig, RiskEngine
from tests.unit.risk.factories import BTC, NOW, order, position, snapshot

D = Decimal
#: 5,000 USD per symbol, 10,000 in total, 1 BTC at most (BTC at 50,000)
LIMITS = RiskConfig(
    max_notional_per_symbol_usd=D(5000), max_total_exposure_usd=D(10000), max_position_size=D(1)
)


def _resting(
    side: Side, quantity: str, filled: str = "0", order_id: str = "o1", booked: str | None = None
) -> OrderRecord:
    return OrderRecord(
        order_id=OrderId(order_id),
        client_order_id=f"pb-{order_id}",  # type: ignore[arg-type]
        symbol=BTC,
        side=side,
        status=OrderStatus.OPEN,
        quantity=D(quantity),
        filled_quantity=D(filled),
        average_fill_price=None,
        total_fees=D(0),
        updated_at=datetime(2026, 3, 10, tzinfo=UTC),
        booked_quantity=D(filled if booked is None else booked),
    )


def _allowed(resting: list[OrderRecord], request_qty: str, side: Side = Side.BUY, held: str = "0") -> bool:
    base = snapshot(positions=[position(quantity=held)] if D(held) else [])
    request = order(side, request_qty)
    judged = with_resting(base, unbooked_requests(resting), request)
    return RiskEngine(LIMITS).check_order(request, judged, NOW).allowed


def test_a_resting_buy_counts_toward_the_symbol_cap() -> None:
    assert _allowed([], "0.06")  # 3,000 USD: within 5,000
    assert not _allowed([_resting(Side.BUY, "0.06")], "0.06")  # 6,000 if both fill
    assert _allowed([_resting(Side.BUY, "0.06", filled="0.05")], "0.06")  # only 0.01 still rests
    # filled but not booked yet (the stored position lacks it): all 0.06 may still move the position
    assert not _allowed([_resting(Side.BUY, "0.06", filled="0.05", booked="0")], "0.06")
    assert not _allowed([_resting(Side.BUY, "0.05")], "0.96", held="0")  # 1.01 BTC > max position size


def test_a_resting_sell_is_not_credited_before_it_fills() -> None:
    # holding 0.09 BTC (4,500 USD): a resting sell of it does not make room for a buy of 0.04 more
    assert not _allowed([_resting(Side.SELL, "0.09")], "0.04", held="0.09")
    # the reduction itself is judged reducing at its worst case
    assert _allowed([], "0.09", side=Side.SELL, held="0.09")


@settings(max_examples=200, deadline=None)
@given(
    old=st.integers(1, 200),
    new=st.integers(1, 200),
    others=st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 100)), max_size=4),
    held=st.integers(-50, 50),
)
def test_an_edit_is_judged_exactly_like_the_new_order_with_the_old_one_gone(
    old: int, new: int, others: list[tuple[Side, int]], held: int
) -> None:
    """Editing resting order ``e1`` to ``new`` gets the verdict of cancelling it and placing ``new`` fresh; and
    counting resting orders never approves what the bare snapshot would deny (they only add exposure)."""
    unit = D("0.001")
    edited = _resting(Side.BUY, str(old * unit), order_id="e1")
    rest = [_resting(side, str(q * unit), order_id=f"r{i}") for i, (side, q) in enumerate(others)]
    base = snapshot(positions=[position(quantity=str(held * unit))] if held else [])
    request = order(Side.BUY, str(new * unit))
    engine = RiskEngine(LIMITS)

    as_edit = with_resting(base, unbooked_requests([edited, *rest], exclude=OrderId("e1")), request)
    as_new = with_resting(base, unbooked_requests(rest), request)
    assert (
        engine.check_order(request, as_edit, NOW).allowed == engine.check_order(request, as_new, NOW).allowed
    )

    bare = engine.check_order(request, base, NOW).allowed
    with_all = engine.check_order(
        request, with_resting(base, unbooked_requests([edited, *rest]), request), NOW
    )
    assert not (with_all.allowed and not bare)
