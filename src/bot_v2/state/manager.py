"""``StateManager``: the one async facade the bot keeps all its state in (HOT / WARM / COLD tiers).

Rules it keeps (DESIGN.md "State: tiers, batches, coherence"):

* A batch is one WARM statement (one transaction) plus one HOT pipeline; COLD gets one segment per batch.
* The cache is written only after the durable commit; a failed commit caches nothing.
* Reads go HOT -> WARM -> COLD and promote on the way up; every body is checksum-verified before use.
* Demotion writes COLD before the body leaves the hotter tiers.
* Writes, deletes and promotions are serialized by one lock, so the cache never goes back in time.
* HOT is only a cache and never stops the bot: if it fails, the manager is *degraded* (reads and writes use
  WARM only), probes HOT with backoff, and when it answers rewrites the hot set from WARM, page by page, then
  verifies every HOT key against WARM before serving from HOT again. A HOT key that may be stale (a cache
  update failed) is *dirty* and never served. ``create()`` repairs HOT keys that disagree with WARM (stale
  after a restart), so no process ever serves a value older than WARM.
* Ownership (DESIGN.md "Ownership"): a manager opened with ``read_only`` (readers, a standby, a bot that has
  not taken its lease yet) writes nothing to any tier -- no write, no promotion of a cache miss, no start-up
  repair, no HOT restore or spool sync -- and every write raises ``StateReadOnlyError``.
  ``take_ownership(epoch)`` makes it the bot's writer: every WARM write is then fenced with the lease epoch
  (``FencedError`` once a newer holder exists) and the start-up repair and spool sync run.
* COLD (S3) never stops the bot either: a COLD write it cannot take goes to a local spool
  (``tiers/spool.py``) and succeeds; the manager is *cold-degraded* (``system:s3_available`` = false), probes
  COLD with backoff, and when it answers uploads the spool oldest first, verifying every object, before
  COLD writes go to COLD again (``system:s3_available`` = true).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, Self

from bot_v2.errors import (
    StateEncodingError,
    StateError,
    StateIntegrityError,
    StateReadOnlyError,
    StateUnavailableError,
)
from bot_v2.state import codec
from bot_v2.state.checkpoint import CheckpointStore
from bot_v2.state.keys import KeySpace, glob_to_regex
from bot_v2.state.models import (
    CoherenceMismatch,
    CoherenceReport,
    ColdRecord,
    ColdRecovery,
    ColdState,
    HotRecord,
    HotRecovery,
    HotState,
    LeaseClaim,
    LeaseGrant,
    LeaseRecord,
    StateCategory,
    StateHealth,
    StateWrite,
    StorageStats,
    Tier,
    TierMove,
    WarmRow,
    WarmWrite,
)
from bot_v2.state.settings import StateSettings
from bot_v2.state.tiers.cold import ColdTier, decode_segment, encode_segment, new_segment_name
from bot_v2.state.tiers.factory import build_tiers
from bot_v2.state.tiers.hot import HotTier
from bot_v2.state.tiers.spool import SpooledObject, SpoolingColdTier
from bot_v2.state.tiers.warm import WarmTier

logger = logging.getLogger(__name__)

S3_AVAILABLE_KEY = "system:s3_available"
"""METADATA record (WARM) holding whether the COLD store takes writes (False while they are spooled)."""


class _Prepared(NamedTuple):
    key: str
    category: StateCategory
    tier: Tier
    value: bytes
    checksum: str
    ttl_ms: int | None


def _ttl_ms(key: str, ttl_seconds: float | None) -> int | None:
    if ttl_seconds is None:
        return None
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float) or not ttl_seconds > 0:
        raise StateEncodingError(f"state key {key!r}: ttl_seconds must be None or > 0, got {ttl_seconds!r}")
    if not math.isfinite(ttl_seconds):
        raise StateEncodingError(f"state key {key!r}: ttl_seconds must be finite")
    return max(1, math.ceil(ttl_seconds * 1000))


def _category(key: str, category: object) -> StateCategory:
    if type(category) is StateCategory:  # the common case, without a str() + enum lookup per key
        return category
    try:
        return StateCategory(str(category))
    except ValueError:
        raise StateEncodingError(f"state key {key!r}: unknown category {category!r}") from None


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
            cold = SpoolingColdTier(cold, settings.spool_dir / keyspace.bot_id)
        cold.on_unavailable = self._cold_failed
        self._cold = cold
        self._lock = asyncio.Lock()
        self._read_only = settings.read_only
        self._epoch: int | None = None  # the lease epoch WARM writes are fenced with (take_ownership)
        self.hot_stale_puts_refused = 0  # puts the version-guarded HOT refused (a newer version was there)
        # keys whose HOT copy may be stale (a cache update failed): never served from HOT
        self._dirty: set[str] = set()
        self._closed = False
        # HOT availability (see the module docstring)
        self._hot_state = HotState.UP
        self._hot_down_since: datetime | None = None
        self._hot_last_error: str | None = None
        self._probe_backoff = settings.hot_probe_interval_seconds
        self._next_probe = 0.0  # time.monotonic() of the next allowed probe while degraded
        self._last_warning = -math.inf
        self._probe_lock = asyncio.Lock()
        self._probe_task: asyncio.Task[bool] | None = None
        self._repaired_at_start = 0
        self._recoveries = 0
        self._last_recovery: HotRecovery | None = None
        # COLD availability: degraded = writes are spooled (see tiers/spool.py)
        self._cold_state = ColdState.UP  # create() degrades it if COLD is down or a spool was left
        self._cold_down_since: datetime | None = None
        self._cold_last_error: str | None = None
        self._cold_backoff = settings.cold_probe_interval_seconds
        self._next_cold_probe = 0.0
        self._last_cold_warning = -math.inf
        self._cold_probe_lock = asyncio.Lock()
        self._cold_probe_task: asyncio.Task[bool] | None = None
        self._cold_synced = (0, 0)  # objects, bytes uploaded from the spool during the current outage
        self._cold_recoveries = 0
        self._last_cold_recovery: ColdRecovery | None = None
        self._s3_flag_pending: bool | None = None  # system:s3_available value still to be written
        self._flag_lock = asyncio.Lock()
        self.checkpoints = CheckpointStore(
            settings,
            warm,
            cold,
            self._lock,
            self._read_cold,
            self._cache,
            after_cold_write=self._publish_cold_flag,
            after_restore=self._republish_cold_flag,
            check_writable=self._check_writable,
        )
        """Checkpoints of this bot: ``create_checkpoint``, ``list_checkpoints``, ``restore_checkpoint``."""

    def __repr__(self) -> str:
        tiers = f"hot={self._hot!r}, warm={self._warm!r}, cold={self._cold!r}"
        return f"StateManager(bot_id={self._keys.bot_id!r}, {tiers})"

    @property
    def bot_id(self) -> str:
        return self._keys.bot_id

    @property
    def keyspace(self) -> KeySpace:
        return self._keys

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
            else SpoolingColdTier(inner_cold, settings.spool_dir / keyspace.bot_id)
        )
        opened: list[HotTier | WarmTier | ColdTier] = []
        hot_error: StateUnavailableError | None = None
        cold_error: StateUnavailableError | None = None
        order: tuple[HotTier | WarmTier | ColdTier, ...] = (warm, hot, cold)
        try:
            for tier in order:
                try:
                    try:
                        async with asyncio.timeout(settings.connect_timeout_seconds * 2):
                            await tier.connect()
                    except TimeoutError:
                        raise StateUnavailableError(
                            f"{tier!r}: no answer within {settings.connect_timeout_seconds}s"
                        ) from None
                except StateUnavailableError as exc:
                    if tier is hot and not settings.hot_required_at_start:
                        hot_error = exc  # start degraded: WARM serves, HOT is probed and restored later
                    elif tier is cold and (cold.spooled_objects or not settings.cold_required_at_start):
                        cold_error = exc  # start cold-degraded: writes spool, the spool is synced later
                    else:
                        raise
                opened.append(tier)
        except BaseException:
            for tier in reversed(opened):
                await tier.close()
            raise
        manager = cls(settings, keyspace, hot, warm, cold)
        try:
            if hot_error is not None:
                manager._hot_failed(hot_error)
            elif settings.repair_hot_at_start and not settings.read_only:
                await manager._repair_at_start()
            await manager._cold_at_start(cold_error)
        except BaseException:
            await manager.close()
            raise
        logger.info(
            "state manager ready: %r (hot %s, cold %s%s)",
            settings,
            manager._hot_state.value,
            manager._cold_state.value,
            ", read-only" if settings.read_only else "",
        )
        return manager

    async def _cold_at_start(self, error: StateUnavailableError | None) -> None:
        """COLD did not answer (start spooling) or a previous process left a spool (sync it now); then make
        ``system:s3_available`` agree with the state we start in. A reader only notes the COLD state."""
        if error is not None:
            self._cold_failed(error)
        elif self._cold.spooling:  # objects spooled by a previous process: COLD answers, sync them now
            self._cold_failed(StateUnavailableError("spool left by a previous process"), log=False)
            if not self._read_only:
                await self._probe_cold()
        if not self._read_only:
            await self._republish_cold_flag()

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

    async def take_ownership(self, epoch: int) -> None:
        """Become the bot's writer under lease ``epoch``: fence every later WARM write with it, then do what a
        reader skipped -- repair HOT against WARM (a crashed holder may have left older versions in Redis)
        and make ``system:s3_available`` agree (a leftover spool syncs in the background)."""
        self._warm.set_fence(epoch)
        self._epoch = epoch
        if not self._read_only:
            return
        self._read_only = False
        if self._hot_state is HotState.UP and self._settings.repair_hot_at_start:
            await self._repair_at_start()
        self._maybe_probe()
        await self._republish_cold_flag()

    async def acquire_lease(self, claim: LeaseClaim, ttl_seconds: float) -> LeaseGrant:
        """Take this bot's lease if nobody holds a live one (see ``WarmTier.acquire_lease``)."""
        return await self._warm.acquire_lease(claim, ttl_seconds)

    async def renew_lease(self, holder: str, epoch: int, ttl_seconds: float) -> LeaseRecord:
        """Extend the lease; ``FencedError`` when ``epoch`` is no longer the holder's."""
        return await self._warm.renew_lease(holder, epoch, ttl_seconds)

    async def release_lease(self, holder: str, epoch: int) -> bool:
        """Expire the lease now so a standby or the next start takes over without waiting."""
        return await self._warm.release_lease(holder, epoch)

    async def request_handover(self) -> LeaseRecord | None:
        """Ask the live holder to step down at its next renewal (None: nobody holds the lease)."""
        return await self._warm.request_handover()

    async def read_lease(self) -> LeaseRecord | None:
        """The lease row with the store's clock (None: never held). Writes nothing."""
        return await self._warm.read_lease()

    async def _repair_at_start(self) -> None:
        """Make HOT agree with WARM before anything is served: a previous process may have committed to WARM
        while its cache update failed, leaving an older version in Redis."""
        started = time.perf_counter()
        try:
            report = await self._coherence_pass(self._settings.coherence_page_size, repair=True)
        except StateUnavailableError:
            if self._hot_state is HotState.UP:
                raise  # WARM is down: no durable copy to compare with
            return  # HOT failed during the pass: degraded; the restore re-verifies every key
        self._repaired_at_start = report.repaired
        log = logger.warning if report.repaired else logger.info
        log(
            "HOT coherence pass at start: %d keys checked, %d repaired (%s) in %.3fs",
            report.checked,
            report.repaired,
            _kinds(report.mismatches),
            time.perf_counter() - started,
        )

    async def close(self) -> None:
        """Close the tiers (COLD, HOT, then WARM). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for task in (self._probe_task, self._cold_probe_task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    if not task.cancelled():
                        raise  # close() itself was cancelled
        self._probe_task = self._cold_probe_task = None
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
        prepared = self._prepare(writes)
        if not prepared:
            return {}
        self._maybe_probe()
        async with self._lock:
            versions = await self._commit(prepared)
        if self._s3_flag_pending is not None:
            await self._publish_cold_flag()
        return versions

    def _prepare(self, writes: Sequence[StateWrite]) -> list[_Prepared]:
        check, limit = self._keys.check, self._settings.max_value_bytes
        out: dict[str, _Prepared] = {}
        for write in writes:
            key = check(write.key)
            category = _category(key, write.category)
            data = codec.encode_value(write.value, key)
            if len(data) > limit:
                raise StateEncodingError(f"state key {key!r}: value is {len(data)} bytes, limit is {limit}")
            out.pop(key, None)
            out[key] = _Prepared(
                key, category, category.tier, data, codec.checksum(data), _ttl_ms(key, write.ttl_seconds)
            )
        return list(out.values())

    async def _commit(self, prepared: list[_Prepared]) -> dict[str, int]:
        now = datetime.now(UTC)
        segment: str | None = None
        cold = [p for p in prepared if p.tier is Tier.COLD]
        if cold:
            # COLD first: if the WARM commit then fails, only an unreferenced segment is left behind.
            segment = new_segment_name(now)
            records = [ColdRecord(p.key, None, p.checksum, p.category.value, p.value) for p in cold]
            await self._cold.put_segment(segment, encode_segment(self.bot_id, records))
        rows = [
            WarmWrite(
                p.key,
                p.category.value,
                p.tier,
                p.checksum,
                None if p.tier is Tier.COLD else p.value,
                segment if p.tier is Tier.COLD else None,
                None if p.ttl_ms is None else now + timedelta(milliseconds=p.ttl_ms),
            )
            for p in prepared
        ]
        stored = await self._warm.upsert_many(rows, now)
        puts: list[HotRecord] = []
        evict: list[str] = []
        for p in prepared:
            version, tier = stored[p.key]
            if tier is Tier.HOT:
                puts.append(HotRecord(p.key, version, p.checksum, p.value, now, p.ttl_ms))
            elif p.tier is Tier.COLD:
                evict.append(p.key)
        await self._cache(puts, evict)
        return {key: version for key, (version, _) in stored.items()}

    async def _cache(self, puts: Sequence[HotRecord], evict: Sequence[str]) -> None:
        """Update HOT after a durable commit. If HOT is down or fails, WARM stays authoritative: the keys
        become dirty (never served from HOT) and the manager is degraded until the hot set is restored."""
        if not puts and not evict:
            return
        touched = [r.key for r in puts] + list(evict)
        if self._hot_state is HotState.DEGRADED:
            self._dirty.update(touched)
            return
        try:
            refused = await self._hot.apply(puts, evict)
        except StateUnavailableError as exc:
            self._dirty.update(touched)
            logger.warning("HOT update of %d keys failed after commit (WARM holds them)", len(touched))
            self._hot_failed(exc)
            return
        if refused:  # HOT holds newer versions: another writer got there first (WARM stays the truth)
            self.hot_stale_puts_refused += refused
            logger.warning("HOT refused %d stale puts: it holds newer versions of those keys", refused)
        if self._dirty:
            self._dirty.difference_update(touched)

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
            deleted = await self._warm.delete_many(checked, datetime.now(UTC))
            await self._cache((), checked)
        return len(deleted)

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
        found: dict[str, bytes] = {}
        self._maybe_probe()
        if self._hot_state is HotState.UP:
            cacheable = [k for k in keys if k not in self._dirty] if self._dirty else keys
            if cacheable:
                try:
                    records = await self._hot.get_many(cacheable)
                except StateUnavailableError as exc:
                    self._hot_failed(exc)  # fall through to WARM for every key
                    records = {}
                for key, record in records.items():
                    codec.verify(key, record.value, record.checksum)
                    found[key] = record.value
        misses = [k for k in keys if k not in found]
        if misses:
            async with self._lock:  # no write may slip between our WARM read and the promotion
                found.update(await self._load(misses, promote=not self._read_only))
        return found

    async def _load(self, keys: Sequence[str], promote: bool, to_hot: bool = False) -> dict[str, bytes]:
        """Read ``keys`` from WARM (and COLD), verify, and promote them up; caller holds the lock."""
        now = datetime.now(UTC)
        rows = await self._warm.get_many(keys, now)
        out: dict[str, bytes] = {}
        puts: list[HotRecord] = []
        moves: list[TierMove] = []
        cold_rows = [row for row in rows.values() if row.tier is Tier.COLD]
        bodies = await self._read_cold(cold_rows) if cold_rows else {}
        for key, row in rows.items():
            value = bodies[key] if row.tier is Tier.COLD else row.value
            assert value is not None
            if row.tier is not Tier.COLD:
                codec.verify(key, value, row.checksum)
            out[key] = value
            if not promote:
                continue
            target = Tier.HOT if to_hot else _target_tier(row)
            if target is Tier.HOT:
                puts.append(_hot_record(row, value, now))
            if target is not row.tier and target is not Tier.COLD:
                moves.append(TierMove(key, row.version, target, value, None))
        if moves:
            moved = set(await self._warm.move_many(moves))
            puts = [p for p in puts if p.key in moved or rows[p.key].tier is Tier.HOT]
        await self._cache(puts, ())
        return out

    async def _read_cold(self, rows: Sequence[WarmRow]) -> dict[str, bytes]:
        by_segment: dict[str, list[WarmRow]] = {}
        for row in rows:
            if row.cold_ref is None:
                raise StateIntegrityError(f"state key {row.key!r}: COLD row without a segment reference")
            by_segment.setdefault(row.cold_ref, []).append(row)
        out: dict[str, bytes] = {}
        for name, members in by_segment.items():
            records = decode_segment(name, await self._cold.get_segment(name))
            for row in members:
                record = records.get(row.key)
                if record is None:
                    raise StateIntegrityError(f"state key {row.key!r}: missing from cold segment {name!r}")
                codec.verify(row.key, record.value, row.checksum)
                out[row.key] = record.value
        return out

    async def get_keys_by_pattern(self, pattern: str, *, hot_only: bool = False) -> list[str]:
        """Return the relative keys matching a glob (``orders:*``), sorted.

        By default WARM (the durable index of every tier) answers; ``hot_only=True`` lists the HOT cache with
        SCAN (never KEYS).
        """
        pattern = self._keys.check_pattern(pattern)
        self._maybe_probe()
        if not hot_only:
            return await self._warm.keys_matching(pattern, datetime.now(UTC))
        if self._hot_state is HotState.UP:
            keys: set[str] = set()
            try:
                async for page in self._hot.scan(pattern):
                    keys.update(page)
                return sorted(keys)
            except StateUnavailableError as exc:
                self._hot_failed(exc)
        # degraded: list what HOT holds once restored, i.e. the hot set in WARM
        matcher = re.compile(glob_to_regex(pattern), re.S)
        return [row.key async for row in self._hot_set_rows() if matcher.match(row.key)]

    async def _hot_set_rows(self) -> AsyncIterator[WarmRow]:
        after, size = "", self._settings.coherence_page_size
        while True:
            rows = await self._warm.page_rows(after, size, datetime.now(UTC), tier=Tier.HOT)
            for row in rows:
                yield row
            if len(rows) < size:
                return
            after = rows[-1].key

    # --- tier moves -------------------------------------------------------------------------------

    async def promote_to_hot(self, keys: Iterable[str]) -> int:
        """Cache ``keys`` in HOT (fetching COLD bodies back into WARM); return how many are now cached."""
        self._check_writable("promote")
        checked = self._keys.check_many(keys)
        if not checked:
            return 0
        self._maybe_probe()
        async with self._lock:
            loaded = await self._load(checked, promote=True, to_hot=True)
        return len(loaded)

    async def demote_to_cold(self, keys: Iterable[str]) -> int:
        """Move bodies of ``keys`` to one COLD segment, then drop them from WARM and HOT; return the count."""
        self._check_writable("demote")
        checked = self._keys.check_many(keys)
        if not checked:
            return 0
        self._maybe_probe()
        async with self._lock:
            now = datetime.now(UTC)
            rows = [
                row for row in (await self._warm.get_many(checked, now)).values() if row.tier is not Tier.COLD
            ]
            if not rows:
                return 0
            records = []
            for row in rows:
                assert row.value is not None
                codec.verify(row.key, row.value, row.checksum)
                records.append(ColdRecord(row.key, row.version, row.checksum, row.category, row.value))
            segment = new_segment_name(now)
            await self._cold.put_segment(
                segment, encode_segment(self.bot_id, records)
            )  # COLD before dropping
            moved = await self._warm.move_many(
                [TierMove(r.key, r.version, Tier.COLD, None, segment) for r in rows]
            )
            await self._cache((), moved)
        if self._s3_flag_pending is not None:
            await self._publish_cold_flag()
        return len(moved)

    # --- coherence --------------------------------------------------------------------------------

    async def verify_coherence(self, page_size: int = 500) -> CoherenceReport:
        """Compare every HOT record's version and checksum with WARM, one SCAN page at a time.

        ``StateUnavailableError`` while HOT is degraded (there is no cache to verify).
        """
        self._maybe_probe()
        self._require_hot("verify coherence")
        return await self._coherence_pass(page_size, repair=False)

    async def repair_coherence(self, page_size: int | None = None) -> CoherenceReport:
        """``verify_coherence``, and every HOT key that disagrees with WARM (older or other version, other
        checksum, missing in WARM, corrupt) is rewritten from WARM if WARM caches it, else deleted from HOT
        (one pipeline per page); ``report.repaired`` counts them. ``create()`` runs this before returning.
        """
        self._maybe_probe()
        self._require_hot("repair coherence")
        return await self._coherence_pass(page_size or self._settings.coherence_page_size, repair=True)

    def _require_hot(self, action: str) -> None:
        if self._hot_state is HotState.DEGRADED:
            raise StateUnavailableError(
                f"cannot {action}: HOT tier degraded since {self._hot_down_since}: {self._hot_last_error}"
            )

    async def _coherence_pass(self, page_size: int, repair: bool) -> CoherenceReport:
        checked = repaired = 0
        mismatches: list[CoherenceMismatch] = []
        pages = aiter(self._hot.scan("*", page_size))
        while True:
            with self._hot_io():
                page = await anext(pages, None)
            if page is None:
                break
            async with self._lock:  # a batch between its commit and its cache update is not a mismatch
                with self._hot_io():
                    hot = await self._hot_page(page)
                warm = await self._warm.get_versions(list(hot))
                found = _compare(hot, warm)
                if repair and found:
                    repaired += await self._repair(found)
            checked += len(hot)
            mismatches.extend(found)
        return CoherenceReport(checked, mismatches, repaired)

    async def _repair(self, found: Sequence[CoherenceMismatch]) -> int:
        """Rewrite mismatching HOT keys from WARM (if WARM caches them) or delete them; caller holds the lock."""
        now = datetime.now(UTC)
        keys = [m.key for m in found]
        puts, drops, _ = _hot_puts(keys, await self._warm.get_many(keys, now), now)
        with self._hot_io():  # WARM is the truth here, even when HOT holds a higher version (lost commits)
            await self._hot.apply(puts, drops, replace=True)
        self._dirty.difference_update(keys)
        return len(keys)

    async def _hot_page(self, keys: list[str]) -> dict[str, HotRecord | None]:
        try:
            return dict(await self._hot.get_many(keys))
        except StateIntegrityError:
            out: dict[str, HotRecord | None] = {}
            for key in keys:  # isolate the malformed record(s)
                try:
                    out.update(await self._hot.get_many([key]))
                except StateIntegrityError:
                    out[key] = None
            return out

    # --- HOT availability: degraded mode, probe, restore -------------------------------------------

    @property
    def degraded_hot(self) -> bool:
        """True while HOT is not serving reads (unreachable, or its hot set is being restored)."""
        return self._hot_state is not HotState.UP

    def health(self) -> StateHealth:
        """HOT cache health, without I/O (for status lines, the health endpoint and metrics)."""
        next_probe = None
        if self._hot_state is HotState.DEGRADED:
            next_probe = max(0.0, self._next_probe - time.monotonic())
        next_cold_probe = None
        if self._cold_state is ColdState.DEGRADED:
            next_cold_probe = max(0.0, self._next_cold_probe - time.monotonic())
        return StateHealth(
            hot_state=self._hot_state,
            hot_down_since=self._hot_down_since,
            last_hot_error=self._hot_last_error,
            dirty_keys=len(self._dirty),
            next_probe_in_seconds=next_probe,
            hot_repaired_at_start=self._repaired_at_start,
            hot_recoveries=self._recoveries,
            last_hot_recovery=self._last_recovery,
            cold_state=self._cold_state,
            cold_down_since=self._cold_down_since,
            last_cold_error=self._cold_last_error,
            cold_spooled_objects=self._cold.spooled_objects,
            cold_spooled_bytes=self._cold.spooled_bytes,
            next_cold_probe_in_seconds=next_cold_probe,
            cold_recoveries=self._cold_recoveries,
            last_cold_recovery=self._last_cold_recovery,
        )

    async def recover_hot(self) -> bool:
        """Probe HOT now (ignoring the backoff) and, if it answers, restore the hot set; return whether HOT
        is up. Operations do this on their own (in a background task) once the backoff interval passed."""
        task = self._probe_task
        if task is not None and not task.done():
            await asyncio.shield(task)
        return await self._probe()

    @contextmanager
    def _hot_io(self) -> Iterator[None]:
        try:
            yield
        except StateUnavailableError as exc:
            self._hot_failed(exc)
            raise

    def _hot_failed(self, exc: BaseException) -> None:
        """HOT did not answer: degrade (WARM serves everything) and schedule the next probe with backoff."""
        now = time.monotonic()
        self._hot_last_error = str(exc)
        if self._hot_state is HotState.UP:
            self._hot_down_since = datetime.now(UTC)
            self._probe_backoff = self._settings.hot_probe_interval_seconds
            self._last_warning = now
            logger.warning(
                "HOT tier %r unavailable: degraded, serving from WARM until it answers again: %s",
                self._hot,
                exc,
            )
        else:  # a probe or a restore failed: back off
            self._probe_backoff = min(self._probe_backoff * 2, self._settings.hot_probe_max_interval_seconds)
            if now - self._last_warning >= self._settings.hot_degraded_warn_interval_seconds:
                self._last_warning = now
                logger.warning(
                    "HOT tier still unavailable since %s (degraded, %d dirty keys, next probe in %.1fs): %s",
                    self._hot_down_since,
                    len(self._dirty),
                    self._probe_backoff,
                    exc,
                )
        self._hot_state = HotState.DEGRADED
        self._next_probe = now + self._probe_backoff

    def _maybe_probe(self) -> None:
        """While degraded, start one background probe (and restore) once the backoff interval has passed.
        A reader never probes: a restore or a spool sync writes."""
        if self._read_only:
            return
        if self._cold_state is ColdState.DEGRADED:
            self._maybe_probe_cold()
        if self._hot_state is not HotState.DEGRADED or self._closed or time.monotonic() < self._next_probe:
            return
        if self._probe_task is not None and not self._probe_task.done():
            return
        self._probe_task = asyncio.get_running_loop().create_task(
            self._probe(), name=f"state-hot-probe-{self.bot_id}"
        )

    async def _probe(self) -> bool:
        async with self._probe_lock:
            if self._hot_state is HotState.UP:
                return True
            if self._closed:
                return False
            try:
                async with asyncio.timeout(self._settings.hot_probe_timeout_seconds):
                    await self._hot.ping()
            except StateUnavailableError as exc:
                self._hot_failed(exc)
                return False
            except TimeoutError:
                timeout = self._settings.hot_probe_timeout_seconds
                self._hot_failed(StateUnavailableError(f"{self._hot!r}: no answer to PING within {timeout}s"))
                return False
            try:
                return await self._restore_hot()
            except Exception as exc:  # WARM down mid-restore, or a bug: stay degraded, retry later
                if not isinstance(exc, StateError):
                    logger.exception("restoring the HOT tier failed")
                if self._hot_state is not HotState.DEGRADED:
                    self._hot_failed(exc)
                return False

    async def _restore_hot(self) -> bool:
        """HOT answers again: rewrite the hot set from WARM (and evict dirty keys that left it), one pipeline
        per page, then verify every HOT key against WARM, repairing any that disagree. Until this finished,
        reads use WARM; writes already go through to HOT."""
        started = time.perf_counter()
        self._hot_state = HotState.RESTORING
        snapshot = set(self._dirty)
        dirty = set(snapshot)
        size = self._settings.coherence_page_size
        restored = evicted = corrupt = 0
        after = ""
        while True:
            async with self._lock:
                if self._hot_state is not HotState.RESTORING:
                    return False  # a write-through failed meanwhile: degraded again
                now = datetime.now(UTC)
                rows = await self._warm.page_rows(after, size, now, tier=Tier.HOT)
                keys = [row.key for row in rows]
                puts, drops, bad = _hot_puts(keys, {row.key: row for row in rows}, now)
                with self._hot_io():  # under the lock, from WARM: replaces whatever HOT holds
                    await self._hot.apply(puts, drops, replace=True)
            restored, corrupt = restored + len(puts), corrupt + bad
            dirty.difference_update(keys)
            if len(rows) < size:
                break
            after = keys[-1]
        for chunk in _chunks(sorted(dirty), size):  # dirty keys no longer in the hot set (deleted, demoted)
            async with self._lock:
                if self._hot_state is not HotState.RESTORING:
                    return False
                now = datetime.now(UTC)
                puts, drops, bad = _hot_puts(chunk, await self._warm.get_many(chunk, now), now)
                with self._hot_io():
                    await self._hot.apply(puts, drops, replace=True)
            restored, evicted, corrupt = restored + len(puts), evicted + len(drops) - bad, corrupt + bad
        report = await self._coherence_pass(size, repair=True)  # key by key: version + checksum
        async with self._lock:
            if self._hot_state is not HotState.RESTORING:
                return False
            self._dirty.difference_update(snapshot)
            self._hot_state = HotState.UP
        recovered = datetime.now(UTC)
        recovery = HotRecovery(
            detected_at=self._hot_down_since or recovered,
            recovered_at=recovered,
            restore_seconds=time.perf_counter() - started,
            keys_restored=restored,
            keys_evicted=evicted,
            keys_verified=report.checked,
            mismatches_repaired=report.repaired,
            corrupt_in_warm=corrupt,
        )
        self._recoveries += 1
        self._last_recovery = recovery
        self._hot_down_since = self._hot_last_error = None
        self._probe_backoff = self._settings.hot_probe_interval_seconds
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

    # --- stats ------------------------------------------------------------------------------------

    async def get_storage_stats(self) -> StorageStats:
        """Counts and sizes of this bot's state in each tier (``hot_keys`` None while HOT is degraded)."""
        self._maybe_probe()
        by_tier, value_bytes = await self._warm.stats(datetime.now(UTC))
        cold_objects, cold_bytes = await self._cold.stats()
        hot_keys: int | None = None
        if self._hot_state is not HotState.DEGRADED:
            try:
                hot_keys = await self._hot.count()
            except StateUnavailableError as exc:
                self._hot_failed(exc)
        return StorageStats(
            bot_id=self.bot_id,
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
            degraded_hot=self._hot_state is not HotState.UP,
            hot_dirty_keys=len(self._dirty),
            hot_repaired_at_start=self._repaired_at_start,
            hot_recoveries=self._recoveries,
            last_hot_recovery=self._last_recovery,
            degraded_cold=self._cold_state is not ColdState.UP,
            cold_spooled_objects=self._cold.spooled_objects,
            cold_spooled_bytes=self._cold.spooled_bytes,
            cold_recoveries=self._cold_recoveries,
            last_cold_recovery=self._last_cold_recovery,
        )

    # --- COLD availability: spool, probe, sync -------------------------------------------------------

    @property
    def degraded_cold(self) -> bool:
        """True while COLD writes go to the local spool (COLD unreachable, or the spool is being synced)."""
        return self._cold_state is not ColdState.UP

    async def recover_cold(self) -> bool:
        """Probe COLD now (ignoring the backoff) and, if it answers, sync the spool; return whether COLD is
        up. Operations do this on their own (in a background task) once the backoff interval passed."""
        task = self._cold_probe_task
        if task is not None and not task.done():
            await asyncio.shield(task)
        return await self._probe_cold()

    def _cold_failed(self, exc: BaseException, *, log: bool = True) -> None:
        """COLD did not answer: spool COLD writes and schedule the next probe with backoff (the spooling
        wrapper calls this on every ``StateUnavailableError`` of the COLD store)."""
        now = time.monotonic()
        self._cold_last_error = str(exc)
        if self._cold_state is ColdState.UP:
            self._cold_down_since = datetime.now(UTC)
            self._cold_backoff = self._settings.cold_probe_interval_seconds
            self._cold_synced = (0, 0)
            self._s3_flag_pending = False
            if log:
                self._last_cold_warning = now
                logger.warning(
                    "COLD tier %r unavailable: degraded, COLD writes go to the spool %s until it answers: %s",
                    self._cold,
                    self._cold.spool_dir,
                    exc,
                )
        else:  # a probe, a sync or a read of the COLD store failed: back off
            self._cold_backoff = min(self._cold_backoff * 2, self._settings.cold_probe_max_interval_seconds)
            if now - self._last_cold_warning >= self._settings.cold_degraded_warn_interval_seconds:
                self._last_cold_warning = now
                logger.warning(
                    "COLD tier still unavailable since %s (%d objects / %d bytes spooled, next probe in %.1fs): %s",
                    self._cold_down_since,
                    self._cold.spooled_objects,
                    self._cold.spooled_bytes,
                    self._cold_backoff,
                    exc,
                )
        self._cold_state = ColdState.DEGRADED
        self._cold.spooling = True
        self._next_cold_probe = now + self._cold_backoff

    def _maybe_probe_cold(self) -> None:
        if self._closed or time.monotonic() < self._next_cold_probe:
            return
        if self._cold_probe_task is not None and not self._cold_probe_task.done():
            return
        self._cold_probe_task = asyncio.get_running_loop().create_task(
            self._probe_cold(), name=f"state-cold-probe-{self.bot_id}"
        )

    async def _probe_cold(self) -> bool:
        async with self._cold_probe_lock:
            if self._cold_state is ColdState.UP:
                return True
            if self._closed:
                return False
            timeout = self._settings.cold_probe_timeout_seconds
            try:
                async with asyncio.timeout(timeout):
                    await self._cold.probe()
            except StateUnavailableError as exc:
                self._cold_failed(exc)
                return False
            except TimeoutError:
                self._cold_failed(StateUnavailableError(f"{self._cold!r}: no answer within {timeout}s"))
                return False
            try:
                return await self._sync_cold()
            except Exception as exc:  # S3 failed again mid-sync, or a bug: stay degraded, retry later
                if not isinstance(exc, StateError):
                    logger.exception("syncing the COLD spool failed")
                if self._cold_state is not ColdState.DEGRADED:
                    self._cold_failed(exc)
                return False

    async def _sync_cold(self) -> bool:
        """COLD answers again: upload the spool oldest first (each object verified, then deleted from the
        spool); when it is empty, COLD writes go to COLD again and ``system:s3_available`` becomes true."""
        started = time.perf_counter()
        self._cold_state = ColdState.SYNCING

        def synced(entry: SpooledObject) -> None:
            self._cold_synced = (self._cold_synced[0] + 1, self._cold_synced[1] + entry.size)

        await self._cold.sync(synced)
        if self._cold_state is not ColdState.SYNCING:  # a COLD read failed meanwhile: degraded again
            self._cold.spooling = True
            return False
        self._cold_state = ColdState.UP
        recovered = datetime.now(UTC)
        objects, nbytes = self._cold_synced
        recovery = ColdRecovery(
            detected_at=self._cold_down_since or recovered,
            recovered_at=recovered,
            sync_seconds=time.perf_counter() - started,
            objects_synced=objects,
            bytes_synced=nbytes,
        )
        self._cold_recoveries += 1
        self._last_cold_recovery = recovery
        self._cold_down_since = self._cold_last_error = None
        self._cold_backoff = self._settings.cold_probe_interval_seconds
        self._cold_synced = (0, 0)
        self._s3_flag_pending = True
        logger.warning(
            "COLD tier recovered after %.3fs degraded: %d spooled objects (%d bytes) synced and verified in %.3fs",
            recovery.outage_seconds,
            objects,
            nbytes,
            recovery.sync_seconds,
        )
        await self._publish_cold_flag()
        return True

    async def _republish_cold_flag(self) -> None:
        """Make ``system:s3_available`` agree with the COLD state (at start, and after a checkpoint restore
        rewrote or deleted it). A missing record means available: nothing is written while COLD is up."""
        stored = await self._fetch([S3_AVAILABLE_KEY])
        available = self._cold_state is ColdState.UP
        self._s3_flag_pending = None
        if S3_AVAILABLE_KEY in stored:
            if codec.decode_value(stored[S3_AVAILABLE_KEY], S3_AVAILABLE_KEY) is not available:
                self._s3_flag_pending = available
        elif not available:
            self._s3_flag_pending = False
        await self._publish_cold_flag()

    async def _publish_cold_flag(self) -> None:
        """Write ``system:s3_available`` if it changed. Never raises: the caller's own write succeeded; if
        WARM fails the value stays pending and the next write retries."""
        async with self._flag_lock:
            value = self._s3_flag_pending
            if value is None or self._closed or self._read_only:
                return
            write = self._prepare([StateWrite(S3_AVAILABLE_KEY, value, StateCategory.METADATA)])
            try:
                async with self._lock:
                    await self._commit(write)
            except StateError as exc:
                logger.warning(
                    "writing %s=%s failed (retried with the next write): %s", S3_AVAILABLE_KEY, value, exc
                )
                return
            if self._s3_flag_pending is value:
                self._s3_flag_pending = None


def _compare(
    hot: Mapping[str, HotRecord | None], warm: Mapping[str, tuple[int, str]]
) -> list[CoherenceMismatch]:
    out: list[CoherenceMismatch] = []
    for key, record in hot.items():
        stored = warm.get(key)
        warm_version = None if stored is None else stored[0]
        if record is None:
            out.append(CoherenceMismatch(key, "corrupt_hot", None, warm_version))
            continue
        if codec.checksum(record.value) != record.checksum:
            kind: str | None = "corrupt_hot"
        elif stored is None:
            kind = "missing_in_warm"
        elif stored[0] != record.version:
            kind = "version"
        elif stored[1] != record.checksum:
            kind = "checksum"
        else:
            kind = None
        if kind is not None:
            out.append(CoherenceMismatch(key, kind, record.version, warm_version))
    return out


def _hot_puts(
    keys: Sequence[str], rows: Mapping[str, WarmRow], now: datetime
) -> tuple[list[HotRecord], list[str], int]:
    """HOT records for the ``keys`` WARM caches (body verified); the others are to be deleted from HOT.
    Returns (puts, deletes, how many deletes are WARM rows failing their checksum)."""
    puts: list[HotRecord] = []
    drops: list[str] = []
    corrupt = 0
    for key in keys:
        row = rows.get(key)
        if row is None or row.tier is not Tier.HOT or row.value is None:
            drops.append(key)
        elif codec.checksum(row.value) != row.checksum:
            corrupt += 1
            drops.append(key)
            logger.error("state key %r: WARM record fails its checksum; not cached (reads raise)", key)
        else:
            puts.append(_hot_record(row, row.value, now))
    return puts, drops, corrupt


def _target_tier(row: WarmRow) -> Tier:
    """Where a read promotes a row: HOT kinds to HOT, WARM kinds to WARM, COLD kinds stay in COLD."""
    if row.tier is Tier.HOT:
        return Tier.HOT
    try:
        return StateCategory(row.category).tier
    except ValueError:
        return Tier.WARM


def _hot_record(row: WarmRow, value: bytes, now: datetime) -> HotRecord:
    ttl_ms = None
    if row.expires_at is not None:
        ttl_ms = max(1, int((row.expires_at - now).total_seconds() * 1000))
    return HotRecord(row.key, row.version, row.checksum, value, row.updated_at, ttl_ms)


def _kinds(mismatches: Sequence[CoherenceMismatch]) -> str:
    counts: dict[str, int] = {}
    for m in mismatches:
        counts[m.kind] = counts.get(m.kind, 0) + 1
    return ", ".join(f"{kind}={n}" for kind, n in sorted(counts.items())) or "none"


def _chunks(keys: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]
