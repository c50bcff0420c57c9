"""The ``StateManager``'s write path: validate, make durable (WARM, or the journal while WARM is down), cache.

Why a module of its own: where a batch goes depends on WARM's availability, and the rules are easy to break
when they are spread over a facade --

* every key and value is validated and encoded before any I/O (``durable.prepare``): bad input writes nothing;
* a batch is made durable first (COLD segment, then one WARM transaction), and only then cached in HOT
  (``cache.py``); a commit whose outcome is unknown (a hung or killed server may still commit it) leaves its
  keys dirty, so HOT never serves their old values;
* the first batch (or delete) WARM refuses as unavailable starts the outage and goes to the journal, and so
  does every later one until the journal is replayed (``outage.py``); a process another lease holder
  superseded writes nothing (``FencedError``);
* a COLD failure is no WARM outage: a segment neither S3 nor the spool takes fails the batch, unjournaled.

The caller (the manager) holds its write lock around ``store`` and ``delete``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot_v2.errors import ColdUnavailableError, StateUnavailableError
from bot_v2.state import durable
from bot_v2.state.cache import HotCache
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import StateWrite
from bot_v2.state.outage import WarmOutage
from bot_v2.state.tiers.cold import ColdTier
from bot_v2.state.tiers.warm import WarmTier


class WritePath:
    """Writes and deletes of one manager's state (the manager checks it may write and holds the lock)."""

    def __init__(
        self,
        keyspace: KeySpace,
        max_value_bytes: int,
        warm: WarmTier,
        cold: ColdTier,
        cache: HotCache,
        outage: WarmOutage,
    ) -> None:
        self._keys = keyspace
        self._max_value_bytes = max_value_bytes
        self._warm = warm
        self._cold = cold
        self._cache = cache
        self._outage = outage

    def prepare(self, writes: Sequence[StateWrite]) -> list[durable.Prepared]:
        """Validate and encode ``writes`` (no I/O); a later write of a key wins."""
        return durable.prepare(writes, self._keys, self._max_value_bytes)

    async def store(self, prepared: list[durable.Prepared]) -> dict[str, int]:
        """Commit ``prepared`` to WARM, or append it to the journal while WARM is down; return key -> new
        version. The first batch WARM refuses as unavailable starts the outage and goes to the journal."""
        if self._outage.journaling:
            self._outage.check_not_superseded()
            return await self._outage.write(prepared)
        try:
            return await self._commit(prepared)
        except ColdUnavailableError:  # COLD and its spool refused the segment: not WARM, nothing to journal
            raise
        except StateUnavailableError as exc:
            self._outage.failed(exc)
            return await self._outage.write(prepared)

    async def _commit(self, prepared: list[durable.Prepared]) -> dict[str, int]:
        """Make ``prepared`` durable, then cache it."""
        try:
            committed = await durable.commit(prepared, self._cold, self._warm, self._keys.bot_id)
        except StateUnavailableError:
            # The outcome is unknown: a hung (or killed) server may commit the batch when it resumes. HOT
            # must not keep serving the old values of these keys: they are read from WARM until cached again.
            self._cache.mark_dirty(p.key for p in prepared)
            raise
        await self._cache.apply(committed.puts, committed.evict)
        return committed.versions

    async def delete(self, keys: list[str]) -> int:
        """Delete checked ``keys`` (one WARM transaction then one HOT pipeline, or the journal while WARM is
        down); return how many really existed."""
        if not self._outage.journaling:
            try:
                deleted = await self._warm.delete_many(keys, datetime.now(UTC))
                await self._cache.apply((), keys)
                return len(deleted)
            except StateUnavailableError as exc:
                self._outage.failed(exc)
        self._outage.check_not_superseded()
        return await self._outage.delete(keys)
