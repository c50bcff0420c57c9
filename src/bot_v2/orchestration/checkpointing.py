"""Checkpoints around the trading loop: when the loop takes one.

``CheckpointScheduler`` is the loop's side of ``bot_v2.state.checkpoint``: after a cycle (its state batch
flushed, its latency already measured) it takes one when ``checkpoint_interval_seconds`` have passed since the
newest stored checkpoint, and ``_Lifecycle.shutdown`` takes one after a clean stop. A checkpoint is a backup
(WARM is the durable copy), so a failure or a timeout is a WARNING, a ``checkpoint_failed`` event and a metric,
never a stop of trading; the next attempt waits ``retry_seconds``.

A restore must not run under a live bot: ``--restore-checkpoint`` takes the bot id's lease for that
(``orchestration/lease.py``), which a running bot holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, Protocol

from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.state import CheckpointInfo, checkpoint_due

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointScheduler",
    "CheckpointSource",
    "checkpoint_event_fields",
]

#: Longest a checkpoint may hold up the loop (a hanging COLD upload must not stall trading).
CHECKPOINT_TIMEOUT_SECONDS = 30.0
#: After a failed checkpoint, the next attempt waits this long (or the interval, if shorter).
CHECKPOINT_RETRY_SECONDS = 60.0


class CheckpointSource(Protocol):
    """The part of ``StateManager.checkpoints`` the loop uses (unit tests pass a small fake)."""

    async def create_checkpoint(self, reason: str) -> CheckpointInfo: ...

    async def list_checkpoints(self) -> list[CheckpointInfo]: ...


def checkpoint_event_fields(info: CheckpointInfo, duration_seconds: float) -> dict[str, Any]:
    """The fields of a ``checkpoint`` event (the loop's and the CLI's are the same)."""
    return {
        "checkpoint_id": info.checkpoint_id,
        "reason": info.reason,
        "keys": info.key_count,
        "raw_bytes": info.raw_bytes,
        "bytes": info.compressed_bytes,
        "sha256": info.sha256[:16],
        "duration_seconds": round(duration_seconds, 6),
    }


class CheckpointScheduler:
    """Takes the loop's periodic and shutdown checkpoints; never raises for a failed one."""

    def __init__(
        self,
        store: CheckpointSource,
        *,
        interval_seconds: float,
        events: EventStore,
        metrics: BotMetrics,
        timeout_seconds: float = CHECKPOINT_TIMEOUT_SECONDS,
        retry_seconds: float = CHECKPOINT_RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.interval_seconds = interval_seconds
        self.events = events
        self.metrics = metrics
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = min(retry_seconds, interval_seconds)
        self.last_at: datetime | None = None  # created_at of the newest checkpoint known
        self.failed_at: datetime | None = None  # the last attempt, when it failed
        self.taken = 0
        self.failed = 0

    async def load(self) -> None:
        """Start from the newest stored checkpoint, so a restart does not checkpoint again at once."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                stored = await self.store.list_checkpoints()
        except Exception as exc:  # listing is a convenience: without it the first cycle checkpoints
            logger.warning("checkpoints: cannot list the stored ones (%s); one is due now", _text(exc))
            return
        if stored:
            self.last_at = max(info.created_at for info in stored)

    def due(self, now: datetime) -> bool:
        """Whether the periodic checkpoint is due at ``now`` (a failed attempt defers it ``retry_seconds``)."""
        if self.failed_at is not None and not checkpoint_due(self.failed_at, now, self.retry_seconds):
            return False
        return checkpoint_due(self.last_at, now, self.interval_seconds)

    async def maybe_take(self, now: datetime) -> CheckpointInfo | None:
        """Take the periodic checkpoint if it is due; return it (None: not due, or it failed)."""
        if not self.due(now):
            return None
        return await self.take("interval", now)

    async def take(self, reason: str, now: datetime) -> CheckpointInfo | None:
        """Take one checkpoint now. A failure is logged, recorded as an event and a metric, and returns None."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                info = await self.store.create_checkpoint(reason)
        except Exception as exc:  # a backup must never stop trading; CancelledError is not caught
            elapsed = time.perf_counter() - started
            self.failed += 1
            self.failed_at = now
            self.metrics.checkpoints.labels(outcome="failed").inc()
            text = _text(exc)
            logger.warning(
                "checkpoint (%s) failed after %.3fs: %s; trading continues, next attempt in %.0fs",
                reason,
                elapsed,
                text,
                self.retry_seconds,
                exc_info=not hasattr(exc, "one_line"),  # unexpected: the traceback goes to the log file
            )
            await self.events.emit(
                EventType.CHECKPOINT_FAILED,
                now,
                reason=reason,
                error=text,
                duration_seconds=round(elapsed, 6),
            )
            return None
        elapsed = time.perf_counter() - started
        self.taken += 1
        self.failed_at = None
        self.last_at = info.created_at
        self.metrics.checkpoints.labels(outcome="ok").inc()
        self.metrics.checkpoint_seconds.observe(elapsed)
        self.metrics.last_checkpoint_timestamp.set(info.created_at.timestamp())
        await self.events.emit(EventType.CHECKPOINT, now, **checkpoint_event_fields(info, elapsed))
        return info


def _text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "TimeoutError: took too long"
    one_line = getattr(exc, "one_line", None)
    return str(one_line()) if callable(one_line) else f"{type(exc).__name__}: {' '.join(str(exc).split())}"


# --- is a bot running on this state? ------------------------------------------------------------------------
