"""HOT availability of one ``StateManager``: its ``TierSupervisor`` and the hot-set restore after an outage.

HOT is only a cache: when it fails the manager is degraded (WARM serves reads and takes writes; keys whose
HOT copy may be stale are *dirty*), the supervisor probes HOT, and when it answers ``HotSync`` rewrites the
hot set from WARM (and evicts dirty keys that left it), verifies what HOT holds, and only then lets the
manager serve from HOT again. Writes go through to HOT while the restore runs; reads use WARM until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bot_v2.errors import StateUnavailableError
from bot_v2.state.coherence import HotCoherence, chunks, hot_puts, kinds
from bot_v2.state.models import HotRecovery, HotState, Tier
from bot_v2.state.settings import StateSettings
from bot_v2.state.supervisor import ProbePolicy, TierSupervisor
from bot_v2.state.tiers.hot import HotTier
from bot_v2.state.tiers.warm import WarmTier

logger = logging.getLogger(__name__)


class HotSync:
    """HOT state machine + hot-set restore, for one manager (which shares its lock and dirty-key set)."""

    def __init__(
        self,
        settings: StateSettings,
        hot: HotTier,
        warm: WarmTier,
        lock: asyncio.Lock,
        dirty: set[str],
        *,
        may_probe: Callable[[], bool],
    ) -> None:
        self._hot = hot
        self._warm = warm
        self._lock = lock
        self._dirty = dirty  # the manager's set, shared
        self._page_size = settings.coherence_page_size
        self.supervisor: TierSupervisor[HotState, HotRecovery] = TierSupervisor(
            repr(hot),
            ProbePolicy(
                settings.hot_probe_interval_seconds,
                settings.hot_probe_max_interval_seconds,
                settings.hot_probe_timeout_seconds,
                settings.hot_degraded_warn_interval_seconds,
                watch=True,  # probe on a timer while down: HOT comes back whether the bot operates or not
            ),
            (HotState.UP, HotState.DEGRADED, HotState.RESTORING),
            ping=hot.ping,
            recover=self._restore,
            warn_down=self._warn_down,
            warn_still_down=self._warn_still_down,
            may_probe=may_probe,
            task_name=f"state-hot-probe-{settings.bot_id}",
            recovery_name="restoring the HOT tier",
        )
        self.coherence = HotCoherence(hot, warm, lock, dirty, self.supervisor)

    async def repair_at_start(self) -> int:
        """Make HOT agree with WARM before anything is served (a previous process may have committed to WARM
        while its cache update failed, leaving an older version in Redis); return how many keys were repaired."""
        started = time.perf_counter()
        try:
            report = await self.coherence.check(self._page_size, repair=True)
        except StateUnavailableError:
            if self.supervisor.up:
                raise  # WARM is down: no durable copy to compare with
            return 0  # HOT failed during the pass: degraded; the restore re-verifies every key
        log = logger.warning if report.repaired else logger.info
        log(
            "HOT coherence pass at start: %d keys checked, %d repaired (%s) in %.3fs",
            report.checked,
            report.repaired,
            kinds(report.mismatches),
            time.perf_counter() - started,
        )
        return report.repaired

    def _warn_down(self, exc: BaseException) -> None:
        logger.warning(
            "HOT tier %r unavailable: degraded, serving from WARM until it answers again: %s", self._hot, exc
        )

    def _warn_still_down(self, exc: BaseException, next_probe_seconds: float) -> None:
        logger.warning(
            "HOT tier still unavailable since %s (degraded, %d dirty keys, next probe in %.3fs): %s",
            self.supervisor.down_since,
            len(self._dirty),
            next_probe_seconds,
            exc,
        )

    async def _restore(self) -> bool:
        """HOT answers again: rewrite the hot set from WARM (and evict dirty keys that left it), one pipeline
        per page, then verify every HOT key against WARM, repairing any that disagree. Until this finished,
        reads use WARM; writes already go through to HOT. False: HOT failed meanwhile (degraded again)."""
        started = time.perf_counter()
        supervisor = self.supervisor
        supervisor.begin_recovery()
        snapshot = set(self._dirty)
        dirty = set(snapshot)
        size = self._page_size
        restored = evicted = corrupt = 0
        after = ""
        while True:
            async with self._lock:
                if not supervisor.recovering:
                    return False  # a write-through failed meanwhile: degraded again
                now = datetime.now(UTC)
                rows = await self._warm.page_rows(after, size, now, tier=Tier.HOT)
                keys = [row.key for row in rows]
                puts, drops, bad = hot_puts(keys, {row.key: row for row in rows}, now)
                with supervisor.io():  # under the lock, from WARM: replaces whatever HOT holds
                    await self._hot.apply(puts, drops, replace=True)
            restored, corrupt = restored + len(puts), corrupt + bad
            dirty.difference_update(keys)
            if len(rows) < size:
                break
            after = keys[-1]
        for chunk in chunks(sorted(dirty), size):  # dirty keys no longer in the hot set (deleted, demoted)
            async with self._lock:
                if not supervisor.recovering:
                    return False
                now = datetime.now(UTC)
                puts, drops, bad = hot_puts(chunk, await self._warm.get_many(chunk, now), now)
                with supervisor.io():
                    await self._hot.apply(puts, drops, replace=True)
            restored, evicted, corrupt = restored + len(puts), evicted + len(drops) - bad, corrupt + bad
        report = await self.coherence.check(size, repair=True)  # key by key: version + checksum
        async with self._lock:
            if not supervisor.recovering:
                return False
            self._dirty.difference_update(snapshot)
            recovered = datetime.now(UTC)
            recovery = HotRecovery(
                detected_at=supervisor.down_since or recovered,
                recovered_at=recovered,
                restore_seconds=time.perf_counter() - started,
                keys_restored=restored,
                keys_evicted=evicted,
                keys_verified=report.checked,
                mismatches_repaired=report.repaired,
                corrupt_in_warm=corrupt,
            )
            supervisor.recovered(recovery)
        logger.warning(
            "HOT tier recovered after %.3fs degraded: %d keys restored, %d evicted, %d verified "
            "(%d repaired, %d corrupt in WARM) in %.3fs",
            recovery.outage_seconds,
            restored,
            evicted,
            report.checked,
            report.repaired,
            corrupt,
            recovery.restore_seconds,
        )
        return True
