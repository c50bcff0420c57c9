"""The funding guard (RISK_MAX_FUNDING_RATE): no new exposure on the side that pays an extreme funding rate."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot_v2.config import load_settings
from bot_v2.domain import Side
from bot_v2.errors import ConfigError
from bot_v2.risk import RiskConfig, RiskEngine
from tests.unit.risk.factories import NOW, PERP, order, position, product, quote, snapshot

D = Decimal


def _verdict(rate: str | None, side: Side, held: str = "0", limit: str | None = "0.0005") -> tuple[bool, str]:
    perp = product(PERP, derivative=True, funding_rate=None if rate is None else D(rate))
    snap = snapshot(
        equity="100000",
        positions=[position(PERP, held, "50000")] if D(held) else [],
        quotes=[quote(PERP, "50000")],
        products=[perp],
    )
    config = RiskConfig(max_funding_rate=None if limit is None else D(limit), max_leverage=D(10))
    verdict = RiskEngine(config).check_order(order(side, "1", PERP), snap, NOW)
    (funding,) = [r for r in verdict.results if r.guard == "funding"]
    return funding.passed, funding.reason


def test_the_paying_side_may_not_open_or_grow() -> None:
    assert _verdict("0.001", Side.BUY) == (False, "funding rate 0.001 above |0.0005|: BUY would pay it")
    assert _verdict("-0.001", Side.SELL)[0] is False  # negative: shorts pay
    assert _verdict("0.001", Side.SELL) == (True, "funding rate 0.001: this side receives it")


def test_reducing_orders_small_rates_and_no_limit_pass() -> None:
    assert _verdict("0.001", Side.SELL, held="2")[0]  # closing a long that pays
    assert _verdict("0.001", Side.BUY, held="-2")[0]  # closing a short (receiving anyway)
    assert _verdict("0.0004", Side.BUY)[0]
    assert _verdict("0.001", Side.BUY, limit=None) == (True, "no limit")
    assert _verdict(None, Side.BUY) == (True, "funding rate not reported")


def test_the_variable_is_validated(tmp_path: object) -> None:
    assert load_settings("dev", {"RISK_MAX_FUNDING_RATE": "0.0005"}).risk.max_funding_rate == D("0.0005")
    with pytest.raises(ConfigError, match="RISK_MAX_FUNDING_RATE"):
        load_settings("dev", {"RISK_MAX_FUNDING_RATE": "2"})
