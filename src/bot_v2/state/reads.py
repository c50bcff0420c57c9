"""The ``StateManager``'s read path: journal -> HOT -> WARM (-> COLD), promoting on the way up.

Why a module of its own: a read crosses every tier and both outage modes, and the order matters --

* while WARM is down the journal holds the newest copy of what it holds (``outage.py``), so it answers first;
* HOT answers next, for keys that are not dirty (``cache.py``; a HOT failure falls through to WARM);
* the misses are read from WARM (COLD bodies through WARM's index), verified, and promoted up, under the
  manager's write lock so no write slips between the WARM read and the promotion;
* a writer whose WARM read fails as unavailable starts journaling its writes (a COLD body S3 cannot serve is
  no WARM outage); a writer does not wait for a WARM known to be down; a reader promotes nothing.

It also counts HOT hits and misses (the cache hit rate operators check after a recovery).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bot_v2.errors import ColdUnavailableError, StateUnavailableError
from bot_v2.state import durable
from bot_v2.state.cache import HotCache
from bot_v2.state.coherence import hot_set_rows
from bot_v2.state.keys import glob_to_regex
from bot_v2.state.outage import WarmOutage
from bot_v2.state.tiers.cold import ColdTier
from bot_v2.state.tiers.warm import WarmTier


class ReadPath:
    """Reads of one manager's state (the manager checks keys and starts probes; this fetches)."""

    def __init__(
        self,
        warm: WarmTier,
        cold: ColdTier,
        cache: HotCache,
        outage: WarmOutage,
        lock: asyncio.Lock,
        *,
        writer: Callable[[], bool],
        page_size: int,
    ) -> None:
        self._warm = warm
        self._cold = cold
        self._cache = cache
        self._outage = outage
        self._lock = lock  # the manager's write lock
        self._writer = writer  # False while the manager is open read-only: nothing is promoted
        self._page_size = page_size  # rows per WARM page when listing the hot set
        self.hits = 0  # keys found in HOT (or the journal)
        self.misses = 0  # keys read from WARM / COLD (absent keys included)

    async def fetch(self, keys: list[str]) -> dict[str, bytes]:
        """Verified bytes of the ``keys`` that exist (checked keys; absent ones are left out)."""
        found: dict[str, bytes] = {}
        if self._outage.journaling:  # the journal holds the newest copy of what it holds
            journaled = self._outage.lookup(keys)
            found.update((k, v) for k, v in journaled.items() if v is not None)
            keys = [k for k in keys if k not in journaled]
        found.update(await self._cache.get(keys))
        misses = [k for k in keys if k not in found]
        self.hits += len(found)
        self.misses += len(misses)
        if misses:
            async with self._lock:  # no write may slip between our WARM read and the promotion
                writer = self._writer()
                if self._outage.down and writer:  # only the probe asks a WARM that is down
                    raise StateUnavailableError(
                        f"WARM is down (writes journaled): {len(misses)} keys neither in HOT nor in the journal"
                    )
                try:
                    found.update(await self.load(misses, promote=writer))
                except StateUnavailableError as exc:
                    # a writer's WARM read failed: its writes journal from now on (a COLD body S3 cannot serve
                    # while it is down is no WARM outage)
                    if self._writer() and not isinstance(exc, ColdUnavailableError):
                        self._outage.failed(exc)
                    raise
        return found

    async def load(self, keys: Sequence[str], promote: bool, to_hot: bool = False) -> dict[str, bytes]:
        """Read ``keys`` from WARM (and COLD), verify, and promote them up; caller holds the lock."""
        loaded = await durable.load(self._warm, self._cold, keys, promote=promote, to_hot=to_hot)
        await self._cache.apply(loaded.puts, ())
        return loaded.values

    async def keys_matching(self, pattern: str, *, hot_only: bool) -> list[str]:
        """Relative keys matching a checked glob, sorted: WARM's index, or with ``hot_only`` what HOT holds
        (while HOT is degraded: what it holds once restored, i.e. the hot set in WARM)."""
        if not hot_only:
            return await self._warm.keys_matching(pattern, datetime.now(UTC))
        cached = await self._cache.keys(pattern)
        if cached is not None:
            return cached
        matcher = re.compile(glob_to_regex(pattern), re.S)
        return [row.key async for row in hot_set_rows(self._warm, self._page_size) if matcher.match(row.key)]
