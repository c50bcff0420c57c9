"""Small helpers for tests: poll instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Call ``check`` until it returns a truthy value or stops raising AssertionError; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            last: BaseException | None = AssertionError(f"{check!r} returned {result!r}")
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s") from last
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.05
) -> T:
    """Async twin of :func:`eventually`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await check()
            if result:
                return result
            last: BaseException | None = AssertionError(f"{check!r} returned {result!r}")
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s") from last
        await asyncio.sleep(interval)
