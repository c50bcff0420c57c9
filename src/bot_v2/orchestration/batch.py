"""``StateBatch``: the writes one cycle makes, flushed as ONE ``batch_write`` (one durable transaction).

Later writes to a key replace earlier ones in the same batch, so a record that changes twice in a cycle is
written once. Fills and the positions they move are always in the same batch: either both are stored or
neither, which is what makes fill ingestion exactly-once across a crash.
"""

from __future__ import annotations

from typing import Any

from bot_v2.orchestration.ports import StateCategory, StateStore, StateWrite

__all__ = ["StateBatch"]


class StateBatch:
    """Pending writes, keyed by state key."""

    def __init__(self) -> None:
        self._writes: dict[str, StateWrite] = {}

    def put(self, key: str, value: Any, category: StateCategory, ttl_seconds: float | None = None) -> None:
        """Queue ``value`` for ``key`` (replacing a queued value)."""
        self._writes[key] = StateWrite(key, value, category, ttl_seconds)

    def __len__(self) -> int:
        return len(self._writes)

    def __contains__(self, key: object) -> bool:
        return key in self._writes

    def keys(self) -> list[str]:
        return list(self._writes)

    def take(self) -> list[StateWrite]:
        """Return the queued writes and empty the batch."""
        writes = list(self._writes.values())
        self._writes.clear()
        return writes

    async def flush(self, state: StateStore) -> int:
        """Write everything queued in one ``batch_write``; return the number of keys written.

        On failure the writes are put back (minus none) so the next flush retries them.
        """
        writes = self.take()
        if not writes:
            return 0
        try:
            await state.batch_write(writes)
        except BaseException:
            for write in writes:
                self._writes.setdefault(write.key, write)
            raise
        return len(writes)
