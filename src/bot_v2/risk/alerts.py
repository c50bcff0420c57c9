"""Operational alerts from the runbook thresholds: a pure ``evaluate_alerts(snapshot) -> list[Alert]``.

| alert          | WARNING        | CRITICAL       |
|----------------|----------------|----------------|
| daily_loss     | PnL <= -1 %    | PnL <= -2 %    |
| error_rate     | >= 10 %        | >= 25 %        |
| position_count | >= 10 open     | >= 20 open     |
| market_data    | >= 5 min old   | >= 15 min old (or never received) |
| websocket      | down >= 5 min  | down >= 15 min (the runbook's "WebSocket down") |
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from bot_v2.errors import ConfigError

__all__ = ["Alert", "AlertLevel", "AlertSnapshot", "AlertThresholds", "evaluate_alerts"]


class AlertLevel(enum.StrEnum):
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


@dataclass(frozen=True, slots=True)
class Alert:
    """One raised alert: ``name`` is stable (metrics label), ``message`` is for humans."""

    name: str
    level: AlertLevel
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "level": self.level.value, "message": self.message}


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Alert thresholds (runbook defaults). Percent values are positive magnitudes."""

    daily_loss_warning_pct: Decimal = Decimal(1)
    daily_loss_critical_pct: Decimal = Decimal(2)
    error_rate_warning_pct: Decimal = Decimal(10)
    error_rate_critical_pct: Decimal = Decimal(25)
    position_count_warning: int = 10
    position_count_critical: int = 20
    market_data_down_warning_seconds: float = 300.0
    market_data_down_critical_seconds: float = 900.0
    websocket_down_warning_seconds: float = 300.0
    websocket_down_critical_seconds: float = 900.0

    def __post_init__(self) -> None:
        pairs = (
            ("daily_loss", self.daily_loss_warning_pct, self.daily_loss_critical_pct),
            ("error_rate", self.error_rate_warning_pct, self.error_rate_critical_pct),
            ("position_count", self.position_count_warning, self.position_count_critical),
            (
                "market_data_down",
                self.market_data_down_warning_seconds,
                self.market_data_down_critical_seconds,
            ),
            ("websocket_down", self.websocket_down_warning_seconds, self.websocket_down_critical_seconds),
        )
        for name, warning, critical in pairs:
            if isinstance(warning, bool) or isinstance(critical, bool):
                raise ConfigError(f"alerts.{name}: thresholds must be numbers")
            if warning <= 0 or critical <= 0:
                raise ConfigError(f"alerts.{name}: thresholds must be > 0")
            if warning > critical:
                raise ConfigError(f"alerts.{name}: warning ({warning}) must be <= critical ({critical})")

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> AlertThresholds:
        """Build from a profile dict of field names; unknown keys raise ``ConfigError`` naming the key."""
        kinds = {f.name: f.type for f in fields(cls)}
        changes: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in kinds:
                raise ConfigError(f"alerts.{key}: unknown alert threshold (known: {', '.join(kinds)})")
            kind = str(kinds[key])
            if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
                raise ConfigError(f"alerts.{key}: expected a number, got {raw!r}")
            try:
                number = Decimal(str(raw).strip())
            except InvalidOperation:
                raise ConfigError(f"alerts.{key}: expected a number, got {raw!r}") from None
            if not number.is_finite():
                raise ConfigError(f"alerts.{key}: expected a finite number, got {raw!r}")
            if kind == "int":
                if number != number.to_integral_value():
                    raise ConfigError(f"alerts.{key}: expected an integer, got {raw!r}")
                changes[key] = int(number)
            elif kind == "float":
                changes[key] = float(number)
            else:
                changes[key] = number
        return replace(cls(), **changes)


@dataclass(frozen=True, slots=True)
class AlertSnapshot:
    """The measurements the alerts judge (``RiskEngine.alert_snapshot`` builds one from a ``RiskSnapshot``).

    ``market_data_age_seconds`` is the age of the oldest traded symbol's quote; ``None`` means a traded symbol
    has never had a quote (treated as down beyond the critical threshold). ``websocket_down_seconds``: how long
    the WebSocket feed has not been healthy (None: the bot runs without a feed).
    """

    daily_pnl_pct: Decimal
    error_rate_pct: Decimal
    open_positions: int
    market_data_age_seconds: float | None
    websocket_down_seconds: float | None = None


def evaluate_alerts(snapshot: AlertSnapshot, thresholds: AlertThresholds | None = None) -> list[Alert]:
    """Return the alerts ``snapshot`` raises (at most one per name, the most severe)."""
    t = thresholds if thresholds is not None else AlertThresholds()
    alerts: list[Alert] = []

    loss = -snapshot.daily_pnl_pct
    if loss >= t.daily_loss_critical_pct:
        alerts.append(_alert("daily_loss", AlertLevel.CRITICAL, f"daily PnL {snapshot.daily_pnl_pct:.2f}%"))
    elif loss >= t.daily_loss_warning_pct:
        alerts.append(_alert("daily_loss", AlertLevel.WARNING, f"daily PnL {snapshot.daily_pnl_pct:.2f}%"))

    rate = snapshot.error_rate_pct
    if rate >= t.error_rate_critical_pct:
        alerts.append(_alert("error_rate", AlertLevel.CRITICAL, f"error rate {rate:.1f}%"))
    elif rate >= t.error_rate_warning_pct:
        alerts.append(_alert("error_rate", AlertLevel.WARNING, f"error rate {rate:.1f}%"))

    count = snapshot.open_positions
    if count >= t.position_count_critical:
        alerts.append(_alert("position_count", AlertLevel.CRITICAL, f"{count} open positions"))
    elif count >= t.position_count_warning:
        alerts.append(_alert("position_count", AlertLevel.WARNING, f"{count} open positions"))

    age = snapshot.market_data_age_seconds
    if age is None:
        alerts.append(
            _alert("market_data", AlertLevel.CRITICAL, "no market data received for a traded symbol")
        )
    elif age >= t.market_data_down_critical_seconds:
        alerts.append(_alert("market_data", AlertLevel.CRITICAL, f"market data {age / 60:.1f} min old"))
    elif age >= t.market_data_down_warning_seconds:
        alerts.append(_alert("market_data", AlertLevel.WARNING, f"market data {age / 60:.1f} min old"))

    down = snapshot.websocket_down_seconds
    if down is not None and down >= t.websocket_down_warning_seconds:
        level = AlertLevel.CRITICAL if down >= t.websocket_down_critical_seconds else AlertLevel.WARNING
        text = f"WebSocket feed down for {down / 60:.1f} min (quotes from REST)"
        alerts.append(_alert("websocket", level, text))
    return alerts


def _alert(name: str, level: AlertLevel, message: str) -> Alert:
    return Alert(name, level, message)
