"""The running loop's runbook alerts: raised, escalated and cleared once each, with events and a gauge."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bot_v2.domain import Quote
from bot_v2.monitoring.events import EventStore
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.alerting import AlertWatcher, current_alerts
from bot_v2.orchestration.market import CycleOutcomes
from bot_v2.risk import AlertLevel, RiskConfig, RiskEngine, RiskSnapshot
from tests.unit.orchestration.fakes import BTC, product

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _snapshot(quote_age_seconds: float) -> RiskSnapshot:
    time = NOW - timedelta(seconds=quote_age_seconds)
    return RiskSnapshot(
        equity_usd=Decimal(100_000),
        quotes={BTC: Quote(BTC, Decimal(49_999), Decimal(50_001), time)},
        products={BTC: product(BTC)},
        symbols=(BTC,),
    )


def test_market_data_age_and_error_rate_follow_the_runbook_thresholds() -> None:
    risk, outcomes = RiskEngine(RiskConfig()), CycleOutcomes()
    for ok in (True,) * 8 + (False,) * 2:
        outcomes.record(ok)
    fresh = {a.name: a.level for a in current_alerts(risk, _snapshot(1), outcomes, NOW)}
    assert fresh == {"error_rate": AlertLevel.WARNING}  # 20 % of the recent cycles failed
    stale = {a.name: a.level for a in current_alerts(risk, _snapshot(6 * 60), CycleOutcomes(), NOW)}
    assert stale == {"market_data": AlertLevel.WARNING}  # 5 min warning
    dead = {a.name: a.level for a in current_alerts(risk, _snapshot(16 * 60), CycleOutcomes(), NOW)}
    assert dead == {"market_data": AlertLevel.CRITICAL}  # 15 min critical
    assert current_alerts(risk, None, CycleOutcomes(), NOW) == []


def test_websocket_down_is_judged_from_the_feeds_down_time_even_before_a_snapshot() -> None:
    risk = RiskEngine(RiskConfig())

    def websocket(snapshot: RiskSnapshot | None, down: float | None) -> AlertLevel | None:
        alerts = current_alerts(risk, snapshot, CycleOutcomes(), NOW, websocket_down_seconds=down)
        return next((a.level for a in alerts if a.name == "websocket"), None)

    assert websocket(_snapshot(1), None) is None  # no feed configured
    assert websocket(_snapshot(1), 60.0) is None  # REST quotes meanwhile, under the runbook's 5 min
    assert websocket(_snapshot(1), 5 * 60) is AlertLevel.WARNING
    assert websocket(_snapshot(1), 15 * 60) is AlertLevel.CRITICAL
    assert websocket(None, 16 * 60) is AlertLevel.CRITICAL  # no good cycle yet: the feed is still judged


async def test_watcher_reports_changes_only(tmp_path: Path) -> None:
    events, metrics = EventStore(tmp_path / "events.jsonl"), BotMetrics()
    watcher = AlertWatcher(events, metrics)
    risk = RiskEngine(RiskConfig())
    try:
        for age in (1, 6 * 60, 7 * 60, 16 * 60, 1):
            await watcher.observe(current_alerts(risk, _snapshot(age), CycleOutcomes(), NOW), NOW)
            if age == 16 * 60:
                assert metrics.alerts.labels(name="market_data")._value.get() == 2
    finally:
        events.close()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["type"], e.get("level") or e.get("was")) for e in lines] == [
        ("alert", "WARNING"),
        ("alert", "CRITICAL"),
        ("alert_cleared", "CRITICAL"),
    ]
    assert metrics.alerts.labels(name="market_data")._value.get() == 0
