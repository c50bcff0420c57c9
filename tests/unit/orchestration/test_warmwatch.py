"""WarmWatcher: a PostgreSQL outage (writes journaled) and its replay are reported once, as events and metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot_v2.monitoring.events import EventStore
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.warmwatch import WarmWatcher
from bot_v2.state import HotState, StateHealth
from bot_v2.state.models import WarmRecovery, WarmState

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _health(state: WarmState = WarmState.UP, journal: int = 0, recoveries: int = 0) -> StateHealth:
    recovery = (
        WarmRecovery(T0, T0 + timedelta(seconds=4), 4.0, 0.05, 120, 100, 0, 1, True, "ckpt", 0.9)
        if recoveries
        else None
    )
    return StateHealth(
        hot_state=HotState.UP,
        hot_down_since=None,
        last_hot_error=None,
        dirty_keys=0,
        next_probe_in_seconds=None,
        hot_repaired_at_start=0,
        hot_recoveries=0,
        last_hot_recovery=None,
        warm_state=state,
        warm_down_since=T0 if state is not WarmState.UP else None,
        last_warm_error="refused" if state is not WarmState.UP else None,
        journal_records=journal,
        warm_recoveries=recoveries,
        last_warm_recovery=recovery,
    )


async def test_warm_outage_and_replay_are_reported_once(tmp_path: Path) -> None:
    events = EventStore(tmp_path / "events.jsonl")
    metrics = BotMetrics()
    watcher = WarmWatcher(events, metrics)
    try:
        await watcher.observe(_health(), T0)
        await watcher.observe(_health(WarmState.JOURNALING, 10), T0)
        await watcher.observe(_health(WarmState.JOURNALING, 120), T0)  # still down: no second event
        assert metrics.state_tier_degraded.labels(tier="warm")._value.get() == 1
        assert metrics.state_journal_records._value.get() == 120
        await watcher.observe(_health(recoveries=1), T0)
        await watcher.observe(_health(recoveries=1), T0)  # the same recovery: reported once
    finally:
        events.close()
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["type"], e.get("tier") or e.get("kind")) for e in lines] == [
        ("tier_degraded", "warm"),
        ("recovery", "warm_tier"),
    ]
    recovery = lines[1]
    assert recovery["keys_moved"] == 100 and recovery["database_lost"] is True
    assert recovery["data_loss_estimate"] == 0.9 and recovery["checkpoint_id"] == "ckpt"
    assert metrics.state_tier_degraded.labels(tier="warm")._value.get() == 0
    assert metrics.state_journal_records._value.get() == 0
    assert metrics.state_recoveries.labels(tier="warm")._value.get() == 1
