"""Checkpoints around the trading loop: when the loop takes one, and off the loop.

``CheckpointScheduler`` is the loop's side of ``bot_v2.state.checkpoint``. After a cycle (its state batch
flushed, its latency already measured) ``start_if_due`` STARTS the periodic checkpoint as a background task when
``checkpoint_interval_seconds`` have passed since the newest stored checkpoint, and returns at once: a slow
PostgreSQL or S3 never stalls a cycle, so the kill switch and every guard keep acting within one cycle. At most
one checkpoint runs at a time (while one runs, none is started; an awaited ``take`` cancels it first).

A checkpoint is a backup (WARM is the durable copy), so a failure or a timeout is a WARNING, a
``checkpoint_failed`` event and a metric, never a stop of trading; the next attempt waits ``retry_seconds``.
Being fenced is different: a newer lease holder owns the state. That is logged as an ERROR, no checkpoint is
tried again, and ``on_fenced`` (the lease keeper, which stops the loop) is told at once; without one, the loop
learns it at its next state write, which the store refuses the same way.

``_Lifecycle.shutdown`` cancels a periodic checkpoint still running (``stop``) and, after a clean stop, takes
the "shutdown" checkpoint and waits for it (after the final flush: a consistent image without the running
marker).

A restore must not run under a live bot: ``--restore-checkpoint`` takes the bot id's lease for that
(``orchestration/lease.py``), which a running bot holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from bot_v2.errors import FencedError
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.concurrency import cancel_and_wait
from bot_v2.state import CheckpointInfo, checkpoint_due

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointScheduler",
    "CheckpointSource",
    "checkpoint_event_fields",
]

#: Longest an awaited checkpoint (at shutdown) may take: a hanging COLD upload must not hold up the exit.
CHECKPOINT_TIMEOUT_SECONDS = 30.0
#: Longest a background checkpoint may run before it is abandoned as failed, so the next one can start.
BACKGROUND_TIMEOUT_SECONDS = 120.0
#: After a failed checkpoint, the next attempt waits this long (or the interval, if shorter).
CHECKPOINT_RETRY_SECONDS = 60.0

OnFenced = Callable[[str], Awaitable[None]]


class CheckpointSource(Protocol):
    """The part of ``StateManager.checkpoints`` the loop uses (unit tests pass a small fake)."""

    async def create_checkpoint(self, reason: str, *, background: bool = False) -> CheckpointInfo: ...

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
    """Takes the loop's periodic checkpoints in the background and the shutdown one awaited; never raises for
    a failed one."""

    def __init__(
        self,
        store: CheckpointSource,
        *,
        interval_seconds: float,
        events: EventStore,
        metrics: BotMetrics,
        timeout_seconds: float = CHECKPOINT_TIMEOUT_SECONDS,
        background_timeout_seconds: float = BACKGROUND_TIMEOUT_SECONDS,
        retry_seconds: float = CHECKPOINT_RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.interval_seconds = interval_seconds
        self.events = events
        self.metrics = metrics
        self.timeout_seconds = timeout_seconds
        self.background_timeout_seconds = background_timeout_seconds
        self.retry_seconds = min(retry_seconds, interval_seconds)
        self.last_at: datetime | None = None  # created_at of the newest checkpoint known
        self.failed_at: datetime | None = None  # the last attempt, when it failed
        self.fenced: str | None = None  # why the store refused: a newer lease holder owns the state
        self.taken = 0
        self.failed = 0
        self._task: asyncio.Task[CheckpointInfo | None] | None = None

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
        if self.fenced is not None:
            return False
        if self.failed_at is not None and not checkpoint_due(self.failed_at, now, self.retry_seconds):
            return False
        return checkpoint_due(self.last_at, now, self.interval_seconds)

    @property
    def running(self) -> bool:
        """Whether a background checkpoint is in progress."""
        return self._task is not None and not self._task.done()

    def start_if_due(self, now: datetime, *, on_fenced: OnFenced | None = None) -> bool:
        """Start the periodic checkpoint as a background task if it is due and none is running; return whether
        one started. Never waits for it. ``on_fenced`` is awaited with the reason if the store refuses it
        because a newer lease holder exists."""
        if self.running or not self.due(now):
            return False
        self._task = asyncio.get_running_loop().create_task(
            self._attempt("interval", now, self.background_timeout_seconds, on_fenced, background=True),
            name="checkpoint-interval",
        )
        return True

    async def wait(self) -> CheckpointInfo | None:
        """Wait for the background checkpoint in progress (None: none, or it failed)."""
        task = self._task
        if task is None:
            return None
        return await asyncio.shield(task)

    async def stop(self) -> None:
        """Cancel a background checkpoint still running and wait until it has ended. Safe to call twice."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        await cancel_and_wait(task)
        logger.info("checkpoint: the periodic checkpoint in progress was cancelled")

    async def take(self, reason: str, now: datetime) -> CheckpointInfo | None:
        """Take one checkpoint now and wait for it (a background one in progress is cancelled first: never two
        at once). A failure is logged, recorded as an event and a metric, and returns None."""
        await self.stop()
        if self.fenced is not None:
            logger.info("checkpoint (%s) not taken: %s", reason, self.fenced)
            return None
        return await self._attempt(reason, now, self.timeout_seconds, None, background=False)

    async def _attempt(
        self,
        reason: str,
        now: datetime,
        limit_seconds: float,
        on_fenced: OnFenced | None,
        *,
        background: bool,
    ) -> CheckpointInfo | None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit_seconds):
                info = await self.store.create_checkpoint(reason, background=background)
        except FencedError as exc:  # not a backup failure: this process no longer owns the state
            await self._failed(reason, now, started, exc, fenced=True)
            if on_fenced is not None:
                await on_fenced(f"checkpoint ({reason}) refused: {exc.one_line()}")
            return None
        except Exception as exc:  # a backup must never stop trading; CancelledError is not caught
            await self._failed(reason, now, started, exc, fenced=False)
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

    async def _failed(
        self, reason: str, now: datetime, started: float, exc: Exception, *, fenced: bool
    ) -> None:
        elapsed = time.perf_counter() - started
        self.failed += 1
        self.failed_at = now
        self.metrics.checkpoints.labels(outcome="failed").inc()
        text = _text(exc)
        if fenced:
            self.fenced = text
            logger.error(
                "checkpoint (%s) refused after %.3fs: %s -- a newer lease holder owns the state; "
                "no more checkpoints from this process",
                reason,
                elapsed,
                text,
            )
        else:
            logger.warning(
                "checkpoint (%s) failed after %.3fs: %s; trading continues, next attempt in %.0fs",
                reason,
                elapsed,
                text,
                self.retry_seconds,
                exc_info=not hasattr(exc, "one_line"),  # unexpected: the traceback goes to the log file
            )
        fields: dict[str, Any] = {"fenced": True} if fenced else {}
        await self.events.emit(
            EventType.CHECKPOINT_FAILED,
            now,
            reason=reason,
            error=text,
            duration_seconds=round(elapsed, 6),
            **fields,
        )


def _text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "TimeoutError: took too long"
    one_line = getattr(exc, "one_line", None)
    return str(one_line()) if callable(one_line) else f"{type(exc).__name__}: {' '.join(str(exc).split())}"
