"""Read the recent end of ``events.jsonl`` without reading the whole file.

The file only grows (one JSON object a line, in time order), so the events of the last N minutes are at its
end: read fixed-size blocks backwards from the end until an event older than the window start turns up, or a
byte budget is spent (then ``truncated`` says older events in the window were not read).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARD_EVENT_TYPES", "EventTail", "event_summary", "parse_event_time", "tail_events"]

BLOCK_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 4 * 1024 * 1024

#: What the dashboard's "recent events" panel shows (decisions and order updates are too chatty).
DASHBOARD_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "bot_started",
        "bot_stopped",
        "reconciliation",
        "recovery",
        "order_placed",
        "order_denied",
        "order_failed",
        "order_cancelled",
        "fill",
        "guard_trip",
        "state_transition",
        "control_applied",
        "control_rejected",
        "cycle_error",
    }
)


@dataclass(frozen=True, slots=True)
class EventTail:
    """Events at or after ``since``, oldest first. ``truncated``: the byte budget ended the read early."""

    events: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    bytes_read: int = 0
    malformed: int = 0
    missing: bool = False


def parse_event_time(record: Mapping[str, Any]) -> datetime | None:
    """The event's ``ts`` as an aware UTC datetime (None if absent or unreadable)."""
    raw = record.get("ts")
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def tail_events(
    path: Path,
    since: datetime,
    *,
    types: Collection[str] | None = None,
    limit: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    block_bytes: int = BLOCK_BYTES,
) -> EventTail:
    """Return the events of ``path`` with ``ts >= since`` (filtered by ``types``), oldest first.

    At most ``limit`` events are kept (the newest). A torn last line (a write in progress) and malformed
    lines are skipped (``malformed`` counts the latter).
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return EventTail(missing=True)
    newest_first: list[dict[str, Any]] = []
    malformed = 0
    truncated = False
    read = 0
    with handle:
        end = handle.seek(0, os.SEEK_END)
        position = end
        carry = b""
        first_block = True
        done = False
        while position > 0 and not done:
            if read >= max_bytes:
                truncated = True
                break
            size = min(block_bytes, position)
            position -= size
            handle.seek(position)
            chunk = handle.read(size) + carry
            read += size
            lines = chunk.split(b"\n")
            # lines[0] may be the tail of a line that starts in an earlier block: keep it for the next round
            carry = lines[0] if position > 0 else b""
            complete = lines[1:] if position > 0 else lines
            if first_block:
                first_block = False
                if complete and complete[-1] != b"":
                    complete = complete[:-1]  # no newline yet: a write in progress
            for raw in reversed(complete):
                record, bad = _parse(raw)
                malformed += bad
                if record is None:
                    continue
                ts = parse_event_time(record)
                if ts is not None and ts < since:
                    done = True
                    break
                if types is None or record.get("type") in types:
                    newest_first.append(record)
                    if limit is not None and len(newest_first) >= limit:
                        done = True
                        break
    newest_first.reverse()
    return EventTail(newest_first, truncated, read, malformed)


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, int]:
    text = raw.strip()
    if not text:
        return None, 0
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, 1
    return (record, 0) if isinstance(record, dict) else (None, 1)


def event_summary(record: Mapping[str, Any]) -> str:
    """One human line for an event (the dashboard's "what" column)."""
    kind = str(record.get("type", "?"))
    get = record.get
    if kind == "fill":
        fee = get("commission")
        return _join(
            get("side"), get("quantity"), get("symbol"), "@", get("price"), f"fee {fee}" if fee else None
        )
    if kind in {"order_placed", "order_cancelled", "order_failed"}:
        return _join(
            get("side"), get("quantity"), get("symbol"), get("status"), get("client_order_id"), get("error")
        )
    if kind == "order_denied":
        return _join(get("side"), get("quantity"), get("symbol"), "-", get("verdict"))
    if kind == "state_transition":
        cleared = " (cleared)" if get("cleared") else ""
        return f"{get('from_state')} -> {get('to_state')}: {get('reason')}{cleared} {get('detail') or ''}".strip()
    if kind == "guard_trip":
        return _join(get("reason"), "->", get("to_state"), get("detail"))
    if kind == "cycle_error":
        return _join(f"cycle {get('cycle')}", f"[{get('policy')}]", get("error"))
    if kind in {"control_applied", "control_rejected"}:
        fields = {k: v for k, v in record.items() if k not in {"ts", "type"}}
        return _join(*(f"{k}={_short(v)}" for k, v in fields.items()))
    if kind == "reconciliation":
        return _join(
            "coherent" if get("coherent") else "NOT coherent",
            "after unclean shutdown" if get("unclean_shutdown") else None,
            f"state {get('trading_state')}",
        )
    if kind == "bot_started":
        symbols = get("symbols")
        return _join(
            get("profile"), ",".join(symbols) if isinstance(symbols, list) else symbols, f"pid {get('pid')}"
        )
    if kind == "bot_stopped":
        return _join("clean" if get("clean") else "unclean", f"state {get('trading_state')}")
    fields = {k: v for k, v in record.items() if k not in {"ts", "type"}}
    return _join(*(f"{k}={_short(v)}" for k, v in list(fields.items())[:4]))


def _short(value: object, limit: int = 40) -> str:
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _join(*parts: object) -> str:
    return " ".join(str(p) for p in parts if p is not None and p != "")
