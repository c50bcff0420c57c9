"""What operators see of one ``StateManager``: its ``health()`` (no I/O) and ``get_storage_stats()``.

Why a module of its own: the figures come from every part of the state layer -- the three tier supervisors
(HOT, WARM's outage journal, COLD), the dirty keys of the HOT cache, the read path's hit counts, the spool --
and gathering them is bookkeeping the manager's front (reads, writes, tier moves) need not carry. The status
line, the health endpoint, the metrics, the dashboard and preflight read them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot_v2.state.cache import HotCache
from bot_v2.state.models import (
    ColdRecovery,
    ColdState,
    HotRecovery,
    HotState,
    StateHealth,
    StorageStats,
)
from bot_v2.state.outage import WarmOutage
from bot_v2.state.reads import ReadPath
from bot_v2.state.supervisor import TierSupervisor
from bot_v2.state.tiers.hot import HotTier
from bot_v2.state.tiers.spool import SpoolingColdTier
from bot_v2.state.tiers.warm import WarmTier


class StateStatus:
    """Health and storage figures of one manager's tiers (read-only views of its parts)."""

    def __init__(
        self,
        bot_id: str,
        tiers: tuple[HotTier, WarmTier, SpoolingColdTier],
        hot_state: TierSupervisor[HotState, HotRecovery],
        cold_state: TierSupervisor[ColdState, ColdRecovery],
        outage: WarmOutage,
        cache: HotCache,
        reads: ReadPath,
    ) -> None:
        self._bot = bot_id
        self._hot, self._warm, self._cold = tiers
        self._hot_state = hot_state
        self._cold_state = cold_state
        self._outage = outage
        self._cache = cache
        self._reads = reads

    def health(self, repaired_at_start: int) -> StateHealth:
        """HOT cache, WARM journal and COLD store health, without I/O."""
        hot, warm, cold = self._hot_state, self._outage.supervisor, self._cold_state
        return StateHealth(
            hot_state=hot.state,
            hot_down_since=hot.down_since,
            last_hot_error=hot.last_error,
            dirty_keys=len(self._cache.dirty),
            next_probe_in_seconds=hot.next_probe_in(),
            hot_repaired_at_start=repaired_at_start,
            hot_recoveries=hot.recoveries,
            last_hot_recovery=hot.last_recovery,
            warm_state=warm.state,
            warm_down_since=warm.down_since,
            last_warm_error=warm.last_error,
            journal_records=self._outage.records,
            warm_recoveries=warm.recoveries,
            last_warm_recovery=warm.last_recovery,
            cold_state=cold.state,
            cold_down_since=cold.down_since,
            last_cold_error=cold.last_error,
            cold_spooled_objects=self._cold.spooled_objects,
            cold_spooled_bytes=self._cold.spooled_bytes,
            next_cold_probe_in_seconds=cold.next_probe_in(),
            cold_recoveries=cold.recoveries,
            last_cold_recovery=cold.last_recovery,
            hot_hits=self._reads.hits,
            hot_misses=self._reads.misses,
        )

    async def storage_stats(self, repaired_at_start: int) -> StorageStats:
        """Counts and sizes of the bot's state in each tier (``hot_keys`` None while HOT is degraded)."""
        by_tier, value_bytes = await self._warm.stats(datetime.now(UTC))
        cold_objects, cold_bytes = await self._cold.stats()
        hot_keys = await self._cache.count()
        hot, cold = self._hot_state, self._cold_state
        return StorageStats(
            bot_id=self._bot,
            hot_backend=self._hot.name,
            warm_backend=self._warm.name,
            cold_backend=self._cold.name,
            hot_keys=hot_keys,
            warm_records=sum(by_tier.values()),
            warm_records_by_tier=by_tier,
            warm_value_bytes=value_bytes,
            cold_objects=cold_objects,
            cold_bytes=cold_bytes,
            schema_version=self._warm.schema_version,
            degraded_hot=not hot.up,
            hot_dirty_keys=len(self._cache.dirty),
            hot_repaired_at_start=repaired_at_start,
            hot_recoveries=hot.recoveries,
            last_hot_recovery=hot.last_recovery,
            degraded_cold=not cold.up,
            cold_spooled_objects=self._cold.spooled_objects,
            cold_spooled_bytes=self._cold.spooled_bytes,
            cold_recoveries=cold.recoveries,
            last_cold_recovery=cold.last_recovery,
        )
