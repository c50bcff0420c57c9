"""What the parts of the state layer need from the ``StateManager`` they serve, as small ports.

``CheckpointStore`` reads a WARM snapshot on its own, but a restore writes back as one batch *of the
manager*: it must hold off the manager's other writes, cache what it wrote in HOT the way every batch does
(dirty keys while HOT is down), read COLD bodies the way reads do, refuse to write for a reader, and let the
manager re-publish ``system:s3_available`` afterwards. ``CheckpointHost`` is that, and nothing else: no lock
object, no private callbacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
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
