"""``task_group()``: an ``asyncio.TaskGroup`` whose failure is ONE exception the error policy can judge.

A TaskGroup raises an ``ExceptionGroup``; the loop's policy is written in terms of ``bot_v2.errors``
(retry / deny / halt). This unwraps the group and re-raises its most severe leaf: anything that is not a
``RetryableError`` (a halt, or an unexpected bug) beats a retryable one, so a halt is never downgraded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot_v2.errors import OrderDeniedError, RetryableError

__all__ = ["most_severe", "task_group"]


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


@asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """``async with task_group() as tg``: like ``asyncio.TaskGroup``, raising a single exception."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as errors:
        raise most_severe(errors) from None
