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
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from bot_v2.errors import StateUnavailableError
from bot_v2.state.coherence import HotCoherence, chunks, hot_puts, kinds
from bot_v2.state.models import HotRecovery, HotState
from bot_v2.state.settings import StateSettings
from bot_v2.state.supervisor import ProbePolicy, TierSupervisor
from bot_v2.state.tiers.hot import HotTier, PackedRecord, body_matches
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
        self._page_size = settings.hot_restore_page_size
        self._coherence_page_size = settings.coherence_page_size
        self._written: set[str] | None = None  # keys cached by writes while a restore runs
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
            # header calls of the restore's page size (~90 bytes a key), all in flight at once (check_headers)
            page = max(self._coherence_page_size, self._page_size)
            report = await self.coherence.check_headers(page, repair=True)
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

    def cached(self, keys: Iterable[str]) -> None:
        """The manager cached ``keys`` (a write, a delete, a promotion went through to HOT): while a restore
        runs, its older WARM copies of them must not replace what the write put there."""
        if self._written is not None:
            self._written.update(keys)

    async def _restore(self) -> bool:
        """HOT answers again: rewrite the hot set from WARM in one pass and verify what was written.

        Pages of ``hot_restore_page_size`` rows in key order, packed by WARM as HOT stores them
        (``WarmTier.hot_page``: PostgreSQL builds the bytes in the query, so no record is built per row
        here): the WARM read of page k+1 runs while page k is written to HOT and read back (one
        ``put_packed(read_back=True)``, unguarded, under the manager lock, WARM being the truth: MULTI/EXEC of
        the page, then an MGET of its keys on the same connection in the same round trip, compared with the
        bytes written: version, checksum and value; a record that is not is rewritten from WARM and counted
        as repaired). A key a write cached since the restore began is skipped (HOT already holds its newer
        version). Each body is checked against its checksum while its page is on its way to Redis
        (``_write_page``); one that fails is deleted from HOT again before the restore ends (never served).
        The names HOT held before (a partition, not a crash) are listed while the first page is read; with
        the dirty keys, those not in the hot set are deleted from HOT. Until this finished reads use WARM;
        writes already go through to HOT. False: HOT failed meanwhile (degraded again)."""
        started = time.perf_counter()
        supervisor = self.supervisor
        supervisor.begin_recovery()
        written: set[str] = set()
        self._written = written
        snapshot = set(self._dirty)
        size = self._page_size
        names = asyncio.ensure_future(self._names())
        reads: asyncio.Future[list[PackedRecord]] | None = asyncio.ensure_future(self._page(""))
        seen: set[str] = set()
        restored = corrupt = verified = repaired = 0
        try:
            while reads is not None:
                rows = await reads
                reads = asyncio.ensure_future(self._page(rows[-1].key)) if len(rows) == size else None
                seen.update(row.key for row in rows)
                drops = [row.key for row in rows if row.packed is None]
                async with self._lock:
                    if not supervisor.recovering:
                        return False  # a write-through failed meanwhile: degraded again
                    puts = [r for r in rows if r.packed is not None]
                    fresh = [r for r in puts if r.key not in written]
                    gone = [k for k in drops if k not in written]
                    wrong, failed = await self._write_page(fresh, gone)
                    fixed = await self._rewrite(wrong) if wrong else 0
                for key in drops + failed:
                    logger.error(
                        "state key %r: WARM record fails its checksum; not cached (reads raise)", key
                    )
                restored, corrupt = restored + len(puts) - len(failed), corrupt + len(drops) + len(failed)
                verified, repaired = verified + len(puts) - len(failed), repaired + fixed
            with supervisor.io():
                held = await names
            evicted = 0
            for chunk in chunks(sorted((held | snapshot) - seen), size):  # not in the hot set (any more)
                async with self._lock:
                    if not supervisor.recovering:
                        return False
                    now = datetime.now(UTC)
                    fixes, gone, bad = hot_puts(chunk, await self._warm.get_many(chunk, now), now)
                    fixes = [p for p in fixes if p.key not in written]
                    gone = [k for k in gone if k not in written]
                    with supervisor.io():
                        await self._hot.apply(fixes, gone, replace=True)
                restored, evicted, corrupt = restored + len(fixes), evicted + len(gone) - bad, corrupt + bad
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
                    keys_verified=verified,
                    mismatches_repaired=repaired,
                    corrupt_in_warm=corrupt,
                )
                supervisor.recovered(recovery)
        finally:
            self._written = None
            for task in (names, reads):  # cancel what is still running; collect every outcome
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        logger.warning(
            "HOT tier recovered after %.3fs degraded: %d keys restored, %d evicted, %d verified "
            "(%d repaired, %d corrupt in WARM) in %.3fs",
            recovery.outage_seconds,
            restored,
            evicted,
            verified,
            repaired,
            corrupt,
            recovery.restore_seconds,
        )
        return True

    async def _write_page(self, puts: list[PackedRecord], gone: list[str]) -> tuple[list[str], list[str]]:
        """Write one page from WARM and read it back (``put_packed(read_back=True)``; the caller holds the
        lock), checking each body against the checksum in its header while the page is on its way to Redis
        (in-process A/B at 1,000 keys: ~1.3 ms less than checking first and writing only the good ones).
        Return (keys that did not read back as written, keys whose WARM body fails its checksum: deleted from
        HOT again, which serves nothing before the restore ends)."""
        write = asyncio.ensure_future(self._put_page(puts, gone))
        try:
            await asyncio.sleep(0)  # the write's first step sends the page
        except asyncio.CancelledError:
            write.cancel()
            await asyncio.gather(write, return_exceptions=True)
            raise
        bad = [r.key for r in puts if r.packed is not None and not body_matches(r.packed)]
        wrong = await write
        if bad:
            with self.supervisor.io():
                await self._hot.apply([], bad, replace=True)
            failed = set(bad)
            wrong = [key for key in wrong if key not in failed]
        return wrong, bad

    async def _put_page(self, puts: list[PackedRecord], gone: list[str]) -> list[str]:
        with self.supervisor.io():  # from WARM: replaces whatever HOT holds; read back at once
            return await self._hot.put_packed(puts, gone, read_back=True)

    async def _page(self, after: str) -> list[PackedRecord]:
        return await self._warm.hot_page(after, self._page_size, datetime.now(UTC))

    async def _names(self) -> set[str]:
        """Every key HOT holds now (names only, SCAN)."""
        return {key async for page in self._hot.scan("*", max(self._page_size, 1000)) for key in page}

    async def _rewrite(self, wrong: Sequence[str]) -> int:
        """Rewrite from WARM the keys that did not read back as written (another writer, a corrupted value, a
        lost key); the caller holds the lock. Return how many were repaired."""
        now = datetime.now(UTC)
        rows = await self._warm.get_many(wrong, now)
        fixes, drops, _ = hot_puts(wrong, rows, now)
        with self.supervisor.io():
            await self._hot.apply(fixes, drops, replace=True)
        repaired = len(rows)  # a record with a TTL that expired meanwhile is gone from both: not a repair
        if repaired:
            logger.warning("HOT restore: %d keys did not read back as written; rewritten from WARM", repaired)
        return repaired
