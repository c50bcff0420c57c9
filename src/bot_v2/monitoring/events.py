"""The event store: one JSON object per line in ``events.jsonl`` (``settings.events_path``).

Every decision, order, fill, guard trip, trading-state transition, recovery and checkpoint is appended with a UTC-aware
ISO timestamp. Appends are small and flushed at once; events that matter after a crash (transitions,
recoveries, halts) are also fsync'd, in a worker thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

__all__ = ["EventStore", "EventType", "encode_event", "read_events"]


class EventType(enum.StrEnum):
    """Every kind of event the bot records."""

    BOT_STARTED = "bot_started"
    BOT_STOPPED = "bot_stopped"
    DECISION = "decision"
    ORDER_INTENT = "order_intent"
    ORDER_PLACED = "order_placed"
    ORDER_UPDATED = "order_updated"
    ORDER_DENIED = "order_denied"
    ORDER_FAILED = "order_failed"
    ORDER_CANCELLED = "order_cancelled"
    FILL = "fill"
    GUARD_TRIP = "guard_trip"
    STATE_TRANSITION = "state_transition"
    CONTROL_APPLIED = "control_applied"
    CONTROL_REJECTED = "control_rejected"
    RECOVERY = "recovery"
    TIER_DEGRADED = "tier_degraded"
    ALERT = "alert"
    ALERT_CLEARED = "alert_cleared"
    RECONCILIATION = "reconciliation"
    INTENT_UNKNOWN = "intent_unknown"  # no answer / not found yet: looked up again within the grace window
    INTENT_FAILED = "intent_failed"  # not found at the exchange within the grace window
    WARM_START = "warm_start"
    CYCLE_ERROR = "cycle_error"
    CHECKPOINT = "checkpoint"
    CHECKPOINT_FAILED = "checkpoint_failed"
    CHECKPOINT_RESTORED = "checkpoint_restored"
    # kind: acquired | takeover | released | renew_failed | renewed_again | watchdog | fenced | step_down (source)
    LEASE = "lease"
    HISTORY_ARCHIVED = "history_archived"  # terminal history moved to COLD (ok=False: the run failed)
    WS_CONNECTED = "ws_connected"  # the market data feed is healthy again (quotes from memory)
    WS_DISCONNECTED = "ws_disconnected"  # the feed dropped (gap, stale, closed ...): REST quotes meanwhile


#: Event types fsync'd on write: the ones an operator needs after a crash.
IMPORTANT_EVENTS: frozenset[EventType] = frozenset(
    {
        EventType.STATE_TRANSITION,
        EventType.RECOVERY,
        EventType.TIER_DEGRADED,
        EventType.ALERT,
        EventType.RECONCILIATION,
        EventType.INTENT_FAILED,
        EventType.CONTROL_APPLIED,
        EventType.CONTROL_REJECTED,
        EventType.BOT_STOPPED,
        EventType.CHECKPOINT_FAILED,
        EventType.CHECKPOINT_RESTORED,
        EventType.LEASE,
        EventType.WS_DISCONNECTED,
    }
)


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} in an event")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"cannot encode {type(value).__name__} in an event")


def encode_event(event_type: EventType, time: datetime, fields: Mapping[str, Any]) -> str:
    """Return one JSON line (no newline) for the event."""
    record: dict[str, Any] = {"ts": time, "type": event_type.value}
    record.update(fields)
    return json.dumps(record, default=_default, separators=(",", ":"), sort_keys=False)


class EventStore:
    """Append-only JSON-lines event log. ``emit`` never raises for I/O problems: it logs them (throttled)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._write_errors = 0
        self.counts: dict[EventType, int] = {}

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        return self._file

    def _write(self, line: str, sync: bool) -> None:
        with self._lock:
            handle = self._open()
            handle.write(line + "\n")
            handle.flush()
            if sync:
                os.fsync(handle.fileno())

    async def emit(self, event_type: EventType, time: datetime | None = None, **fields: Any) -> None:
        """Append one event; fsync it (in a thread) when it is an important one."""
        line = encode_event(event_type, time or datetime.now(UTC), fields)
        self.counts[event_type] = self.counts.get(event_type, 0) + 1
        try:
            if event_type in IMPORTANT_EVENTS:
                await asyncio.to_thread(self._write, line, True)
            else:
                self._write(line, False)
        except OSError as exc:
            self._write_errors += 1
            if self._write_errors == 1 or self._write_errors % 100 == 0:
                logger.error(
                    "event store %s: write failed (%s), %d failures", self.path, exc, self._write_errors
                )

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
                self._file.close()
                self._file = None


def read_events(path: Path, event_type: EventType | str | None = None) -> list[dict[str, Any]]:
    """Read the events back (for tests, the dashboard and drills); skip a torn last line."""
    if not path.exists():
        return []
    wanted = None if event_type is None else str(event_type)
    events: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if wanted is None or record.get("type") == wanted:
            events.append(record)
    return events
