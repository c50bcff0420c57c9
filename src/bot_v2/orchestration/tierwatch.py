"""Turn the state layer's tier health into events and metrics (DESIGN: every recovery is recorded).

The ``StateManager`` detects a HOT (Redis) or COLD (S3) outage, serves around it and recovers by itself;
``health()`` reports it without I/O. After every cycle the loop hands that snapshot to ``TierWatcher``, which
emits ``tier_degraded`` when a tier goes down and ``recovery`` (detection and recovery time, keys or objects
moved, coherence verdict) when it is back, and keeps the ``perps_bot_state_tier_*`` metrics current.

WARM (PostgreSQL) has no such snapshot: while it is down the loop's cycles fail as retryable. The loop tells
the watcher (``warm_failed`` / ``cycle_ok``) so the outage's end is reported the same way. The log lines are
the runbook's (``oplog``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from bot_v2.errors import StateUnavailableError
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import oplog
from bot_v2.state import StateHealth, StateSettings

#: The WARM tiers' unavailability messages start with their driver (``state/tiers/postgres_warm.py``).
_WARM_PREFIXES = ("postgresql at", "sqlite at")


def is_warm_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the WARM store (PostgreSQL / SQLite) cannot be reached."""
    return isinstance(exc, StateUnavailableError) and str(exc).lower().startswith(_WARM_PREFIXES)


logger = logging.getLogger(__name__)


@dataclass
class TierWatcher:
    """Remembers what it last saw of each tier, so each outage and recovery is reported once."""

    events: EventStore
    metrics: BotMetrics
    settings: StateSettings | None = None  # names the backends in the log lines; None: "memory" / "directory"
    _degraded: dict[str, bool] = field(default_factory=lambda: {"hot": False, "cold": False})
    _recoveries: dict[str, int] = field(default_factory=lambda: {"hot": 0, "cold": 0})
    _primed: bool = False
    _warm_down_since: datetime | None = None
    _warm_failed_cycles: int = 0
    _warm_first_failure: float = 0.0
    #: (hits, misses, cycles) at the last HOT recovery: the hit rate is logged one cycle after it
    _hits_at_recovery: tuple[int, int] | None = None

    def _backend(self, tier: str) -> str:
        if self.settings is None:
            return {"hot": "memory", "warm": "sqlite", "cold": "directory"}[tier]
        backend = {"hot": self.settings.hot_backend, "warm": self.settings.warm_backend}.get(tier)
        return str((backend or self.settings.cold_backend).value)

    def warm_failed(self, now: datetime) -> None:
        """A cycle failed because WARM did not answer (``is_warm_outage``)."""
        if self._warm_down_since is None:
            self._warm_down_since = now
            self._warm_first_failure = time.perf_counter()
        self._warm_failed_cycles += 1

    async def cycle_ok(self, flushed_keys: int, now: datetime) -> None:
        """A cycle completed (its state batch committed): if WARM was down, that is its recovery."""
        if self._warm_down_since is None:
            return
        since, failed = self._warm_down_since, self._warm_failed_cycles
        recovery_seconds = time.perf_counter() - self._warm_first_failure
        self._warm_down_since, self._warm_failed_cycles = None, 0
        outage = (now - since).total_seconds()
        oplog.warm_recovered(
            self._backend("warm"),
            outage_seconds=outage,
            cycles_failed=failed,
            writes_committed=flushed_keys,
            recovery_seconds=recovery_seconds,
        )
        self.metrics.state_recoveries.labels(tier="warm").inc()
        self.metrics.state_outage_seconds.labels(tier="warm").set(outage)
        await self.events.emit(
            EventType.RECOVERY,
            now,
            kind="warm_tier",
            detected_at=since,
            recovered_at=now,
            outage_seconds=outage,
            cycles_failed=failed,
            keys_moved=flushed_keys,
            data_loss_estimate=0,
            coherent=True,
        )

    async def observe(self, health: StateHealth, now: datetime) -> None:
        """Compare ``health`` with the last snapshot; emit what changed."""
        if not self._primed:  # recoveries that happened before this run are not this run's news
            self._recoveries = {"hot": health.hot_recoveries, "cold": health.cold_recoveries}
            self._primed = True
        elif self._hits_at_recovery is not None:
            hits, misses = self._hits_at_recovery
            self._hits_at_recovery = None
            oplog.cache_hit_rate(health.hot_hits - hits, health.hot_misses - misses, 1)
        await self._tier("hot", health.degraded_hot, health.last_hot_error, health.hot_down_since, now)
        await self._tier("cold", health.degraded_cold, health.last_cold_error, health.cold_down_since, now)
        if health.hot_recoveries > self._recoveries["hot"] and health.last_hot_recovery is not None:
            self._recoveries["hot"] = health.hot_recoveries
            hot = health.last_hot_recovery
            coherent = hot.corrupt_in_warm == 0
            oplog.hot_recovered(
                self._backend("hot"),
                keys_restored=hot.keys_restored,
                keys_evicted=hot.keys_evicted,
                keys_verified=hot.keys_verified,
                repaired=hot.mismatches_repaired,
                corrupt=hot.corrupt_in_warm,
                restore_seconds=hot.restore_seconds,
                outage_seconds=hot.outage_seconds,
            )
            self._hits_at_recovery = (health.hot_hits, health.hot_misses)
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
            oplog.cold_recovered(
                self._backend("cold"),
                objects=cold.objects_synced,
                bytes_synced=cold.bytes_synced,
                sync_seconds=cold.sync_seconds,
                outage=cold.outage_seconds,
            )
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
            if tier == "cold":
                spool = str(self.settings.spool_dir) if self.settings is not None else "the spool directory"
                oplog.cold_degraded(self._backend("cold"), spool, error)
            await self.events.emit(EventType.TIER_DEGRADED, now, tier=tier, since=since, error=error)
        self._degraded[tier] = degraded

    async def _recovered(self, tier: str, now: datetime, **fields: object) -> None:
        self.metrics.state_recoveries.labels(tier=tier).inc()
        outage = fields["outage_seconds"]
        if isinstance(outage, float):
            self.metrics.state_outage_seconds.labels(tier=tier).set(outage)
        logger.info("state %s tier recovered: %s", tier, ", ".join(f"{k}={v}" for k, v in fields.items()))
        await self.events.emit(EventType.RECOVERY, now, kind=f"{tier}_tier", **fields)
