"""The loop's checkpoints (scheduling, failure handling) and the running-bot check of --restore-checkpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot_v2.config import BotSettings
from bot_v2.errors import StateUnavailableError
from bot_v2.monitoring.events import EventStore, EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.checkpointing import (
    CheckpointScheduler,
    CheckpointSource,
)
from bot_v2.orchestration.wiring import Runtime
from bot_v2.state import CheckpointInfo, StateManager
from tests.unit.orchestration.fakes import BTC, ScriptedStrategy


class FailingCheckpoints:
    """A checkpoint store stand-in whose ``create_checkpoint`` raises (or hangs with ``hang=True``)."""

    def __init__(self, error: Exception | None = None, hang: bool = False) -> None:
        self.error = error or StateUnavailableError("COLD: connection refused")
        self.hang = hang
        self.reasons: list[str] = []

    async def create_checkpoint(self, reason: str) -> CheckpointInfo:
        self.reasons.append(reason)
        if self.hang:
            await asyncio.Event().wait()
        raise self.error

    async def list_checkpoints(self) -> list[CheckpointInfo]:
        return []


class ObservingCheckpoints:
    """Delegates to the real store and records what state held when each checkpoint was taken."""

    def __init__(self, state: StateManager) -> None:
        self.state = state
        self.seen: list[tuple[str, object]] = []

    async def create_checkpoint(self, reason: str) -> CheckpointInfo:
        self.seen.append((reason, await self.state.get_state(keys.position_key(BTC))))
        return await self.state.checkpoints.create_checkpoint(reason)

    async def list_checkpoints(self) -> list[CheckpointInfo]:
        return await self.state.checkpoints.list_checkpoints()


def _sample(metrics: BotMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def events(settings: BotSettings) -> Iterator[EventStore]:
    store = EventStore(settings.events_path)
    yield store
    store.close()


def _scheduler(
    store: CheckpointSource, events: EventStore, metrics: BotMetrics, **kw: float
) -> CheckpointScheduler:
    return CheckpointScheduler(
        store, interval_seconds=kw.pop("interval_seconds", 300.0), events=events, metrics=metrics, **kw
    )


async def test_due_follows_the_newest_stored_checkpoint(events: EventStore, state: StateManager) -> None:
    metrics = BotMetrics()
    fresh = _scheduler(state.checkpoints, events, metrics)
    await fresh.load()
    now = datetime.now(UTC)
    assert fresh.last_at is None and fresh.due(now)  # never taken: due at once

    info = await fresh.take("interval", now)
    assert info is not None and fresh.last_at == info.created_at
    assert not fresh.due(info.created_at + timedelta(seconds=299))
    assert fresh.due(info.created_at + timedelta(seconds=300))

    # a restart primes itself from the stored checkpoint: no immediate re-checkpoint
    restarted = _scheduler(state.checkpoints, events, metrics)
    await restarted.load()
    assert restarted.last_at == info.created_at and not restarted.due(datetime.now(UTC))
    assert await restarted.maybe_take(datetime.now(UTC)) is None
    assert len(await state.checkpoints.list_checkpoints()) == 1


async def test_loop_checkpoints_after_the_cycle_batch_and_at_shutdown(
    runtime: Runtime, state: StateManager
) -> None:
    metrics = BotMetrics()
    observer = ObservingCheckpoints(state)
    summary = await run_bot(
        runtime, max_cycles=3, strategy=ScriptedStrategy(buy_on=[1]), metrics=metrics, checkpoints=observer
    )
    assert summary.cycles == 3 and summary.errors == []
    # cycle 1: due (none stored) -> after its batch (the position it traded is in state); cycles 2-3: not due
    assert [reason for reason, _ in observer.seen] == ["interval", "shutdown"]
    assert observer.seen[0][1]["quantity"] == Decimal("0.01")  # type: ignore[index]
    stored = await state.checkpoints.list_checkpoints()
    assert [i.reason for i in stored] == ["shutdown", "interval"]
    events = read_events(runtime.settings.events_path, EventType.CHECKPOINT)
    assert [e["checkpoint_id"] for e in events] == [i.checkpoint_id for i in reversed(stored)]
    assert events[0]["keys"] > 0 and events[0]["bytes"] > 0 and events[0]["duration_seconds"] >= 0
    assert _sample(metrics, "perps_bot_checkpoints_total", outcome="ok") == 2
    assert _sample(metrics, "perps_bot_checkpoint_seconds_count") == 2
    # a clean shutdown checkpoint carries no running marker
    restored = await state.checkpoints.restore_checkpoint("latest")
    assert restored.checkpoint_id == stored[0].checkpoint_id
    assert await state.get_state(keys.RUNNING_KEY) is None

    # the next start does not checkpoint at once: only its shutdown one
    again = await run_bot(runtime, max_cycles=2, strategy=ScriptedStrategy(buy_on=[]), metrics=metrics)
    assert again.cycles == 2
    assert [i.reason for i in await state.checkpoints.list_checkpoints()] == [
        "shutdown",
        "shutdown",
        "interval",
    ]


async def test_dev_fast_takes_only_the_shutdown_checkpoint(runtime: Runtime, state: StateManager) -> None:
    await run_bot(runtime, once=True, strategy=ScriptedStrategy(buy_on=[]), metrics=BotMetrics())
    assert [i.reason for i in await state.checkpoints.list_checkpoints()] == ["shutdown"]


async def test_a_failing_checkpoint_is_a_warning_and_trading_continues(runtime: Runtime) -> None:
    metrics = BotMetrics()
    failing = FailingCheckpoints()
    summary = await run_bot(
        runtime, max_cycles=4, strategy=ScriptedStrategy(buy_on=[2]), metrics=metrics, checkpoints=failing
    )
    assert summary.cycles == 4 and not summary.halted and summary.errors == []
    assert summary.orders_placed == 2  # cycle 2 traded after cycle 1's checkpoint failed
    # cycle 1 tried; cycles 2-3 wait the retry delay (60 s) instead of hammering a broken store; shutdown tries
    assert failing.reasons == ["interval", "shutdown"]
    failed = read_events(runtime.settings.events_path, EventType.CHECKPOINT_FAILED)
    assert [e["reason"] for e in failed] == ["interval", "shutdown"]
    assert "StateUnavailableError" in failed[0]["error"]
    assert read_events(runtime.settings.events_path, EventType.CHECKPOINT) == []
    assert _sample(metrics, "perps_bot_checkpoints_total", outcome="failed") == 2
    assert _sample(metrics, "perps_bot_checkpoint_seconds_count") == 0
    stopped = read_events(runtime.settings.events_path, EventType.BOT_STOPPED)
    assert stopped[-1]["clean"] is True


async def test_an_unexpected_error_or_a_hang_is_contained(settings: BotSettings, events: EventStore) -> None:
    metrics = BotMetrics()
    broken = _scheduler(FailingCheckpoints(RuntimeError("boom")), events, metrics)
    now = datetime.now(UTC)
    assert await broken.take("interval", now) is None
    assert (
        broken.failed == 1
        and not broken.due(now + timedelta(seconds=59))
        and broken.due(now + timedelta(seconds=60))
    )

    hanging = _scheduler(FailingCheckpoints(hang=True), events, metrics, timeout_seconds=0.05)
    assert await hanging.take("interval", now) is None
    errors = [e["error"] for e in read_events(settings.events_path, EventType.CHECKPOINT_FAILED)]
    assert errors == ["RuntimeError: boom", "TimeoutError: took too long"]
    assert _sample(metrics, "perps_bot_checkpoints_total", outcome="failed") == 2


async def test_retry_delay_never_exceeds_the_interval(events: EventStore) -> None:
    scheduler = _scheduler(FailingCheckpoints(), events, BotMetrics(), interval_seconds=5.0)
    now = datetime.now(UTC)
    await scheduler.maybe_take(now)
    assert not scheduler.due(now + timedelta(seconds=4)) and scheduler.due(now + timedelta(seconds=5))
