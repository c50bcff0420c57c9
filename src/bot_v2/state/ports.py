"""What the parts of the state layer need from the ``StateManager`` they serve, as small ports.

``CheckpointStore`` reads a WARM snapshot on its own, but a restore writes back as one batch *of the
manager*: it must hold off the manager's other writes, cache what it wrote in HOT the way every batch does
(dirty keys while HOT is down), read COLD bodies the way reads do, refuse to write for a reader, and let the
manager re-publish ``system:s3_available`` afterwards. ``CheckpointHost`` is that, and nothing else: no lock
object, no private callbacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from bot_v2.state.models import HotRecord, WarmRow


class CheckpointHost(Protocol):
    """The state a ``CheckpointStore`` checkpoints (the ``StateManager`` provides one)."""

    def writing(self) -> AbstractAsyncContextManager[None]:
        """Hold off every other write of the state (and its cache updates) for the block."""

    def check_writable(self, action: str) -> None:
        """Raise ``StateReadOnlyError`` naming ``action`` if the state is open read-only."""

    async def read_cold(self, rows: Sequence[WarmRow]) -> dict[str, bytes]:
        """The verified bodies of COLD rows (``StateUnavailableError`` if the COLD store cannot serve them)."""

    async def cache(self, puts: Sequence[HotRecord], evict: Sequence[str]) -> None:
        """Update HOT after a durable write, inside ``writing()`` (keys become dirty if HOT fails)."""

    async def after_cold_write(self) -> None:
        """A COLD write happened (it may have been spooled): publish ``system:s3_available`` if it changed."""

    async def after_restore(self) -> None:
        """A restore rewrote the state: make ``system:s3_available`` agree with the COLD state again."""

    async def after_checkpoint(self, snapshot_at: float) -> None:
        """A checkpoint whose snapshot began at ``snapshot_at`` (wall clock seconds) is stored in WARM: local
        copies of COLD segments an earlier checkpoint already holds may go (``tiers/cold_recent.py``)."""


class LockedHost:
    """A ``CheckpointHost`` made of a write lock and the owner's operations (the ``StateManager`` builds one)."""

    def __init__(
        self,
        lock: asyncio.Lock,
        *,
        check_writable: Callable[[str], None],
        read_cold: Callable[[Sequence[WarmRow]], Awaitable[dict[str, bytes]]],
        cache: Callable[[Sequence[HotRecord], Sequence[str]], Awaitable[None]],
        after_cold_write: Callable[[], Awaitable[None]],
        after_restore: Callable[[], Awaitable[None]],
        after_checkpoint: Callable[[float], Awaitable[None]],
    ) -> None:
        self._lock = lock
        self.check_writable = check_writable
        self._read_cold = read_cold
        self._cache = cache
        self._after_cold_write = after_cold_write
        self._after_restore = after_restore
        self._after_checkpoint = after_checkpoint

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    async def read_cold(self, rows: Sequence[WarmRow]) -> dict[str, bytes]:
        return await self._read_cold(rows)

    async def cache(self, puts: Sequence[HotRecord], evict: Sequence[str]) -> None:
        await self._cache(puts, evict)

    async def after_cold_write(self) -> None:
        await self._after_cold_write()

    async def after_restore(self) -> None:
        await self._after_restore()

    async def after_checkpoint(self, snapshot_at: float) -> None:
        await self._after_checkpoint(snapshot_at)
