"""Tailing events.jsonl from its end: the window, the byte budget, torn and malformed lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot_v2.tools.eventlog import event_summary, tail_events

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def write_events(path: Path, count: int, *, step_s: int = 60, pad: int = 0) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            record = {"ts": (T0 + timedelta(seconds=i * step_s)).isoformat(), "type": "fill", "n": i}
            if pad:
                record["pad"] = "x" * pad
            handle.write(json.dumps(record) + "\n")


def test_only_the_window_is_returned_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 100)
    tail = tail_events(path, T0 + timedelta(minutes=90), block_bytes=256)
    assert [e["n"] for e in tail.events] == list(range(90, 100))
    assert not tail.truncated
    assert tail.bytes_read < path.stat().st_size  # stopped at the window start, not the file start


def test_byte_budget_stops_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 2000, step_s=0, pad=500)
    tail = tail_events(path, T0 - timedelta(days=1), max_bytes=64 * 1024, block_bytes=16 * 1024)
    assert tail.truncated
    assert tail.bytes_read <= 64 * 1024
    assert tail.events and tail.events[-1]["n"] == 1999


def test_torn_last_line_malformed_lines_types_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        json.dumps({"ts": T0.isoformat(), "type": "fill", "n": 1}),
        "not json",
        json.dumps({"ts": T0.isoformat(), "type": "decision", "n": 2}),
        json.dumps({"ts": T0.isoformat(), "type": "cycle_error", "n": 3}),
    ]
    path.write_text(
        "\n".join(lines) + "\n" + '{"ts": "2026-01-01T12:00:00+00:00", "type": "fi', encoding="utf-8"
    )
    tail = tail_events(path, T0 - timedelta(minutes=1), types={"fill", "cycle_error"})
    assert [e["n"] for e in tail.events] == [1, 3]
    assert tail.malformed == 1
    assert [e["n"] for e in tail_events(path, T0 - timedelta(minutes=1), limit=1).events] == [3]


def test_missing_file(tmp_path: Path) -> None:
    assert tail_events(tmp_path / "nope.jsonl", T0).missing


def test_event_summaries() -> None:
    fill = {"type": "fill", "side": "BUY", "quantity": "0.01", "symbol": "BTC-USD", "price": "65000"}
    assert event_summary(fill).startswith("BUY 0.01 BTC-USD @ 65000")
    transition = {
        "type": "state_transition",
        "from_state": "ACTIVE",
        "to_state": "HALTED",
        "reason": "KILL_SWITCH",
    }
    assert "ACTIVE -> HALTED: KILL_SWITCH" in event_summary(transition)
    error = {"type": "cycle_error", "cycle": 4, "policy": "retry", "error": "ExchangeUnavailableError: x"}
    assert event_summary(error) == "cycle 4 [retry] ExchangeUnavailableError: x"
