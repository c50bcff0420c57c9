"""Turn the state layer's WARM (PostgreSQL) outage into events and metrics (DESIGN: every recovery is recorded).

While PostgreSQL does not answer the ``StateManager`` journals durable writes locally and the loop keeps
running (``state/outage.py``); ``health()`` reports it without I/O. After every cycle the loop hands that
snapshot here: ``tier_degraded`` (tier ``warm``) when the journal starts, ``recovery`` (kind ``warm_tier``:
outage and replay time, records replayed, a lost database's checkpoint and ``data_loss_estimate``) when it
was replayed, and the gauges ``perps_bot_state_tier_degraded{tier="warm"}`` and
``perps_bot_state_journal_records``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.state import StateHealth


@dataclass
class WarmWatcher:
    """Remembers what it last saw of WARM, so each outage and recovery is reported once."""

    events: EventStore
    metrics: BotMetrics
    _down: bool = False
    _recoveries: int | None = None  # None: not primed (recoveries before this run are not this run's news)

    async def observe(self, health: StateHealth, now: datetime) -> None:
        if self._recoveries is None:
            self._recoveries = health.warm_recoveries
        degraded = health.degraded_warm
        self.metrics.state_tier_degraded.labels(tier="warm").set(1 if degraded else 0)
        self.metrics.state_journal_records.set(health.journal_records)
        if degraded and not self._down:
            await self.events.emit(
                EventType.TIER_DEGRADED,
                now,
                tier="warm",
                since=health.warm_down_since,
                error=health.last_warm_error,
                journal_records=health.journal_records,
            )
        self._down = degraded
        recovery = health.last_warm_recovery
        if health.warm_recoveries <= self._recoveries or recovery is None:
            return
        self._recoveries = health.warm_recoveries
        self.metrics.state_recoveries.labels(tier="warm").inc()
        if recovery.outage_seconds is not None:
            self.metrics.state_outage_seconds.labels(tier="warm").set(recovery.outage_seconds)
        await self.events.emit(
            EventType.RECOVERY,
            now,
            kind="warm_tier",
            detected_at=recovery.detected_at,
            recovered_at=recovery.recovered_at,
            outage_seconds=recovery.outage_seconds,
            restore_seconds=recovery.replay_seconds,
            keys_moved=recovery.records_replayed,
            records_journaled=recovery.records_journaled,
            records_skipped=recovery.records_skipped,
            batches=recovery.batches,
            database_lost=recovery.database_lost,
            checkpoint_id=recovery.checkpoint_id,
            data_loss_estimate=recovery.data_loss_estimate_seconds or 0,
            coherent=True,
        )
