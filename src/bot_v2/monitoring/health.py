"""``health.json``: the bot's liveness file (``settings.health_path``), written atomically each cycle.

Like arq's health key: a small record an operator, the dashboard or a supervisor can read without talking to
the bot. Written to a temporary file, fsync'd and renamed over the old one: a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["HealthStatus", "read_health", "write_health", "write_health_async"]


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """What ``health.json`` says."""

    ok: bool
    timestamp: datetime
    message: str
    trading_state: str
    last_cycle: int
    last_cycle_at: datetime | None = None
    last_cycle_ms: float | None = None
    pid: int | None = None
    bot_id: str | None = None
    #: the reason codes behind ``ok: false`` (HALTED, or REDUCE_ONLY by a latch: ``risk.unhealthy_reasons``)
    reasons: tuple[str, ...] = ()
    config_hash: str | None = None  # the effective configuration's hash (``config/hashing.py``)
    market_data: Mapping[str, Any] | None = None  # the WebSocket feed's health (None: no feed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "timestamp": self.timestamp.astimezone(UTC).isoformat(),
            "message": self.message,
            "trading_state": self.trading_state,
            "last_cycle": self.last_cycle,
            "last_cycle_at": self.last_cycle_at.astimezone(UTC).isoformat() if self.last_cycle_at else None,
            "last_cycle_ms": self.last_cycle_ms,
            "pid": self.pid,
            "bot_id": self.bot_id,
            "reasons": list(self.reasons),
            "config_hash": self.config_hash,
            **({"market_data": dict(self.market_data)} if self.market_data is not None else {}),
        }


def write_health(path: Path, status: HealthStatus) -> None:
    """Write ``status`` to ``path`` atomically (tmp + fsync + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(status.to_dict(), indent=2, sort_keys=True)
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


async def write_health_async(path: Path, status: HealthStatus) -> None:
    """``write_health`` in a worker thread (the fsync must not block the loop)."""
    await asyncio.to_thread(write_health, path, status)


def read_health(path: Path) -> dict[str, Any]:
    """Read ``health.json`` back as a dict."""
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result
