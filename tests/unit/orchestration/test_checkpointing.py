"""The loop's checkpoints: scheduling, off the loop (a slow one never holds up a cycle or the kill switch), at
most one at a time, cancelled at shutdown, failure handling, fencing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot_v2.config import BotSettings
from bot_v2.config.settings import LeaseSettings
from bot_v2.errors import FencedError, StateUnavailableError
from bot_v2.monitoring.events import EventStore, EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.checkpointing import (
    CheckpointScheduler,
    CheckpointSource,
)
from bot_v2.orchestration.controls import set_operator_control
from bot_v2.orchestration.lease import LeaseKeeper, new_claim
from bot_v2.orchestration.wiring import Runtime
from bot_v2.state import CheckpointInfo, StateManager
from tests.helpers import eventually_async
from tests.unit.orchestration.fakes import BTC, FakeBroker, ScriptedStrategy


class FailingCheckpoints:
    """A checkpoint store stand-in whose ``create_checkpoint`` raises (or hangs with ``hang=True``)."""

    def __init__(self, error: Exception | None = None, hang: bool = False) -> None:
        self.error = error or StateUnavailableError("COLD: connection refused")
        self.hang = hang
        self.reasons: list[str] = []

    async def create_checkpoint(self, reason: str, *, background: bool = False) -> CheckpointInfo:
        self.reasons.append(reason)
        if self.hang:
            await asyncio.Event().wait()
        raise self.error

    async def list_checkpoints(self) -> list[CheckpointInfo]:
        return []


class BlockingCheckpoints:
    """The periodic ("interval") checkpoint blocks until ``release`` is set (a PostgreSQL or S3 that hangs);
    any other is delegated to the real store. Records whether the blocked one was cancelled."""

    def __init__(self, state: StateManager) -> None:
        self.state = state
        self.reasons: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False

    async def create_checkpoint(self, reason: str, *, background: bool = False) -> CheckpointInfo:
        self.reasons.append(reason)
        if reason == "interval":
            self.started.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return await self.state.checkpoints.create_checkpoint(reason, background=background)

    async def list_checkpoints(self) -> list[CheckpointInfo]:
        return await self.state.checkpoints.list_checkpoints()


class ObservingCheckpoints:
    """Delegates to the real store and records what state held when each checkpoint was taken."""

    def __init__(self, state: StateManager) -> None:
        self.state = state
        self.seen: list[tuple[str, object]] = []
        self.background: list[bool] = []

    async def create_checkpoint(self, reason: str, *, background: bool = False) -> CheckpointInfo:
        self.seen.append((reason, await self.state.get_state(keys.position_key(BTC))))
        self.background.append(background)
        return await self.state.checkpoints.create_checkpoint(reason, background=background)

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
    assert not restarted.start_if_due(datetime.now(UTC)) and not restarted.running
    assert await restarted.wait() is None
    assert len(await state.checkpoints.list_checkpoints()) == 1


async def test_loop_checkpoints_after_the_cycle_batch_and_at_shutdown(
    runtime: Runtime, state: StateManager
) -> None:
    metrics = BotMetrics()
    observer = ObservingCheckpoints(state)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_bot(
            runtime,
            stop_event=stop,
            strategy=ScriptedStrategy(buy_on=[1]),
            metrics=metrics,
            checkpoints=observer,
        )
    )
    try:
        # cycle 1: due (none stored) -> started after its batch, in the background; later cycles: not due
        await eventually_async(
            lambda: _async_true(_sample(metrics, "perps_bot_checkpoints_total", outcome="ok") == 1)
        )
    finally:
        stop.set()
        summary = await task
    assert summary.cycles >= 1 and summary.errors == []
    assert [reason for reason, _ in observer.seen] == ["interval", "shutdown"]
    assert observer.background == [True, False]  # the periodic one beside the loop, the shutdown one awaited
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
    assert scheduler.start_if_due(now)
    assert await scheduler.wait() is None and scheduler.failed == 1
    assert not scheduler.due(now + timedelta(seconds=4)) and scheduler.due(now + timedelta(seconds=5))


async def test_a_slow_checkpoint_never_holds_up_the_cycles_or_the_kill_switch(
    runtime: Runtime, broker: FakeBroker, state: StateManager
) -> None:
    metrics = BotMetrics()
    slow = BlockingCheckpoints(state)
    strategy = ScriptedStrategy(buy_on=range(1, 10_000))
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_bot(runtime, stop_event=stop, strategy=strategy, metrics=metrics, checkpoints=slow)
    )
    try:
        await asyncio.wait_for(slow.started.wait(), timeout=10)  # after cycle 1, and it hangs
        loop = asyncio.get_running_loop()
        calls, began = strategy.calls[BTC], loop.time()
        await eventually_async(lambda: _async_true(strategy.calls[BTC] >= calls + 5))
        interval = runtime.settings.interval_seconds
        assert loop.time() - began < 5 * interval + 2.0  # at their interval (not after the checkpoint)

        placed, calls = len(broker.placed), strategy.calls[BTC]
        await set_operator_control(state, kill_switch=True, reduce_only=None, source="test")
        await eventually_async(lambda: _async_true(strategy.calls[BTC] >= calls + 3))
        safety = await state.get_state(keys.SAFETY_KEY)
        assert safety is not None and safety["trading_state"] == "HALTED"
        # only the cycle in flight when the switch was set may still have sent its orders
        assert len(broker.placed) - placed <= len(runtime.settings.symbols)
        assert not slow.release.is_set() and slow.reasons == [
            "interval"
        ]  # all of it while the checkpoint hung
    finally:
        stop.set()
        summary = await task
    assert summary.trading_state == "HALTED" and summary.errors == []
    # shutdown cancelled the hanging one (not a failure), then took its own checkpoint after the final flush
    assert slow.cancelled and slow.reasons == ["interval", "shutdown"]
    assert [i.reason for i in await state.checkpoints.list_checkpoints()] == ["shutdown"]
    assert read_events(runtime.settings.events_path, EventType.CHECKPOINT_FAILED) == []
    assert _sample(metrics, "perps_bot_checkpoints_total", outcome="ok") == 1


async def test_never_two_at_once_and_stop_cancels_the_running_one(
    events: EventStore, state: StateManager
) -> None:
    metrics = BotMetrics()
    slow = BlockingCheckpoints(state)
    scheduler = _scheduler(slow, events, metrics)
    now = datetime.now(UTC)
    assert scheduler.start_if_due(now)
    await asyncio.wait_for(slow.started.wait(), timeout=10)
    assert scheduler.running and scheduler.due(now)
    assert not scheduler.start_if_due(now)  # due, but one is running
    assert slow.reasons == ["interval"]

    await scheduler.stop()
    assert slow.cancelled and not scheduler.running
    await scheduler.stop()  # twice is fine
    assert scheduler.failed == 0 and scheduler.due(now)  # cancelled is not failed: due again
    assert read_events(events.path, EventType.CHECKPOINT_FAILED) == []

    # an awaited checkpoint cancels a running background one first
    assert scheduler.start_if_due(now)
    slow.started.clear()
    await asyncio.wait_for(slow.started.wait(), timeout=10)
    info = await scheduler.take("shutdown", now)
    assert info is not None and info.reason == "shutdown" and not scheduler.running
    assert slow.reasons == ["interval", "interval", "shutdown"]
    assert [i.reason for i in await state.checkpoints.list_checkpoints()] == ["shutdown"]


class FencedCheckpoints(FailingCheckpoints):
    def __init__(self) -> None:
        super().__init__(FencedError("postgresql: store checkpoint of bot 'x' rejected: epoch 2 took over"))


async def test_a_fenced_checkpoint_is_an_error_and_tells_the_lease_keeper(
    settings: BotSettings, events: EventStore
) -> None:
    metrics = BotMetrics()
    store = FencedCheckpoints()
    scheduler = _scheduler(store, events, metrics)
    told: list[str] = []

    async def on_fenced(reason: str) -> None:
        told.append(reason)

    now = datetime.now(UTC)
    assert scheduler.start_if_due(now, on_fenced=on_fenced)
    assert await scheduler.wait() is None
    assert len(told) == 1 and "epoch 2 took over" in told[0]
    assert scheduler.fenced is not None and not scheduler.due(now + timedelta(days=1))
    assert await scheduler.take("shutdown", now) is None  # a fenced process writes nothing more
    assert store.reasons == ["interval"]
    failed = read_events(settings.events_path, EventType.CHECKPOINT_FAILED)
    assert len(failed) == 1 and failed[0]["fenced"] is True and "FencedError" in failed[0]["error"]
    assert _sample(metrics, "perps_bot_checkpoints_total", outcome="failed") == 1


async def test_the_real_store_refuses_a_replaced_writer_and_the_scheduler_says_so(
    settings: BotSettings, events: EventStore, state: StateManager
) -> None:
    fast = LeaseSettings(ttl_seconds=0.3, watchdog_seconds=0.5, submit_budget_seconds=0.1)
    first = LeaseKeeper(state, fast, new_claim(), bot_id=settings.bot_id)
    await first.acquire()
    await state.take_ownership(first.epoch)
    await LeaseKeeper(
        state, fast, new_claim("standby"), bot_id=settings.bot_id
    ).acquire()  # first stopped renewing
    scheduler = _scheduler(state.checkpoints, events, BotMetrics())
    told: list[str] = []

    async def on_fenced(reason: str) -> None:
        told.append(reason)

    assert scheduler.start_if_due(datetime.now(UTC), on_fenced=on_fenced)
    assert await scheduler.wait() is None
    assert scheduler.fenced is not None and "FencedError" in scheduler.fenced and len(told) == 1
    assert await state.checkpoints.list_checkpoints() == []  # the WARM insert committed nothing


async def test_a_fenced_background_checkpoint_stops_a_leased_run(
    runtime: Runtime, state: StateManager
) -> None:
    lease = LeaseKeeper(
        state,
        LeaseSettings(ttl_seconds=0.6, watchdog_seconds=5.0, submit_budget_seconds=0.1),
        new_claim(),
        bot_id=runtime.settings.bot_id,
        metrics=BotMetrics(),
    )
    await lease.acquire()
    await state.take_ownership(lease.epoch)
    store = FencedCheckpoints()
    summary = await asyncio.wait_for(
        run_bot(
            runtime,
            strategy=ScriptedStrategy(buy_on=[]),
            metrics=BotMetrics(),
            checkpoints=store,
            lease=lease,
        ),
        timeout=10,
    )
    assert lease.fenced and summary.fenced and summary.stopped_by == "fenced"
    assert store.reasons == ["interval"]  # no shutdown checkpoint from a fenced process


async def _async_true(value: bool) -> bool:
    return value
