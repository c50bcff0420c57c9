"""``HotCache``: how the ``StateManager`` uses HOT as a cache -- what it serves from HOT, what it writes there.

HOT is never the truth (WARM is) and never stops the bot. Every part that touches HOT as a cache -- the write
path after a durable commit, the read path's promotions, the WARM outage journal, checkpoint restores --
goes through here, so the rules live in one place:

* a key whose HOT copy may be stale (a cache update failed, a commit's outcome is unknown) is *dirty*: never
  served from HOT until a later write caches it again or the hot-set restore (``hot_sync.py``) rewrites it;
* a HOT failure does not fail the read or the write: it reports to the HOT ``TierSupervisor`` (the manager
  is degraded, WARM serves) and the keys touched become dirty;
* values read from HOT are checksum-verified before use.

The dirty-key set is shared with ``HotSync`` and ``HotCoherence`` (they clear what they repair).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from bot_v2.errors import StateUnavailableError
from bot_v2.state import codec
from bot_v2.state.hot_sync import HotSync
from bot_v2.state.models import HotRecord
from bot_v2.state.tiers.hot import HotTier

logger = logging.getLogger(__name__)


class HotCache:
    """HOT as one manager's cache: cached reads, cache updates after commits, the dirty keys."""

    def __init__(self, hot: HotTier, hot_sync: HotSync, dirty: set[str]) -> None:
        self._hot = hot
        self._sync = hot_sync
        self._state = hot_sync.supervisor
        self.dirty = dirty  # shared with HotSync / HotCoherence: keys never served from HOT
        self.stale_puts_refused = 0  # puts the version-guarded HOT refused (a newer version was there)

    def mark_dirty(self, keys: Iterable[str]) -> None:
        """HOT's copies of ``keys`` may be stale: read them from WARM until they are cached again."""
        self.dirty.update(keys)

    async def apply(self, puts: Sequence[HotRecord], evict: Sequence[str]) -> None:
        """Update HOT after a durable commit. If HOT is down or fails, WARM stays authoritative: the keys
        become dirty (never served from HOT) and the manager is degraded until the hot set is restored."""
        if not puts and not evict:
            return
        touched = [r.key for r in puts] + list(evict)
        if self._state.degraded:
            self.dirty.update(touched)
            return
        try:
            refused = await self._hot.apply(puts, evict)
        except StateUnavailableError as exc:
            self.dirty.update(touched)
            logger.warning("HOT update of %d keys failed after commit (WARM holds them)", len(touched))
            self._state.failed(exc)
            return
        self._sync.cached(touched)
        if refused:  # HOT holds newer versions: another writer got there first (WARM stays the truth)
            self.stale_puts_refused += refused
            logger.warning("HOT refused %d stale puts: it holds newer versions of those keys", refused)
        if self.dirty:
            self.dirty.difference_update(touched)

    async def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Verified values of the clean ``keys`` HOT holds; {} while HOT is not serving (a failure degrades it,
        and the caller reads every key from WARM)."""
        if not self._state.up:
            return {}
        cacheable = [k for k in keys if k not in self.dirty] if self.dirty else keys
        if not cacheable:
            return {}
        try:
            records = await self._hot.get_many(cacheable)
        except StateUnavailableError as exc:
            self._state.failed(exc)  # fall through to WARM for every key
            return {}
        found: dict[str, bytes] = {}
        for key, record in records.items():
            codec.verify(key, record.value, record.checksum)
            found[key] = record.value
        return found

    async def keys(self, pattern: str) -> list[str] | None:
        """The keys HOT holds matching a glob (SCAN, never KEYS), sorted; None while HOT is not serving."""
        if not self._state.up:
            return None
        keys: set[str] = set()
        try:
            async for page in self._hot.scan(pattern):
                keys.update(page)
        except StateUnavailableError as exc:
            self._state.failed(exc)
            return None
        return sorted(keys)

    async def count(self) -> int | None:
        """How many keys HOT holds; None while it is degraded (or fails now)."""
        if self._state.degraded:
            return None
        try:
            return await self._hot.count()
        except StateUnavailableError as exc:
            self._state.failed(exc)
            return None
