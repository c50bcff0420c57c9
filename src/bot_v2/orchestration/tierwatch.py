"""Turn the state layer's tier health into events and metrics (DESIGN: every recovery is recorded).

The ``StateManager`` detects a HOT (Redis) or COLD (S3) outage, serves around it and recovers by itself;
``health()`` reports it without I/O. After every cycle the loop hands that snapshot to ``TierWatcher``, which
emits ``tier_degraded`` when a tier goes down and ``recovery`` (detection and recovery time, keys or objects
moved, coherence verdict) when it is back, and keeps the ``perps_bot_state_tier_*`` metrics current.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.state import StateHealth

logger = logging.getLogger(__name__)


@dataclass
class TierWatcher:
    """Remembers what it last saw of each tier, so each outage and recovery is reported once."""

    events: EventStore
    metrics: BotMetrics
    _degraded: dict[str, bool] = field(default_factory=lambda: {"hot": False, "cold": False})
    _recoveries: dict[str, int] = field(default_factory=lambda: {"hot": 0, "cold": 0})
    _primed: bool = False

    async def observe(self, health: StateHealth, now: datetime) -> None:
        """Compare ``health`` with the last snapshot; emit what changed."""
        if not self._primed:  # recoveries that happened before this run are not this run's news
            self._recoveries = {"hot": health.hot_recoveries, "cold": health.cold_recoveries}
            self._primed = True
        await self._tier("hot", health.degraded_hot, health.last_hot_error, health.hot_down_since, now)
        await self._tier("cold", health.degraded_cold, health.last_cold_error, health.cold_down_since, now)
        if health.hot_recoveries > self._recoveries["hot"] and health.last_hot_recovery is not None:
            self._recoveries["hot"] = health.hot_recoveries
            hot = health.last_hot_recovery
            coherent = hot.corrupt_in_warm == 0
            await self._recovered(
                "hot",
                now,
                detected_at=hot.detected_at,
                recovered_at=hot.recovered_at,
                outage_seconds=hot.outage_seconds,
                restore_seconds=hot.restore_seconds,
                keys_moved=hot.keys_restored + hot.keys_evicted,
                keys_verified=hot.keys_verified,
                mismatches_repaired=hot.mismatches_repaired,
                coherent=coherent,
            )
        if health.cold_recoveries > self._recoveries["cold"] and health.last_cold_recovery is not None:
            self._recoveries["cold"] = health.cold_recoveries
            cold = health.last_cold_recovery
            await self._recovered(
                "cold",
                now,
                detected_at=cold.detected_at,
                recovered_at=cold.recovered_at,
                outage_seconds=cold.outage_seconds,
                restore_seconds=cold.sync_seconds,
                keys_moved=cold.objects_synced,
                bytes_synced=cold.bytes_synced,
                coherent=True,  # every synced object was read back and verified before the spool let go
            )

    async def _tier(
        self, tier: str, degraded: bool, error: str | None, since: datetime | None, now: datetime
    ) -> None:
        self.metrics.state_tier_degraded.labels(tier=tier).set(1 if degraded else 0)
        if degraded and not self._degraded[tier]:
            logger.warning("state %s tier degraded since %s: %s", tier, since, error)
            await self.events.emit(EventType.TIER_DEGRADED, now, tier=tier, since=since, error=error)
        self._degraded[tier] = degraded

    async def _recovered(self, tier: str, now: datetime, **fields: object) -> None:
        self.metrics.state_recoveries.labels(tier=tier).inc()
        outage = fields["outage_seconds"]
        if isinstance(outage, float):
            self.metrics.state_outage_seconds.labels(tier=tier).set(outage)
        logger.info("state %s tier recovered: %s", tier, ", ".join(f"{k}={v}" for k, v in fields.items()))
        await self.events.emit(EventType.RECOVERY, now, kind=f"{tier}_tier", **fields)
