"""How a checkpoint shares the event loop with the trading loop it runs beside.

A background checkpoint does its CPU work on the event loop in slices of about ``SLICE_SECONDS``; between
slices (and between snapshot pages) it yields, and while other tasks keep the loop busy (a trading cycle in
progress) it steps aside until the loop is quiet again. Python's cyclic garbage collector is paused while a
snapshot is in memory (``collector_paused``).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Records are checked and encoded in steps of this many; after each step the work yields to the event loop
#: once it has run ``SLICE_SECONDS`` (a trading cycle waits at most about that long for it at an await).
STEP_RECORDS = 32
SLICE_SECONDS = 0.0002
#: Other tasks used more CPU than this while the checkpoint yielded (a trading cycle is running): it steps
#: aside ``_BACKOFF_SECONDS`` at a time until the loop is free again.
_BUSY_SECONDS = 0.0001
_BACKOFF_SECONDS = 0.002
_MAX_ASIDE_SECONDS = 0.05
_FOREGROUND_POLL_SECONDS = 0.001  # how soon background work resumes after a cycle ends


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a snapshot is held in memory.

    The snapshot is tens of thousands of short-lived objects. Alive across many young collections, they would
    be promoted to the oldest generation and so bring on a full collection (tens of milliseconds with the
    event loop stopped, i.e. a stalled trading cycle) every few checkpoints. Paused, they are freed by
    reference counting when the checkpoint drops them and never reach the old generation. Nothing else is
    lost: garbage made meanwhile is collected once the collector runs again."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_foreground = 0  # trading cycles in progress in this process (``foreground``)


@contextmanager
def foreground() -> Iterator[None]:
    """Mark foreground work (a trading cycle): while it runs, background checkpoint work steps aside at its
    next ``step_aside``, for at most ``_MAX_ASIDE_SECONDS`` a step. Without it, a cycle waiting on a worker
    thread (SQLite's writer) looks like an idle loop, and the checkpoint's slices take the GIL from that
    thread (loop_bench --checkpoint, SQLite, 10,000 keys: cycle p99 during a checkpoint ~2.2x the quiet p99
    without the gate)."""
    global _foreground
    _foreground += 1
    try:
        yield
    finally:
        _foreground -= 1


async def step_aside() -> None:
    """Let the event loop run other tasks; while a trading cycle runs (``foreground``) or other tasks keep the
    loop busy, wait for a quiet moment, but not longer than ``_MAX_ASIDE_SECONDS`` (a loop that is never idle
    must not starve the checkpoint). The checkpoint is background work: it takes the loop's idle time, not the
    cycles' time. Busy is measured in this thread's CPU time, so being preempted by the OS does not count."""
    deadline = time.perf_counter() + _MAX_ASIDE_SECONDS
    # asyncio.sleep(0) lets other tasks run but keeps the GIL: a worker thread serving a trading cycle (the
    # SQLite writer) could wait for it until the interpreter forces a switch. time.sleep(0) hands it over.
    time.sleep(0)  # noqa: ASYNC251 -- a zero sleep: releases the GIL, never waits
    while True:
        if _foreground and time.perf_counter() < deadline:
            await asyncio.sleep(_FOREGROUND_POLL_SECONDS)
            continue
        started = time.thread_time()
        await asyncio.sleep(0)
        if time.thread_time() - started <= _BUSY_SECONDS or time.perf_counter() >= deadline:
            return
        await asyncio.sleep(_BACKOFF_SECONDS)


class Slicer:
    """Counts a slice of loop time: ``due`` once ``SLICE_SECONDS`` have passed since the last ``step_aside``."""

    def __init__(self) -> None:
        self._since = time.perf_counter()

    @property
    def due(self) -> bool:
        return time.perf_counter() - self._since >= SLICE_SECONDS

    async def step_aside(self) -> None:
        await step_aside()
        self._since = time.perf_counter()
