"""``StateManager``: the one async facade the bot keeps all its state in (HOT / WARM / COLD tiers).

Rules it keeps (DESIGN.md "State: tiers, batches, coherence"):

* A batch is one WARM statement (one transaction) plus one HOT pipeline; COLD gets one segment per batch.
* The cache is written only after the durable commit; a failed commit caches nothing.
* Reads go HOT -> WARM -> COLD and promote on the way up; every body is checksum-verified before use.
* Demotion writes COLD before the body leaves the hotter tiers.
* Writes, deletes and promotions are serialized by one lock, so the cache never goes back in time.
* HOT never stops the bot: while it fails the manager is *degraded* (WARM serves; keys whose HOT copy may be
  stale are *dirty*, never served from HOT) until the hot set is restored and verified (``hot_sync.py``).
  ``create()`` repairs HOT keys older than WARM (``coherence.py``).
* COLD never stops the bot either: COLD writes it cannot take are spooled locally and synced when it answers
  (``cold_sync.py``, ``system:s3_available``).
* Nor does WARM: while it does not answer, durable writes go to a local fsync'd journal, reads of journaled
  keys are served from it, and it is replayed (lease checked first) when WARM answers (``outage.py``).
* Ownership (DESIGN.md "Ownership"): a manager opened ``read_only`` (readers, a standby, a bot before its
  lease) writes nothing to any tier -- no write, promotion, repair, restore or spool sync -- and every write
  raises ``StateReadOnlyError``. ``take_ownership(epoch)`` makes it the writer: WARM writes are fenced with the
  lease epoch (``FencedError`` once a newer holder exists), then the start-up repair and spool sync run.

This module is the front (validation, the write lock, ownership, tier moves, health); ``writes.py`` is the
write path (durable commit or journal, then cache), ``reads.py`` the read path (journal, HOT, WARM, COLD),
``cache.py`` HOT as a cache (dirty keys), ``durable.py`` the WARM / COLD record I/O, ``supervisor.py`` the
availability state machine HOT, WARM and COLD share, ``connect.py`` opens the tiers, and ``checkpoint/``
takes checkpoints through the ``ports.CheckpointHost`` the manager hands it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from bot_v2.errors import StateReadOnlyError, StateUnavailableError
from bot_v2.state import codec, durable
from bot_v2.state.cache import HotCache
from bot_v2.state.checkpoint import CheckpointStore
from bot_v2.state.cold_sync import S3_AVAILABLE_KEY as S3_AVAILABLE_KEY
from bot_v2.state.cold_sync import ColdSync
from bot_v2.state.connect import connect_tiers
from bot_v2.state.hot_sync import HotSync
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import (
    CoherenceReport,
    LeaseClaim,
    LeaseGrant,
    LeaseRecord,
    StateCategory,
    StateHealth,
    StateWrite,
    StorageStats,
)
from bot_v2.state.outage import LeaseGate, WarmOutage
from bot_v2.state.ports import LockedHost
from bot_v2.state.reads import ReadPath
from bot_v2.state.settings import StateSettings, WarmOutageMode
from bot_v2.state.status import StateStatus
from bot_v2.state.tiers.cold import ColdTier
from bot_v2.state.tiers.factory import build_tiers
from bot_v2.state.tiers.hot import HotTier
from bot_v2.state.tiers.spool import SpoolingColdTier, spooling_tier
from bot_v2.state.tiers.warm import WarmTier
from bot_v2.state.writes import WritePath

logger = logging.getLogger(__name__)


class StateManager:
    """Versioned, checksummed state in three tiers; build with ``await StateManager.create(settings)``."""

    def __init__(
        self, settings: StateSettings, keyspace: KeySpace, hot: HotTier, warm: WarmTier, cold: ColdTier
    ) -> None:
        self._settings = settings
        self._keys = keyspace
        self._hot = hot
        self._warm = warm
        if not isinstance(cold, SpoolingColdTier):
            cold = spooling_tier(cold, settings, keyspace.bot_id)
        self._cold = cold
        self._lock = asyncio.Lock()
        self._read_only = settings.read_only
        self._epoch: int | None = None  # the lease epoch WARM writes are fenced with (take_ownership)
        # keys whose HOT copy may be stale (a cache update failed): never served from HOT
        dirty: set[str] = set()
        self._closed = False
        self._repaired_at_start = 0
        self._hot_sync = HotSync(settings, hot, warm, self._lock, dirty, may_probe=self._may_probe)
        self._hot_supervisor = self._hot_sync.supervisor
        self._coherence = self._hot_sync.coherence
        self._hot_cache = HotCache(hot, self._hot_sync, dirty)
        self._cold_sync = ColdSync(
            settings, cold, fetch=self._fetch, write_flag=self._write_flag, writable=self._may_probe
        )
        self._cold_supervisor = self._cold_sync.supervisor
        host = LockedHost(
            self._lock,
            check_writable=self._check_checkpoint_writable,
            read_cold=lambda rows: durable.read_cold(cold, rows),
            cache=self._hot_cache.apply,
            after_cold_write=self._cold_sync.publish_flag,
            after_restore=self._cold_sync.republish_flag,
            after_checkpoint=cold.checkpointed,
        )
        self.checkpoints = CheckpointStore(settings, warm, cold, host)
        """Checkpoints of this bot: ``create_checkpoint``, ``list_checkpoints``, ``restore_checkpoint``."""
        self._outage = WarmOutage(
            settings,
            warm,
            cold,
            writing=host.writing,
            cache=self._hot_cache.apply,
            epoch=lambda: self._epoch,
            restore_checkpoint=self.checkpoints.restore_checkpoint,
            repair_hot=self._repair_after_restore,
            may_probe=self._may_probe,
        )
        self._writes = WritePath(
            keyspace, settings.max_value_bytes, warm, cold, self._hot_cache, self._outage
        )
        self._reads = ReadPath(
            warm,
            cold,
            self._hot_cache,
            self._outage,
            self._lock,
            writer=lambda: not self._read_only,
            page_size=settings.coherence_page_size,
        )
        self._status = StateStatus(
            keyspace.bot_id,
            (hot, warm, cold),
            self._hot_supervisor,
            self._cold_supervisor,
            self._outage,
            self._hot_cache,
            self._reads,
        )

    def __repr__(self) -> str:
        tiers = f"hot={self._hot!r}, warm={self._warm!r}, cold={self._cold!r}"
        return f"StateManager(bot_id={self._keys.bot_id!r}, {tiers})"

    @property
    def bot_id(self) -> str:
        return self._keys.bot_id

    @property
    def keyspace(self) -> KeySpace:
        return self._keys

    @property
    def hot_stale_puts_refused(self) -> int:
        """Puts the version-guarded HOT refused (it held a newer version) since the manager was created."""
        return self._hot_cache.stale_puts_refused

    # --- lifecycle --------------------------------------------------------------------------------

    @classmethod
    async def create(
        cls, settings: StateSettings, *, tiers: tuple[HotTier, WarmTier, ColdTier] | None = None
    ) -> StateManager:
        """Connect every tier and migrate WARM; raise ``StateUnavailableError`` naming a dead service."""
        keyspace = KeySpace(settings.bot_id, settings.max_key_bytes)
        hot, warm, inner_cold = tiers if tiers is not None else build_tiers(settings, keyspace)
        cold = (
            inner_cold
            if isinstance(inner_cold, SpoolingColdTier)
            else spooling_tier(inner_cold, settings, keyspace.bot_id)
        )
        hot_error, cold_error = await connect_tiers(settings, hot, warm, cold)
        manager = cls(settings, keyspace, hot, warm, cold)
        try:
            manager._outage.load(writer=not settings.read_only)  # a journal an earlier run left
            if hot_error is not None:
                manager._hot_supervisor.failed(hot_error)
            elif settings.repair_hot_at_start and not settings.read_only:
                await manager._repair_at_start()
            await manager._cold_sync.at_start(cold_error, settings.read_only)
            if not settings.read_only:
                await manager._outage.replay_now()
        except BaseException:
            await manager.close()
            raise
        logger.info(
            "state manager ready: %r (hot %s, cold %s%s)",
            settings,
            manager._hot_supervisor.state.value,
            manager._cold_supervisor.state.value,
            ", read-only" if settings.read_only else "",
        )
        return manager

    async def _repair_at_start(self) -> None:
        self._repaired_at_start = await self._hot_sync.repair_at_start()

    async def _repair_after_restore(self) -> None:
        if self._hot_supervisor.up:
            await self._coherence.check(self._settings.coherence_page_size, repair=True)

    async def close(self) -> None:
        """Close the tiers (COLD, HOT, then WARM). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._outage.close()
        await self._hot_supervisor.close()
        await self._cold_supervisor.close()
        for tier in (self._cold, self._hot, self._warm):
            try:
                await tier.close()
            except StateUnavailableError as exc:
                logger.warning("closing %r failed: %s", tier, exc)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- ownership ----------------------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def epoch(self) -> int | None:
        """The lease epoch this manager's WARM writes are fenced with (None: unfenced)."""
        return self._epoch

    def _check_writable(self, action: str) -> None:
        if self._read_only:
            raise StateReadOnlyError(
                f"state of bot {self.bot_id!r} is open read-only: {action} refused (only the lease holder writes)"
            )

    def _check_checkpoint_writable(self, action: str) -> None:
        """``_check_writable`` for checkpoints, and no new checkpoint while the journal holds writes WARM
        lacks: it would miss them (and after a lost database it would be a checkpoint of nothing)."""
        self._check_writable(action)
        if action == "checkpoint" and self._outage.journaling:
            raise StateUnavailableError("checkpoint not taken: the WARM journal is not replayed yet")

    async def take_ownership(self, epoch: int) -> None:
        """Become the bot's writer under lease ``epoch``: fence every later WARM write with it, then do what a
        reader skipped -- repair HOT against WARM (a crashed holder may have left older versions in Redis)
        and make ``system:s3_available`` agree (a leftover spool syncs in the background)."""
        self._warm.set_fence(epoch)
        self._epoch = epoch
        if not self._read_only:
            return
        self._read_only = False
        self._outage.load(writer=True)  # again, now as the writer: a torn tail is cut
        self._outage.check_start_epoch(epoch)
        await self._outage.replay_now()
        if self._hot_supervisor.up and self._settings.repair_hot_at_start:
            await self._repair_at_start()
        self._maybe_probe()
        await self._cold_sync.republish_flag()

    @property
    def known_epoch(self) -> int:
        """The highest lease epoch this manager has seen (its own, its journal's, the lease row after an
        outage): a lease taken again after a lost database starts above it (``outage.py``)."""
        return self._outage.known_epoch()

    def set_lease_gate(self, gate: LeaseGate | None) -> None:
        """How the journal replay renews (or, database lost, re-takes) the lease first (``outage.py``)."""
        self._outage.gate = gate

    async def acquire_lease(self, claim: LeaseClaim, ttl_seconds: float) -> LeaseGrant:
        """Take this bot's lease if nobody holds a live one (see ``WarmTier.acquire_lease``)."""
        return await self._warm.acquire_lease(claim, ttl_seconds)

    async def renew_lease(self, holder: str, epoch: int, ttl_seconds: float) -> LeaseRecord:
        """Extend the lease; ``FencedError`` when ``epoch`` is no longer the holder's."""
        return await self._warm.renew_lease(holder, epoch, ttl_seconds)

    async def release_lease(self, holder: str, epoch: int) -> bool:
        """Expire the lease now so a standby or the next start takes over without waiting."""
        return await self._warm.release_lease(holder, epoch)

    async def request_handover(self, source: str) -> LeaseRecord | None:
        """Ask the live holder to step down at its next renewal, recording ``source`` (who asked and why) in the
        lease row (None: nobody holds the lease)."""
        return await self._warm.request_handover(source)

    async def read_lease(self) -> LeaseRecord | None:
        """The lease row with the store's clock (None: never held). Writes nothing."""
        return await self._warm.read_lease()

    # --- writes -----------------------------------------------------------------------------------

    async def set_state(
        self, key: str, value: Any, category: StateCategory, ttl_seconds: float | None = None
    ) -> int:
        """Store ``value`` under ``key``; return its new version. ``ttl_seconds=None`` means no expiry."""
        versions = await self.batch_write([StateWrite(key, value, category, ttl_seconds)])
        return versions[key]

    async def batch_set_state(
        self, items: Mapping[str, Any], category: StateCategory, ttl_seconds: float | None = None
    ) -> dict[str, int]:
        """Store many values of one category in one batch; return key -> new version."""
        return await self.batch_write([StateWrite(k, v, category, ttl_seconds) for k, v in items.items()])

    async def batch_write(self, writes: Sequence[StateWrite]) -> dict[str, int]:
        """Store mixed-category writes: one COLD segment, one WARM transaction, then one HOT pipeline.

        Every key and value is validated and encoded before any I/O, so bad input writes nothing. A later
        write of the same key in ``writes`` wins.
        """
        self._check_writable("write")
        prepared = self._writes.prepare(writes)
        if not prepared:
            return {}
        self._maybe_probe()
        async with self._lock:
            versions = await self._writes.store(prepared)
        if self._cold_sync.flag_pending is not None:
            await self._cold_sync.publish_flag()
        return versions

    async def _write_flag(self, value: bool) -> None:
        """One METADATA batch holding ``system:s3_available`` (for ``ColdSync``)."""
        write = self._writes.prepare([StateWrite(S3_AVAILABLE_KEY, value, StateCategory.METADATA)])
        async with self._lock:
            await self._writes.store(write)

    def _may_probe(self) -> bool:
        """Probes (and the restore or sync they start) write: never for a reader or a closed manager."""
        return not (self._read_only or self._closed)

    async def delete_state(self, key: str) -> bool:
        """Delete ``key`` from every tier; return whether it existed."""
        return await self.batch_delete_state([key]) == 1

    async def batch_delete_state(self, keys: Iterable[str]) -> int:
        """Delete ``keys`` (one WARM transaction, then one HOT pipeline); return how many really existed."""
        self._check_writable("delete")
        checked = self._keys.check_many(keys)
        if not checked:
            return 0
        self._maybe_probe()
        async with self._lock:
            return await self._writes.delete(checked)

    # --- reads ------------------------------------------------------------------------------------

    async def get_state(self, key: str) -> Any | None:
        """Return the value of ``key`` (None if absent); ``StateIntegrityError`` if the record is corrupt."""
        found = await self._fetch([self._keys.check(key)])
        data = found.get(key)
        return None if data is None else codec.decode_value(data, key)

    async def batch_get_state(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return key -> value for the keys that exist: one MGET, then one WARM query for the misses."""
        found = await self._fetch(self._keys.check_many(keys))
        return {key: codec.decode_value(data, key) for key, data in found.items()}

    async def _fetch(self, keys: list[str]) -> dict[str, bytes]:
        """Verified bytes of checked ``keys`` (``reads.py``); also ``ColdSync``'s read of its flag."""
        self._maybe_probe()
        return await self._reads.fetch(keys)

    async def get_keys_by_pattern(self, pattern: str, *, hot_only: bool = False) -> list[str]:
        """Return the relative keys matching a glob (``orders:*``), sorted.

        By default WARM (the durable index of every tier) answers; ``hot_only=True`` lists the HOT cache with
        SCAN (never KEYS).
        """
        pattern = self._keys.check_pattern(pattern)
        self._maybe_probe()
        return await self._reads.keys_matching(pattern, hot_only=hot_only)

    # --- tier moves -------------------------------------------------------------------------------

    async def promote_to_hot(self, keys: Iterable[str]) -> int:
        """Cache ``keys`` in HOT (fetching COLD bodies back into WARM); return how many are now cached."""
        self._check_writable("promote")
        checked = self._keys.check_many(keys)
        if not checked:
            return 0
        self._maybe_probe()
        async with self._lock:
            loaded = await self._reads.load(checked, promote=True, to_hot=True)
        return len(loaded)

    async def demote_to_cold(self, keys: Iterable[str]) -> int:
        """Move bodies of ``keys`` to one COLD segment, then drop them from WARM and HOT; return the count."""
        self._check_writable("demote")
        checked = self._keys.check_many(keys)
        if not checked:
            return 0
        self._maybe_probe()
        async with self._lock:
            moved = await durable.demote(self._warm, self._cold, checked, self.bot_id)
            await self._hot_cache.apply((), moved)
        if self._cold_sync.flag_pending is not None:
            await self._cold_sync.publish_flag()
        return len(moved)

    # --- coherence --------------------------------------------------------------------------------

    async def verify_coherence(self, page_size: int = 500) -> CoherenceReport:
        """Compare every HOT record's version and checksum with WARM, one SCAN page at a time.

        ``StateUnavailableError`` while HOT is degraded (there is no cache to verify).
        """
        self._maybe_probe()
        self._require_hot("verify coherence")
        return await self._coherence.check(page_size, repair=False)

    async def repair_coherence(self, page_size: int | None = None) -> CoherenceReport:
        """``verify_coherence``, and every HOT key that disagrees with WARM (older or other version, other
        checksum, missing in WARM, corrupt) is rewritten from WARM if WARM caches it, else deleted from HOT
        (one pipeline per page); ``report.repaired`` counts them. ``create()`` runs this before returning.
        """
        self._maybe_probe()
        self._require_hot("repair coherence")
        return await self._coherence.check(page_size or self._settings.coherence_page_size, repair=True)

    def _require_hot(self, action: str) -> None:
        hot = self._hot_supervisor
        if hot.degraded:
            raise StateUnavailableError(
                f"cannot {action}: HOT tier degraded since {hot.down_since}: {hot.last_error}"
            )

    # --- HOT availability: degraded mode, probe, restore -------------------------------------------

    @property
    def degraded_warm(self) -> bool:
        """True while durable writes go to the local journal (WARM down, or its journal not replayed yet)."""
        return self._outage.journaling

    @property
    def warm_outage_mode(self) -> WarmOutageMode:
        """What the loop may send while WARM is down (``PERPS_WARM_OUTAGE_MODE``)."""
        return self._settings.warm_outage_mode

    async def recover_warm(self) -> bool:
        """Probe WARM now and, if it answers, replay the journal; return whether WARM takes writes again."""
        return await self._outage.replay_now()

    @property
    def degraded_hot(self) -> bool:
        """True while HOT is not serving reads (unreachable, or its hot set is being restored)."""
        return not self._hot_supervisor.up

    def health(self) -> StateHealth:
        """HOT cache, WARM journal and COLD store health, without I/O (for status lines, the health endpoint
        and metrics)."""
        return self._status.health(self._repaired_at_start)

    async def recover_hot(self) -> bool:
        """Probe HOT now (ignoring the schedule) and, if it answers, restore the hot set; return whether HOT
        is up. The manager does this on its own (in a background task) while HOT is down."""
        return await self._hot_supervisor.probe_now()

    def _maybe_probe(self) -> None:
        """While a tier is degraded, start one background probe (and recovery) once its interval has passed.
        A reader never probes: a restore or a spool sync writes."""
        if self._read_only:
            return
        self._cold_supervisor.maybe_probe()
        self._hot_supervisor.maybe_probe()

    # --- stats ------------------------------------------------------------------------------------

    async def get_storage_stats(self) -> StorageStats:
        """Counts and sizes of this bot's state in each tier (``hot_keys`` None while HOT is degraded)."""
        self._maybe_probe()
        return await self._status.storage_stats(self._repaired_at_start)

    # --- COLD availability: spool, probe, sync -------------------------------------------------------

    @property
    def degraded_cold(self) -> bool:
        """True while COLD writes go to the local spool (COLD unreachable, or the spool is being synced)."""
        return not self._cold_supervisor.up

    async def recover_cold(self) -> bool:
        """Probe COLD now (ignoring the backoff) and, if it answers, sync the spool; return whether COLD is
        up. Operations do this on their own (in a background task) once the backoff interval passed."""
        return await self._cold_supervisor.probe_now()
