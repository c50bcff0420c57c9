"""Each order guard: passes, fails, and says why."""

from datetime import timedelta
from decimal import Decimal

import pytest

from bot_v2.domain import OrderType, Side, TimeInForce
from bot_v2.errors import GuardDeniedError
from bot_v2.risk import GuardResult, RiskConfig, RiskEngine, RiskSnapshot, RiskVerdict, price_move_pct
from bot_v2.risk.guards import ORDER_GUARDS, drawdown_pct, is_reducing

from .factories import BTC, ETH, NOW, PERP, D, order, position, product, quote, snapshot

LOOSE = RiskConfig(
    max_leverage=D(100),
    daily_loss_limit_pct=None,
    max_drawdown_pct=None,
    volatility_warn_pct=None,
    volatility_reduce_only_pct=None,
    volatility_halt_pct=None,
    max_slippage_bps=None,
    max_orders_per_minute=None,
    max_open_positions=None,
    min_liquidation_buffer_pct=None,
    error_rate_reduce_only_pct=None,
    error_rate_halt_pct=None,
)


def check(cfg: RiskConfig, snap: RiskSnapshot, **order_kw: object) -> RiskVerdict:
    return RiskEngine(cfg).check_order(order(**order_kw), snap, NOW)  # type: ignore[arg-type]


def result(verdict: RiskVerdict, name: str) -> GuardResult:
    (found,) = [r for r in verdict.results if r.guard == name]
    return found


def test_verdict_lists_every_guard() -> None:
    verdict = check(RiskConfig(), snapshot())
    assert verdict.allowed, verdict.denials
    assert len(verdict.results) == len(ORDER_GUARDS)
    names = [r.guard for r in verdict.results]
    assert len(set(names)) == len(names)
    assert {"kill_switch", "max_leverage", "mark_staleness", "slippage", "order_rate"} <= set(names)
    assert verdict.to_dict()["allowed"] is True


def test_raise_if_denied_names_first_guard() -> None:
    verdict = check(RiskConfig(kill_switch_enabled=True), snapshot())
    with pytest.raises(GuardDeniedError) as info:
        verdict.raise_if_denied()
    assert info.value.guard == "trading_state" or info.value.guard == "kill_switch"
    check(RiskConfig(), snapshot()).raise_if_denied()


def test_is_reducing() -> None:
    assert is_reducing(D(1), Side.SELL, D(1))
    assert is_reducing(D(-1), Side.BUY, D("0.5"))
    assert not is_reducing(D(1), Side.SELL, D("1.5"))  # flip
    assert not is_reducing(D(1), Side.BUY, D("0.1"))
    assert not is_reducing(D(0), Side.SELL, D("0.1"))


def test_kill_switch_denies_even_reducing_orders() -> None:
    snap = snapshot(positions=[position()])
    v = check(RiskConfig(kill_switch_enabled=True), snap, side=Side.SELL, quantity="0.1")
    assert not v.allowed
    assert "kill switch" in result(v, "kill_switch").reason


def test_reduce_only_mode() -> None:
    snap = snapshot(positions=[position(quantity="0.2")])
    cfg = RiskConfig(reduce_only_mode=True)
    assert check(cfg, snap, side=Side.SELL, quantity="0.1").allowed
    denied = check(cfg, snap, side=Side.BUY, quantity="0.1")
    assert not result(denied, "reduce_only").passed
    flip = check(cfg, snap, side=Side.SELL, quantity="0.3")
    assert not result(flip, "reduce_only").passed


def test_reduce_only_flag_must_reduce() -> None:
    snap = snapshot(
        positions=[position(PERP, "5", "50000")],
        products=[product(PERP, derivative=True)],
        quotes=[quote(PERP)],
    )
    v = check(LOOSE, snap, symbol=PERP, side=Side.BUY, quantity="1", reduce_only=True)
    assert not result(v, "reduce_only").passed
    assert check(LOOSE, snap, symbol=PERP, side=Side.SELL, quantity="2", reduce_only=True).allowed


def test_product_guard() -> None:
    assert not result(check(LOOSE, snapshot(products=[])), "product").passed
    off_increment = check(LOOSE, snapshot(), quantity="0.00015")
    assert "multiple" in result(off_increment, "product").reason
    disabled = snapshot(products=[product(BTC, trading_disabled=True)])
    assert "disabled" in result(check(LOOSE, disabled), "product").reason


def test_mark_staleness() -> None:
    cfg = RiskConfig(max_mark_staleness_seconds=10)
    assert result(check(cfg, snapshot(quotes=[quote(age_seconds=9)])), "mark_staleness").passed
    stale = result(check(cfg, snapshot(quotes=[quote(age_seconds=11)])), "mark_staleness")
    assert not stale.passed and "11.0s old" in stale.reason
    never = result(check(cfg, snapshot(quotes=[])), "mark_staleness")
    assert not never.passed and "never seen" in never.reason


def test_max_leverage() -> None:
    cfg = RiskConfig(max_leverage=D(2))
    snap = snapshot(equity="10000", positions=[position(ETH, "2", "3000")])  # 6000 exposure
    assert check(cfg, snap, quantity="0.27").allowed  # 6000 + 13500.14 = 1.95x
    denied = result(check(cfg, snap, quantity="0.3"), "max_leverage")
    assert not denied.passed and "> max 2x" in denied.reason
    assert not result(check(cfg, snap, quantity="0.01", leverage=D(3)), "max_leverage").passed
    assert not result(check(cfg, snapshot(equity="0"), quantity="0.01"), "max_leverage").passed


def test_max_leverage_counts_contract_size() -> None:
    cfg = RiskConfig(max_leverage=D(1), min_liquidation_buffer_pct=None)
    snap = snapshot(equity="1100", quotes=[quote(PERP)], products=[product(PERP, derivative=True)])
    # 1 contract of 0.01 BTC at ~50000 = 500 USD
    assert result(check(cfg, snap, symbol=PERP, quantity="2"), "max_leverage").passed
    assert not result(check(cfg, snap, symbol=PERP, quantity="3"), "max_leverage").passed


def test_max_position_size_default_and_per_symbol() -> None:
    cfg = RiskConfig(max_position_size=D("0.5"), max_position_size_by_symbol={ETH: D(2)})
    snap = snapshot(positions=[position(quantity="0.4")])
    assert check(cfg, snap, quantity="0.1").allowed
    v = result(check(cfg, snap, quantity="0.2"), "max_position_size")
    assert not v.passed and "0.6 > max 0.5" in v.reason
    assert not result(check(cfg, snap, symbol=ETH, quantity="2.5"), "max_position_size").passed
    # a flip is judged on the resulting short
    assert not result(check(cfg, snap, side=Side.SELL, quantity="1.0"), "max_position_size").passed


def test_reducing_order_passes_size_limits_even_when_over() -> None:
    cfg = RiskConfig(
        max_position_size=D("0.1"), max_notional_per_symbol_usd=D(100), max_total_exposure_usd=D(1)
    )
    snap = snapshot(positions=[position(quantity="1")])
    assert check(cfg, snap, side=Side.SELL, quantity="0.5").allowed


def test_max_notional_per_symbol_uses_worst_price() -> None:
    cfg = RiskConfig(max_notional_per_symbol_usd=D(5000))
    assert check(cfg, snapshot(), quantity="0.0999").allowed
    # a limit above the ask values the position at the limit
    v = check(cfg, snapshot(), quantity="0.0999", order_type=OrderType.LIMIT, limit_price=D("50100"))
    assert not result(v, "max_notional_per_symbol").passed


def test_max_total_exposure() -> None:
    cfg = RiskConfig(max_total_exposure_usd=D(10000))
    snap = snapshot(positions=[position(ETH, "2", "3000")])
    assert check(cfg, snap, quantity="0.07").allowed
    v = result(check(cfg, snap, quantity="0.09"), "max_total_exposure")
    assert not v.passed and "> max 10000" in v.reason


def test_open_positions() -> None:
    cfg = RiskConfig(max_open_positions=1)
    snap = snapshot(positions=[position(ETH, "1", "3000")])
    assert not result(check(cfg, snap), "open_positions").passed
    assert result(check(cfg, snap, symbol=ETH, quantity="1"), "open_positions").passed


def test_daily_loss_denies_increasing_only() -> None:
    engine = RiskEngine(RiskConfig(daily_loss_limit_pct=D(2)))
    start = snapshot(positions=[position(quantity="1", unrealized_pnl=D(0))])
    engine.evaluate_cycle(start, NOW)
    engine.record_realized_pnl(D(-2500), NOW)
    snap = snapshot(positions=[position(quantity="1")])
    v = engine.check_order(order(quantity="0.01"), snap, NOW)
    assert not result(v, "daily_loss").passed and "2.50%" in result(v, "daily_loss").reason
    assert result(engine.check_order(order(Side.SELL, "0.5"), snap, NOW), "daily_loss").passed


def test_daily_loss_usd_limit() -> None:
    engine = RiskEngine(RiskConfig(daily_loss_limit_pct=None, daily_loss_limit_usd=D(100)))
    engine.evaluate_cycle(snapshot(), NOW)
    engine.record_realized_pnl(D(-100), NOW)
    assert not result(engine.check_order(order(), snapshot(), NOW), "daily_loss").passed


def test_drawdown_guard() -> None:
    engine = RiskEngine(RiskConfig(max_drawdown_pct=D(10)))
    engine.evaluate_cycle(snapshot(equity="100000"), NOW)
    snap = snapshot(equity="89000", positions=[position()])
    assert not result(engine.check_order(order(Side.SELL, "0.1"), snap, NOW), "drawdown").passed  # HALT
    assert drawdown_pct(D(100), D(90)) == D(10)
    assert drawdown_pct(D(100), D(120)) == 0


def test_volatility_levels() -> None:
    cfg = RiskConfig(volatility_warn_pct=D(3), volatility_reduce_only_pct=D(5), volatility_halt_pct=D(8))
    base = {"positions": [position()]}

    def vol(pct: str, side: Side = Side.BUY) -> GuardResult:
        snap = snapshot(volatility_pct={BTC: D(pct)}, **base)  # type: ignore[arg-type]
        return result(check(cfg, snap, side=side, quantity="0.1"), "volatility")

    assert vol("1").passed and not vol("1").warning
    assert vol("3").passed and vol("3").warning
    assert not vol("5").passed
    assert vol("5", Side.SELL).passed
    assert not vol("8", Side.SELL).passed


def test_price_move_pct() -> None:
    assert price_move_pct([D(100), D(105), D(98)]) == (D(105) - D(98)) / D(98) * 100
    assert price_move_pct([D(100)]) == 0


def test_error_rate() -> None:
    cfg = RiskConfig(error_rate_reduce_only_pct=D(25), error_rate_halt_pct=D(50), error_rate_min_samples=10)
    few = snapshot(error_count=5, cycle_count=5)
    assert result(check(cfg, few), "error_rate").passed  # below min samples
    assert not result(check(cfg, snapshot(error_count=3, cycle_count=10)), "error_rate").passed
    assert result(check(cfg, snapshot(error_count=2, cycle_count=10)), "error_rate").passed


def test_slippage() -> None:
    cfg = RiskConfig(max_slippage_bps=D(10))
    wide = snapshot(quotes=[quote(spread="200")])  # half spread 100 / 50000 = 20 bps
    assert result(check(cfg, snapshot()), "slippage").passed
    v = result(check(cfg, wide), "slippage")
    assert not v.passed and "20.0 bps" in v.reason
    fat_finger = check(cfg, snapshot(), order_type=OrderType.LIMIT, limit_price=D("51000"))
    assert not result(fat_finger, "slippage").passed
    passive = check(cfg, snapshot(), order_type=OrderType.LIMIT, limit_price=D("49000"))
    assert result(passive, "slippage").passed
    est = snapshot(expected_slippage_bps={BTC: D(15)})
    assert not result(
        check(
            cfg,
            est,
            side=Side.SELL,
            quantity="0.1",
        ),
        "slippage",
    ).passed
    stop = check(
        cfg,
        snapshot(),
        order_type=OrderType.STOP_LIMIT,
        stop_price=D("55000"),
        limit_price=D("55030"),
        time_in_force=TimeInForce.GTC,
    )
    assert result(stop, "slippage").passed


def test_order_rate_counts_last_minute() -> None:
    engine = RiskEngine(RiskConfig(max_orders_per_minute=2))
    engine.record_order(NOW - timedelta(seconds=90))
    engine.record_order(NOW - timedelta(seconds=30))
    assert result(engine.check_order(order(), snapshot(), NOW), "order_rate").passed
    engine.record_order(NOW - timedelta(seconds=5))
    v = result(engine.check_order(order(), snapshot(), NOW), "order_rate")
    assert not v.passed and "2 orders" in v.reason


def test_liquidation_buffer_applies_to_derivatives_only() -> None:
    cfg = RiskConfig(min_liquidation_buffer_pct=D(20), max_leverage=D(10))
    prods = [product(BTC), product(PERP, derivative=True)]
    quotes = [quote(BTC), quote(PERP)]
    low = snapshot(
        products=prods, quotes=quotes, liquidation_buffer_pct=D(15), positions=[position(PERP, "3")]
    )
    assert not result(check(cfg, low, symbol=PERP, quantity="1"), "liquidation_buffer").passed
    assert result(check(cfg, low, symbol=PERP, side=Side.SELL, quantity="1"), "liquidation_buffer").passed
    assert result(check(cfg, low, quantity="0.01"), "liquidation_buffer").passed
    ok = snapshot(products=prods, quotes=quotes, liquidation_buffer_pct=D(30))
    assert result(check(cfg, ok, symbol=PERP, quantity="1"), "liquidation_buffer").passed


def test_snapshot_validates_counts() -> None:
    with pytest.raises(ValueError, match="error_count"):
        RiskSnapshot(equity_usd=Decimal(1), error_count=3, cycle_count=2)
