"""``task_group()``: an ``asyncio.TaskGroup`` whose failure is ONE exception the error policy can judge.

A TaskGroup raises an ``ExceptionGroup``; the loop's policy is written in terms of ``bot_v2.errors``
(retry / deny / halt). This unwraps the group and re-raises its most severe leaf: anything that is not a
``RetryableError`` (a halt, or an unexpected bug) beats a retryable one, so a halt is never downgraded.

``cancel_and_wait(task)``: how a background task (lease renewal, feed, checkpoint) is stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot_v2.errors import OrderDeniedError, RetryableError

__all__ = ["cancel_and_wait", "most_severe", "task_group"]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc)
        else:
            found.append(exc)
    return found


def _rank(exc: BaseException) -> int:
    if isinstance(exc, RetryableError):
        return 0
    if isinstance(exc, OrderDeniedError):
        return 1
    return 2


def most_severe(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The leaf exception the policy should act on (first of the highest severity)."""
    leaves = _leaves(group)
    return max(leaves, key=_rank) if leaves else group


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended (a task that already failed raises its error here).

    Its own ``CancelledError`` ends the wait; a cancellation of the caller while it waits propagates, never
    swallowed."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise


@asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """``async with task_group() as tg``: like ``asyncio.TaskGroup``, raising a single exception."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as errors:
        raise most_severe(errors) from None
