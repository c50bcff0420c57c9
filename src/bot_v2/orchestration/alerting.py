"""Runbook alerts, evaluated by the running loop: daily loss, error rate, open positions, market data age,
WebSocket down.

After every cycle (also after a failed one) the loop measures the same quantities the dashboard shows
(``RiskEngine.alert_snapshot`` on the last good snapshot, the error rate over the recent cycles) and hands the
raised alerts to ``AlertWatcher``: an ``alert`` event and a WARNING/ERROR log line when an alert is raised or
changes level, ``alert_cleared`` when it goes away, and the ``perps_bot_alert{name}`` gauge (0 ok, 1 warning,
2 critical) every cycle. Thresholds are the runbook's (``risk.AlertThresholds``).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from decimal import Decimal

from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.market import CycleOutcomes
from bot_v2.risk import (
    Alert,
    AlertLevel,
    AlertSnapshot,
    AlertThresholds,
    RiskEngine,
    RiskSnapshot,
    evaluate_alerts,
)

logger = logging.getLogger(__name__)

ALERT_NAMES = ("daily_loss", "error_rate", "open_positions", "market_data", "websocket")
_GAUGE = {AlertLevel.WARNING: 1, AlertLevel.CRITICAL: 2}


def current_alerts(
    risk: RiskEngine,
    snapshot: RiskSnapshot | None,
    outcomes: CycleOutcomes,
    now: datetime,
    thresholds: AlertThresholds | None = None,
    websocket_down_seconds: float | None = None,
) -> list[Alert]:
    """The alerts raised now; before the first good snapshot only the error rate (and the feed) can be judged.

    ``websocket_down_seconds``: how long the market data feed has been down (None: no feed configured)."""
    error_rate = Decimal(outcomes.errors) / Decimal(outcomes.cycles) * 100 if outcomes.cycles else Decimal(0)
    if snapshot is None:
        measured = AlertSnapshot(Decimal(0), error_rate, 0, 0.0)
    else:
        measured = dataclasses.replace(risk.alert_snapshot(snapshot, now), error_rate_pct=error_rate)
    measured = dataclasses.replace(measured, websocket_down_seconds=websocket_down_seconds)
    return evaluate_alerts(measured, thresholds)


class AlertWatcher:
    """Reports each alert when it is raised, changes level, or clears -- not every cycle."""

    def __init__(self, events: EventStore, metrics: BotMetrics) -> None:
        self.events = events
        self.metrics = metrics
        self._active: dict[str, AlertLevel] = {}

    async def observe(self, alerts: list[Alert], now: datetime) -> None:
        raised = {alert.name: alert for alert in alerts}
        for name in ALERT_NAMES:
            alert = raised.get(name)
            self.metrics.alerts.labels(name=name).set(_GAUGE[alert.level] if alert else 0)
        for name, alert in raised.items():
            if self._active.get(name) is alert.level:
                continue
            self._active[name] = alert.level
            log = logger.error if alert.level is AlertLevel.CRITICAL else logger.warning
            log("alert %s %s: %s", alert.level.value, name, alert.message)
            await self.events.emit(EventType.ALERT, now, **alert.to_dict())
        for name in [n for n in self._active if n not in raised]:
            level = self._active.pop(name)
            logger.info("alert cleared: %s (was %s)", name, level.value)
            await self.events.emit(EventType.ALERT_CLEARED, now, name=name, was=level.value)
