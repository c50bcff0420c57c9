"""Telling a hung PostgreSQL from a slow one, so only a hung one becomes an outage.

Every WARM operation has a bound (``PostgresWarmTier._conn``: the command timeout plus a little per row). A
bound alone cannot tell a server that stopped answering (SIGSTOP, a partition) from one that answers slowly (a
10,000-row batch on a loaded machine, a lock wait) or from a bot whose own event loop was paused (a long GC, a
SIGSTOP of the bot, a starved CPU): in the last two cases the answer is on its way or already in the socket,
and terminating the connection turns a healthy server into an outage (the journal, reduce-only mode, a
restore).

So each operation is watched by an ``OperationWatch``: half-way through its bound it asks ``Liveness`` (one
``SELECT 1`` on a connection of its own, shared by every operation in flight, at most one at a time) whether the
server answers. At the bound it judges: the server answered -> the operation gets another bound, up to
``SLOW_LIMIT_FACTOR`` bounds in all; the server did not answer within its half-bound -> the connection is
terminated (a hung server is still detected at the bound, as before). A watchdog that fires late because the
bot's loop was paused gives the liveness query its half-bound first, measured from when it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

# An operation on a server that keeps answering gets at most this many bounds (a lock wait, a huge batch
# on a loaded machine); past that the caller gets StateUnavailableError as for a hung server, so a cycle is
# never held for long by a single statement.
SLOW_LIMIT_FACTOR = 5
MIN_SLOW_LIMIT_SECONDS = 1.0


class Liveness:
    """``SELECT 1`` on a dedicated connection, bounded by ``timeout``; one query in flight at a time, and an
    answer younger than ``fresh`` seconds is reused."""

    def __init__(self, connect: Callable[[], Awaitable[Any]], timeout: float) -> None:
        self._connect = connect
        self._timeout = timeout
        self._fresh = timeout / 2
        self._conn: Any = None
        self._task: asyncio.Task[bool] | None = None
        self._answered_at = float("-inf")
        self.queries = 0

    def probe(self) -> asyncio.Task[bool]:
        """The task answering "does the server answer?" (started now, or the one in flight / fresh)."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is not None and (not task.done() or loop.time() - self._answered_at < self._fresh):
            return task
        self._task = loop.create_task(self._query())
        return self._task

    async def _query(self) -> bool:
        self.queries += 1
        try:
            async with asyncio.timeout(self._timeout):
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self._connect()
                await self._conn.fetchval("SELECT 1")
            return True
        except Exception:  # whatever the failure, the server did not answer
            self._drop()
            return False
        finally:
            self._answered_at = asyncio.get_running_loop().time()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():  # close() itself was cancelled: never swallow that
                    self._drop()
                    raise
        self._drop()


class OperationWatch:
    """Watches one operation on ``conn`` (see the module docstring); ``expired`` once it terminated it.
    ``extend=False``: no more time however the server answers (bulk operations, whose bound is already long)."""

    def __init__(self, liveness: Liveness, conn: Any, bound: float, *, extend: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self._liveness = liveness
        self._conn = conn
        self._bound = bound
        slow_limit = max(bound * SLOW_LIMIT_FACTOR, MIN_SLOW_LIMIT_SECONDS) if extend else bound
        self._give_up_at = self._loop.time() + slow_limit
        self._probe: asyncio.Task[bool] | None = None
        self._probe_sent = 0.0
        self._handles: list[asyncio.TimerHandle] = []
        self.expired = False
        self.extensions = 0
        self._arm(self._loop.time())

    def _arm(self, start: float) -> None:
        self._probe = None
        self._handles = [
            self._loop.call_at(start + self._bound / 2, self._ask),
            self._loop.call_at(start + self._bound, self._judge),
        ]

    def _ask(self) -> None:
        if self._probe is None:
            self._probe = self._liveness.probe()
            self._probe_sent = self._loop.time()

    def _judge(self) -> None:
        now = self._loop.time()
        self._ask()
        probe = self._probe
        assert probe is not None
        if not probe.done() and now < self._probe_sent + self._bound / 2:
            # our loop was late (paused): give the liveness query its half-bound before judging
            self._handles = [self._loop.call_at(self._probe_sent + self._bound / 2, self._judge)]
            return
        alive = probe.done() and not probe.cancelled() and probe.result()
        if alive and now + self._bound <= self._give_up_at:
            self.extensions += 1
            self._arm(now)
            return
        self.expired = True
        self._conn.terminate()

    def cancel(self) -> None:
        for handle in self._handles:
            handle.cancel()
