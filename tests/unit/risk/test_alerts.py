from decimal import Decimal

import pytest

from bot_v2.errors import ConfigError
from bot_v2.risk import AlertLevel, AlertSnapshot, AlertThresholds, evaluate_alerts

W, C = AlertLevel.WARNING, AlertLevel.CRITICAL


def alerts(pnl: str = "0", err: str = "0", pos: int = 0, age: float | None = 1.0) -> dict[str, AlertLevel]:
    snap = AlertSnapshot(Decimal(pnl), Decimal(err), pos, age)
    return {a.name: a.level for a in evaluate_alerts(snap)}


def test_quiet_when_healthy() -> None:
    assert alerts() == {}


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"pnl": "-0.99"}, {}),
        ({"pnl": "-1"}, {"daily_loss": W}),
        ({"pnl": "-2"}, {"daily_loss": C}),
        ({"pnl": "5"}, {}),
        ({"err": "10"}, {"error_rate": W}),
        ({"err": "25"}, {"error_rate": C}),
        ({"pos": 9}, {}),
        ({"pos": 10}, {"position_count": W}),
        ({"pos": 20}, {"position_count": C}),
        ({"age": 299.0}, {}),
        ({"age": 300.0}, {"market_data": W}),
        ({"age": 900.0}, {"market_data": C}),
        ({"age": None}, {"market_data": C}),
    ],
)
def test_runbook_thresholds(kw: dict[str, object], expected: dict[str, AlertLevel]) -> None:
    assert alerts(**kw) == expected  # type: ignore[arg-type]


def test_custom_thresholds_and_validation() -> None:
    t = AlertThresholds.from_mapping({"position_count_warning": "3", "market_data_down_warning_seconds": 60})
    snap = AlertSnapshot(Decimal(0), Decimal(0), 3, 61.0)
    assert {a.name for a in evaluate_alerts(snap, t)} == {"position_count", "market_data"}
    with pytest.raises(ConfigError, match=r"alerts.bogus"):
        AlertThresholds.from_mapping({"bogus": 1})
    with pytest.raises(ConfigError, match="error_rate"):
        AlertThresholds(error_rate_warning_pct=Decimal(30))
    with pytest.raises(ConfigError, match="position_count_warning"):
        AlertThresholds.from_mapping({"position_count_warning": "2.5"})


def test_alert_to_dict() -> None:
    (a,) = evaluate_alerts(AlertSnapshot(Decimal(-3), Decimal(0), 0, 1.0))
    assert a.to_dict() == {"name": "daily_loss", "level": "CRITICAL", "message": "daily PnL -3.00%"}


def test_websocket_down_alert_follows_the_runbook() -> None:
    def websocket(down: float | None) -> str | None:
        snap = AlertSnapshot(Decimal(0), Decimal(0), 0, 1.0, websocket_down_seconds=down)
        return next((a.level.value for a in evaluate_alerts(snap) if a.name == "websocket"), None)

    assert websocket(None) is None  # no feed configured
    assert websocket(299.0) is None
    assert websocket(300.0) == "WARNING"  # 5 min
    assert websocket(900.0) == "CRITICAL"  # 15 min
