"""The cadence keeps start-to-start intervals, skips missed slots, and stops promptly."""

from __future__ import annotations

import asyncio

import pytest

from bot_v2.orchestration.cadence import Cadence, wait_for_stop


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []
        self.starts: list[float] = []

    def clock(self) -> float:
        return self.now

    async def wait(self, stop: asyncio.Event, seconds: float) -> bool:
        self.waits.append(round(seconds, 6))
        self.now += seconds
        return stop.is_set()


def _cycle(t: FakeTime, durations: list[float]) -> object:
    async def cycle(n: int) -> bool:
        t.starts.append(round(t.now, 6))
        t.now += durations[n - 1]
        return True

    return cycle


async def test_interval_is_between_starts_not_after_the_cycle() -> None:
    t = FakeTime()
    cadence = Cadence(1.0, clock=t.clock, wait=t.wait)
    stats = await cadence.run(_cycle(t, [0.3, 0.6, 0.1, 0.2]), asyncio.Event(), max_cycles=4)  # type: ignore[arg-type]
    assert stats.cycles == 4 and stats.overruns == 0
    assert t.starts == [100.0, 101.0, 102.0, 103.0]
    assert t.waits == [0.7, 0.4, 0.9]


async def test_an_overrun_starts_the_next_cycle_at_once_and_skips_missed_slots() -> None:
    t = FakeTime()
    cadence = Cadence(1.0, clock=t.clock, wait=t.wait)
    stats = await cadence.run(_cycle(t, [2.5, 0.1, 0.1]), asyncio.Event(), max_cycles=3)  # type: ignore[arg-type]
    assert t.starts == [100.0, 102.5, 103.5]
    assert stats.overruns == 2


async def test_a_cycle_returning_false_stops_the_loop() -> None:
    calls: list[int] = []

    async def cycle(n: int) -> bool:
        calls.append(n)
        return n < 2

    await Cadence(0.01).run(cycle, asyncio.Event())
    assert calls == [1, 2]


async def test_stop_event_ends_the_wait_immediately() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await wait_for_stop(stop, 60.0) is True
    assert await wait_for_stop(asyncio.Event(), 0.001) is False


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Cadence(0)
