"""Event store, health file and metrics of the loop."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bot_v2.monitoring.events import EventStore, EventType, encode_event, read_events
from bot_v2.monitoring.health import HealthStatus, read_health, write_health
from bot_v2.monitoring.metrics import BotMetrics


async def test_events_are_json_lines_with_utc_timestamps(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e" / "events.jsonl")
    await store.emit(EventType.FILL, price=Decimal("1.5"), side="BUY")
    await store.emit(EventType.STATE_TRANSITION, datetime(2026, 1, 1, tzinfo=UTC), to_state="HALTED")
    store.close()
    events = read_events(tmp_path / "e" / "events.jsonl")
    assert [e["type"] for e in events] == ["fill", "state_transition"]
    assert events[0]["price"] == "1.5" and datetime.fromisoformat(events[0]["ts"]).tzinfo is not None
    assert events[1]["ts"] == "2026-01-01T00:00:00+00:00"
    assert read_events(tmp_path / "e" / "events.jsonl", EventType.FILL) == [events[0]]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        encode_event(EventType.FILL, datetime.now(UTC), {"at": datetime(2026, 1, 1)})


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"fill"}\n{"type":"fi')
    assert read_events(path) == [{"type": "fill"}]


def test_health_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    now = datetime.now(UTC)
    write_health(path, HealthStatus(True, now, "ok", "ACTIVE", 1))
    write_health(path, HealthStatus(False, now, "halted", "HALTED", 2, last_cycle_at=now))
    data = read_health(path)
    assert data["ok"] is False and data["trading_state"] == "HALTED" and data["last_cycle"] == 2
    assert list(tmp_path.iterdir()) == [path]
    json.loads(path.read_text())


def test_metrics_use_a_private_registry() -> None:
    first, second = BotMetrics(), BotMetrics()
    first.cycles.labels(outcome="ok").inc()
    first.set_trading_state("REDUCE_ONLY")
    assert first.registry.get_sample_value("perps_bot_cycles_total", {"outcome": "ok"}) == 1
    assert first.registry.get_sample_value("perps_bot_trading_state") == 1
    assert second.registry.get_sample_value("perps_bot_cycles_total", {"outcome": "ok"}) is None


def test_the_served_registry_names_the_bot_on_every_series() -> None:
    from prometheus_client import generate_latest

    from bot_v2.monitoring.labels import bot_registry

    metrics = BotMetrics()
    metrics.cycles.labels(outcome="ok").inc()
    metrics.set_trading_state("ACTIVE")
    metrics.cycle_seconds.observe(0.01)
    served = bot_registry("bot-7", metrics.registry)
    assert served.get_sample_value("perps_bot_cycles_total", {"bot_id": "bot-7", "outcome": "ok"}) == 1
    assert served.get_sample_value("perps_bot_trading_state", {"bot_id": "bot-7"}) == 0
    assert served.get_sample_value("perps_bot_cycle_seconds_count", {"bot_id": "bot-7"}) == 1
    text = generate_latest(served).decode()
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert series and all('bot_id="bot-7"' in line for line in series)
    assert 'perps_bot_cycles_total{bot_id="bot-7",outcome="ok"} 1.0' in text
