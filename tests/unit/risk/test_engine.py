"""RiskEngine: state transitions, controls, recovery, UTC rollover, persistence."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot_v2.domain import Side
from bot_v2.errors import StateIntegrityError
from bot_v2.risk import (
    DrawdownAction,
    ReasonCode,
    RiskConfig,
    RiskEngine,
    RiskSnapshot,
    TradingState,
    Transition,
)

from .factories import BTC, ETH, NOW, D, order, position, quote, snapshot

A = TradingState.ACTIVE
R = TradingState.REDUCE_ONLY
H = TradingState.HALTED


def test_fresh_engine_is_active() -> None:
    engine = RiskEngine(RiskConfig())
    assert engine.state is A
    assert engine.evaluate_cycle(snapshot(symbols=(BTC,)), NOW) == []
    assert engine.state_detail() == "no active reasons"


def test_config_kill_switch_halts_on_first_cycle_and_denies_before() -> None:
    engine = RiskEngine(RiskConfig(kill_switch_enabled=True))
    assert not engine.check_order(order(), snapshot(), NOW).allowed  # even before the first cycle
    (t,) = engine.evaluate_cycle(snapshot(), NOW)
    assert (t.from_state, t.to_state, t.reason, t.cleared) == (A, H, ReasonCode.KILL_SWITCH, False)
    assert "config" in t.detail
    assert engine.evaluate_cycle(snapshot(), NOW) == []  # no repeat events


def test_runtime_kill_switch_on_and_off() -> None:
    engine = RiskEngine(RiskConfig())
    (on,) = engine.apply_controls(kill_switch=True, reduce_only=False, now=NOW)
    assert (on.from_state, on.to_state) == (A, H) and "runtime control" in on.detail
    assert not engine.check_order(order(), snapshot(), NOW).allowed
    (off,) = engine.apply_controls(kill_switch=False, reduce_only=False, now=NOW)
    assert (off.from_state, off.to_state, off.cleared) == (H, A, True)
    assert engine.check_order(order(), snapshot(), NOW).allowed


def test_kill_switch_off_restores_only_to_remaining_reasons() -> None:
    engine = RiskEngine(RiskConfig())
    engine.apply_controls(kill_switch=True, reduce_only=True, now=NOW)
    assert engine.state is H
    (t,) = engine.apply_controls(kill_switch=False, reduce_only=True, now=NOW)
    assert (t.from_state, t.to_state) == (H, R)
    assert set(engine.reasons) == {ReasonCode.REDUCE_ONLY_MODE}


def test_config_kill_switch_cannot_be_cleared_by_control() -> None:
    engine = RiskEngine(RiskConfig(kill_switch_enabled=True))
    engine.apply_controls(kill_switch=False, reduce_only=False, now=NOW)
    assert engine.state is H


def test_reduce_only_state_passes_only_reducing_orders() -> None:
    engine = RiskEngine(RiskConfig())
    engine.apply_controls(kill_switch=False, reduce_only=True, now=NOW)
    snap = snapshot(positions=[position(quantity="0.2")])
    assert engine.check_order(order(side=order().side.opposite, quantity="0.2"), snap, NOW).allowed
    assert not engine.check_order(order(quantity="0.01"), snap, NOW).allowed


def test_daily_loss_trips_reduce_only_and_resets_at_utc_rollover() -> None:
    engine = RiskEngine(RiskConfig(daily_loss_limit_pct=D(2)))
    engine.evaluate_cycle(snapshot(equity="100000", positions=[position(quantity="1")]), NOW)
    # unrealized drops by 2500 during the day -> -2.5 %
    losing = snapshot(equity="97500", positions=[position(quantity="1", unrealized_pnl=D(-2500))])
    (t,) = engine.evaluate_cycle(losing, NOW + timedelta(hours=1))
    assert (t.to_state, t.reason) == (R, ReasonCode.DAILY_LOSS_LIMIT)
    # recovering intraday does not clear the latch
    recovered = snapshot(equity="100000", positions=[position(quantity="1")])
    assert engine.evaluate_cycle(recovered, NOW + timedelta(hours=2)) == []
    assert engine.state is R
    # 00:00 UTC next day clears it and starts a new tracker
    midnight = datetime(2026, 3, 11, 0, 0, 1, tzinfo=UTC)
    (cleared,) = engine.evaluate_cycle(losing, midnight)
    assert (cleared.from_state, cleared.to_state, cleared.cleared) == (R, A, True)
    assert "rollover" in cleared.detail
    tracker = engine.daily_pnl_tracker
    assert tracker is not None and tracker.day == midnight.date()
    assert tracker.unrealized_baseline_usd == D(-2500)


def test_daily_pnl_counts_realized_plus_unrealized_change() -> None:
    engine = RiskEngine(RiskConfig(daily_loss_limit_usd=D(1000), daily_loss_limit_pct=None))
    engine.evaluate_cycle(snapshot(positions=[position(unrealized_pnl=D(300))]), NOW)
    engine.record_realized_pnl(D(-600), NOW)
    # unrealized 300 -> -100 is another -400: total -1000
    transitions = engine.evaluate_cycle(snapshot(positions=[position(unrealized_pnl=D(-100))]), NOW)
    assert [t.reason for t in transitions] == [ReasonCode.DAILY_LOSS_LIMIT]


def test_drawdown_halts_and_needs_operator() -> None:
    engine = RiskEngine(RiskConfig(max_drawdown_pct=D(10), daily_loss_limit_pct=None))
    engine.evaluate_cycle(snapshot(equity="100000"), NOW)
    engine.evaluate_cycle(snapshot(equity="120000"), NOW)
    (t,) = engine.evaluate_cycle(snapshot(equity="107000"), NOW)
    assert (t.to_state, t.reason) == (H, ReasonCode.DRAWDOWN)
    assert engine.evaluate_cycle(snapshot(equity="119000"), NOW) == []  # latched
    assert engine.state is H
    (c,) = engine.clear_reason(ReasonCode.DRAWDOWN, NOW)
    assert c.cleared and engine.state is A
    assert engine.equity_peak_usd == D(119000)
    assert engine.evaluate_cycle(snapshot(equity="118000"), NOW) == []


def test_drawdown_action_reduce_only() -> None:
    cfg = RiskConfig(
        max_drawdown_pct=D(5), drawdown_action=DrawdownAction.REDUCE_ONLY, daily_loss_limit_pct=None
    )
    engine = RiskEngine(cfg)
    engine.evaluate_cycle(snapshot(equity="100"), NOW)
    (t,) = engine.evaluate_cycle(snapshot(equity="95"), NOW)
    assert t.to_state is R


def test_staleness_never_seen_symbol_is_stale_and_auto_recovers() -> None:
    engine = RiskEngine(RiskConfig(max_mark_staleness_seconds=10))
    (t,) = engine.evaluate_cycle(snapshot(symbols=(BTC, ETH), quotes=[quote(BTC)]), NOW)
    assert (t.to_state, t.reason) == (R, ReasonCode.MARK_STALE) and "ETH-USD" in t.detail
    (c,) = engine.evaluate_cycle(snapshot(symbols=(BTC, ETH)), NOW)
    assert c.cleared and engine.state is A
    (t2,) = engine.evaluate_cycle(snapshot(symbols=(BTC,), quotes=[quote(age_seconds=11)]), NOW)
    assert t2.reason is ReasonCode.MARK_STALE


def test_volatility_escalates_and_clears() -> None:
    engine = RiskEngine(RiskConfig())  # 5 / 8 / 12
    assert engine.evaluate_cycle(snapshot(volatility_pct={BTC: D(6)}), NOW) == []  # warn only
    (r,) = engine.evaluate_cycle(snapshot(volatility_pct={BTC: D(9)}), NOW)
    assert r.to_state is R
    (h,) = engine.evaluate_cycle(snapshot(volatility_pct={BTC: D(9), ETH: D(13)}), NOW)
    assert (h.from_state, h.to_state) == (R, H)
    (c,) = engine.evaluate_cycle(snapshot(volatility_pct={BTC: D(1)}), NOW)
    assert (c.from_state, c.to_state, c.cleared) == (H, A, True)


def test_error_rate_levels() -> None:
    engine = RiskEngine(RiskConfig())  # 25 / 50, min 10 samples
    (r,) = engine.evaluate_cycle(snapshot(error_count=3, cycle_count=10), NOW)
    assert (r.reason, r.to_state) == (ReasonCode.ERROR_RATE, R)
    (h,) = engine.evaluate_cycle(snapshot(error_count=5, cycle_count=10), NOW)
    assert h.to_state is H
    engine.evaluate_cycle(snapshot(error_count=0, cycle_count=10), NOW)
    assert engine.state is A


def test_liquidation_buffer_reason() -> None:
    engine = RiskEngine(RiskConfig(min_liquidation_buffer_pct=D(20)))
    (t,) = engine.evaluate_cycle(snapshot(liquidation_buffer_pct=D(10)), NOW)
    assert (t.reason, t.to_state) == (ReasonCode.LIQUIDATION_BUFFER, R)


def test_transition_from_equals_to_when_already_worse() -> None:
    engine = RiskEngine(RiskConfig())
    engine.apply_controls(kill_switch=True, reduce_only=False, now=NOW)
    (t,) = engine.evaluate_cycle(snapshot(volatility_pct={BTC: D(9)}), NOW)
    assert (t.from_state, t.to_state, t.changes_state) == (H, H, False)


def test_caller_reasons_and_operator_clear() -> None:
    engine = RiskEngine(RiskConfig())
    (s,) = engine.raise_reason(ReasonCode.STARTUP, H, "reconciling", NOW)
    assert s.to_state is H
    engine.raise_reason(ReasonCode.RECONCILE_MISMATCH, R, "position differs", NOW)
    engine.clear_reason(ReasonCode.STARTUP, NOW, "reconciled")
    assert engine.state is R
    engine.raise_reason(ReasonCode.MANUAL, H, "operator pause", NOW)
    assert engine.evaluate_cycle(snapshot(), NOW) == []  # cycles never clear MANUAL
    engine.clear_reason(ReasonCode.MANUAL, NOW)
    engine.clear_reason(ReasonCode.RECONCILE_MISMATCH, NOW)
    assert engine.state is A
    with pytest.raises(ValueError, match="derived"):
        engine.raise_reason(ReasonCode.VOLATILITY, H, "x", NOW)
    with pytest.raises(ValueError, match="DAY_ROLLOVER"):
        engine.clear_reason(ReasonCode.DAILY_LOSS_LIMIT, NOW)
    with pytest.raises(ValueError):
        engine.raise_reason(ReasonCode.MANUAL, A, "x", NOW)


def test_naive_now_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        RiskEngine(RiskConfig()).evaluate_cycle(snapshot(), datetime(2026, 1, 1))


def _busy_engine() -> tuple[RiskEngine, RiskSnapshot]:
    cfg = RiskConfig(max_orders_per_minute=3, daily_loss_limit_pct=D(2))
    engine = RiskEngine(cfg)
    engine.evaluate_cycle(
        snapshot(equity="100000", positions=[position(quantity="1")]), NOW - timedelta(hours=3)
    )
    engine.record_realized_pnl(D(-900), NOW - timedelta(hours=1))
    engine.apply_controls(kill_switch=False, reduce_only=True, now=NOW - timedelta(minutes=5))
    engine.raise_reason(ReasonCode.RECONCILE_MISMATCH, R, "open order unknown", NOW - timedelta(minutes=4))
    for s in (50, 20, 10):
        engine.record_order(NOW - timedelta(seconds=s))
    snap = snapshot(
        equity="98500", positions=[position(quantity="1", unrealized_pnl=D(-700))], symbols=(BTC,)
    )
    return engine, snap


def test_restore_after_restart_gives_identical_decisions() -> None:
    engine, snap = _busy_engine()
    saved = engine.export_state()
    # through JSON with str() leaves, as a state layer might store it
    text = json.dumps(saved, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))
    restored = RiskEngine.restore(engine.config, json.loads(text))
    assert restored.export_state() == saved
    assert restored.state is engine.state is R
    for o in (order(), order(side=order().side.opposite, quantity="0.5"), order(quantity="0.01", symbol=ETH)):
        assert restored.check_order(o, snap, NOW) == engine.check_order(o, snap, NOW)
    later = NOW + timedelta(seconds=45)
    assert restored.evaluate_cycle(snap, later) == engine.evaluate_cycle(snap, later)
    assert restored.export_state() == engine.export_state()
    # and a rollover after restart still clears the daily latch / rate window alike
    tomorrow = NOW + timedelta(days=1)
    assert restored.evaluate_cycle(snap, tomorrow) == engine.evaluate_cycle(snap, tomorrow)


def test_restore_with_decimal_and_datetime_leaves() -> None:
    engine, _ = _busy_engine()
    saved = engine.export_state()
    assert RiskEngine.restore(engine.config, saved).export_state() == saved


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("reasons"), "missing field"),
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.update(state="ACTIVE"), "does not match"),
        (lambda d: d.update(equity_peak_usd=1.5), "equity_peak_usd"),
        (lambda d: d.update(equity_peak_usd="abc"), "equity_peak_usd"),
        (lambda d: d.update(control_kill_switch="yes"), "control_kill_switch"),
        (lambda d: d["order_times"].append("2026-01-01T00:00:00"), "naive"),
        (lambda d: d["reasons"][0].update(code="NOPE"), "unknown ReasonCode"),
        (lambda d: d["reasons"].append(dict(d["reasons"][0])), "duplicate"),
        (lambda d: d["daily_pnl"].update(day="yesterday"), "daily_pnl.day"),
        (lambda d: d.update(daily_pnl=[]), "daily_pnl"),
    ],
)
def test_corrupted_state_raises(mutate: object, match: str) -> None:
    engine, _ = _busy_engine()
    data = json.loads(
        json.dumps(
            engine.export_state(), default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)
        )
    )
    mutate(data)  # type: ignore[operator]
    with pytest.raises(StateIntegrityError, match=match):
        RiskEngine.restore(engine.config, data)


def test_transition_round_trip() -> None:
    t = Transition(A, H, ReasonCode.KILL_SWITCH, "on", NOW, cleared=False)
    assert Transition.from_dict(t.to_dict()) == t
    with pytest.raises(StateIntegrityError):
        Transition.from_dict({**t.to_dict(), "to_state": "PAUSED"})


def test_order_times_are_pruned() -> None:
    engine = RiskEngine(RiskConfig())
    for i in range(100):
        engine.record_order(NOW + timedelta(seconds=i))
    times = engine.export_state()["order_times"]
    assert isinstance(times, list) and len(times) == 60


def test_alert_snapshot_measures() -> None:
    engine = RiskEngine(RiskConfig())
    engine.evaluate_cycle(snapshot(equity="100000"), NOW)
    engine.record_realized_pnl(Decimal(-1500), NOW)
    a = engine.alert_snapshot(
        snapshot(
            symbols=(BTC,),
            quotes=[quote(age_seconds=400)],
            positions=[position()],
            error_count=1,
            cycle_count=4,
        ),
        NOW,
    )
    assert a.daily_pnl_pct == Decimal("-1.5")
    assert a.error_rate_pct == 25
    assert a.open_positions == 1
    assert a.market_data_age_seconds == 400.0
    assert engine.alert_snapshot(snapshot(symbols=(BTC,), quotes=[]), NOW).market_data_age_seconds is None


def test_warm_outage_reduce_only_lets_only_reducing_orders_pass() -> None:
    """PostgreSQL down in PERPS_WARM_OUTAGE_MODE=reduce_only: set by the loop each cycle, never persisted."""
    engine = RiskEngine(RiskConfig())
    long = snapshot(positions=[position(BTC, "0.2")])
    assert engine.set_warm_outage(True) and not engine.set_warm_outage(True)
    assert engine.reduce_only_active and engine.warm_outage_reduce_only
    (t,) = engine.evaluate_cycle(long, NOW)
    assert t.to_state is R and "PostgreSQL down" in t.detail
    assert not engine.check_order(order(Side.BUY, "0.1"), long, NOW).allowed
    assert engine.check_order(order(Side.SELL, "0.1"), long, NOW).allowed
    assert "warm" not in json.dumps(engine.export_state(), default=str)  # it ends with the outage
    assert engine.set_warm_outage(False) and not engine.reduce_only_active
    (t,) = engine.evaluate_cycle(long, NOW)  # the loop's next step clears the reason
    assert t.cleared and engine.state is A
    assert engine.check_order(order(Side.BUY, "0.1"), long, NOW).allowed
