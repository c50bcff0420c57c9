"""TierWatcher: each state-tier outage and recovery is reported once, as events and metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot_v2.monitoring.events import EventStore
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.tierwatch import TierWatcher
from bot_v2.state import StateHealth
from bot_v2.state.models import ColdRecovery, ColdState, HotRecovery, HotState

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _health(
    hot: HotState = HotState.UP, recoveries: int = 0, cold: ColdState = ColdState.UP, cold_recoveries: int = 0
) -> StateHealth:
    hot_recovery = HotRecovery(T0, T0 + timedelta(seconds=3), 0.02, 40, 2, 42, 1, 0) if recoveries else None
    cold_recovery = ColdRecovery(T0, T0 + timedelta(seconds=9), 0.5, 6, 4096) if cold_recoveries else None
    return StateHealth(
        hot_state=hot,
        hot_down_since=T0 if hot is not HotState.UP else None,
        last_hot_error="ConnectionError" if hot is not HotState.UP else None,
        dirty_keys=0,
        next_probe_in_seconds=None,
        hot_repaired_at_start=0,
        hot_recoveries=recoveries,
        last_hot_recovery=hot_recovery,
        cold_state=cold,
        cold_recoveries=cold_recoveries,
        last_cold_recovery=cold_recovery,
    )


async def test_outage_and_recovery_are_reported_once(tmp_path: Path) -> None:
    events = EventStore(tmp_path / "events.jsonl")
    metrics = BotMetrics()
    watcher = TierWatcher(events, metrics)
    try:
        await watcher.observe(_health(), T0)
        await watcher.observe(_health(HotState.DEGRADED), T0)
        await watcher.observe(_health(HotState.DEGRADED), T0)  # still down: no second event
        assert metrics.state_tier_degraded.labels(tier="hot")._value.get() == 1
        await watcher.observe(_health(HotState.UP, recoveries=1), T0)
        await watcher.observe(_health(HotState.UP, recoveries=1), T0)  # same recovery: reported once
        await watcher.observe(_health(cold=ColdState.DEGRADED, recoveries=1), T0)
        await watcher.observe(_health(recoveries=1, cold_recoveries=1), T0)
    finally:
        events.close()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["type"], e.get("tier") or e.get("kind")) for e in lines] == [
        ("tier_degraded", "hot"),
        ("recovery", "hot_tier"),
        ("tier_degraded", "cold"),
        ("recovery", "cold_tier"),
    ]
    hot = lines[1]
    assert hot["keys_moved"] == 42 and hot["coherent"] is True and hot["outage_seconds"] == 3.0
    assert metrics.state_tier_degraded.labels(tier="hot")._value.get() == 0
    assert metrics.state_recoveries.labels(tier="cold")._value.get() == 1


async def test_recoveries_before_the_run_are_not_news(tmp_path: Path) -> None:
    events = EventStore(tmp_path / "events.jsonl")
    watcher = TierWatcher(events, BotMetrics())
    try:
        await watcher.observe(_health(recoveries=3), T0)
    finally:
        events.close()
    path = tmp_path / "events.jsonl"
    assert not path.exists() or path.read_text().strip() == ""
