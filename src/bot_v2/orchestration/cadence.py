"""The loop cadence: cycles START every ``interval_seconds`` (not sleep-after-cycle), until stopped.

Like arq's poll loop: a cycle that overruns its slot makes the next one start at once and the missed slots are
skipped (counted in ``overruns``), so a slow exchange never makes the bot fire a burst of catch-up cycles.
Waiting between cycles is a wait on the stop event, so SIGINT/SIGTERM end the wait immediately.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Cadence", "CadenceStats", "wait_for_stop"]


@dataclass(slots=True)
class CadenceStats:
    cycles: int = 0
    overruns: int = 0


class Cadence:
    """Runs ``cycle(n)`` at fixed start-to-start intervals."""

    def __init__(
        self,
        interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[asyncio.Event, float], Awaitable[bool]] | None = None,
    ) -> None:
        """``clock`` and ``wait`` (stop event, seconds -> stopped?) are injectable for tests."""
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be positive, got {interval_seconds}")
        self.interval = interval_seconds
        self.clock = clock
        self.wait = wait or wait_for_stop
        self.stats = CadenceStats()

    async def run(
        self,
        cycle: Callable[[int], Awaitable[bool]],
        stop: asyncio.Event,
        max_cycles: int | None = None,
    ) -> CadenceStats:
        """Call ``cycle`` until ``stop`` is set, ``max_cycles`` ran, or ``cycle`` returns False."""
        next_start = self.clock()
        while not stop.is_set() and (max_cycles is None or self.stats.cycles < max_cycles):
            self.stats.cycles += 1
            keep_going = await cycle(self.stats.cycles)
            if not keep_going or (max_cycles is not None and self.stats.cycles >= max_cycles):
                break
            next_start += self.interval
            now = self.clock()
            if now > next_start:
                missed = int((now - next_start) // self.interval) + 1
                self.stats.overruns += missed
                next_start += missed * self.interval
                next_start = min(next_start, now)
            delay = max(0.0, next_start - now)
            if delay > 0 and await self.wait(stop, delay):
                break
        return self.stats


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``stop``; True when it was set."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True
