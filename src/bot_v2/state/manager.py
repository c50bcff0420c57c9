"""``StateManager``: the one async facade the bot keeps all its state in (HOT / WARM / COLD tiers).

Rules it keeps (DESIGN.md "State: tiers, batches, coherence"):

* A batch is one WARM statement (one transaction) plus one HOT pipeline; COLD gets one segment per batch.
* The cache is written only after the durable commit; a failed commit caches nothing.
* Reads go HOT -> WARM -> COLD and promote on the way up; every body is checksum-verified before use.
* Demotion writes COLD before the body leaves the hotter tiers.
* Writes, deletes and promotions are serialized by one lock, so the cache never goes back in time.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, Self

from bot_v2.errors import StateEncodingError, StateIntegrityError, StateUnavailableError
from bot_v2.state import codec
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import (
    CoherenceMismatch,
    CoherenceReport,
    ColdRecord,
    HotRecord,
    StateCategory,
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
from bot_v2.state.tiers.warm import WarmTier

logger = logging.getLogger(__name__)


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
        self._cold = cold
        self._lock = asyncio.Lock()
        self._suspect: set[str] = set()  # keys whose HOT copy may be stale (a cache update failed)
        self._closed = False

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
        hot, warm, cold = tiers if tiers is not None else build_tiers(settings, keyspace)
        opened: list[HotTier | WarmTier | ColdTier] = []
        try:
            for tier in (warm, hot, cold):
                try:
                    async with asyncio.timeout(settings.connect_timeout_seconds * 2):
                        await tier.connect()
                except TimeoutError:
                    raise StateUnavailableError(
                        f"{tier!r}: no answer within {settings.connect_timeout_seconds}s"
                    ) from None
                opened.append(tier)
        except BaseException:
            for tier in reversed(opened):
                await tier.close()
            raise
        logger.info("state manager ready: %r", settings)
        return cls(settings, keyspace, hot, warm, cold)

    async def close(self) -> None:
        """Close the tiers (COLD, HOT, then WARM). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
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
        prepared = self._prepare(writes)
        if not prepared:
            return {}
        async with self._lock:
            return await self._commit(prepared)

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
        """Update HOT after a durable commit; on failure WARM stays authoritative and the keys are suspect."""
        if not puts and not evict:
            return
        touched = [r.key for r in puts] + list(evict)
        try:
            await self._hot.apply(puts, evict)
        except StateUnavailableError as exc:
            self._suspect.update(touched)
            logger.warning(
                "HOT update of %d keys failed after commit (WARM holds them): %s", len(touched), exc
            )
            return
        if self._suspect:
            self._suspect.difference_update(touched)

    async def delete_state(self, key: str) -> bool:
        """Delete ``key`` from every tier; return whether it existed."""
        return await self.batch_delete_state([key]) == 1

    async def batch_delete_state(self, keys: Iterable[str]) -> int:
        """Delete ``keys`` (one WARM transaction, then one HOT pipeline); return how many really existed."""
        checked = self._keys.check_many(keys)
        if not checked:
            return 0
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
        cacheable = [k for k in keys if k not in self._suspect] if self._suspect else keys
        if cacheable:
            for key, record in (await self._hot.get_many(cacheable)).items():
                codec.verify(key, record.value, record.checksum)
                found[key] = record.value
        misses = [k for k in keys if k not in found]
        if misses:
            async with self._lock:  # no write may slip between our WARM read and the promotion
                found.update(await self._load(misses, promote=True))
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
        if not hot_only:
            return await self._warm.keys_matching(pattern, datetime.now(UTC))
        keys: set[str] = set()
        async for page in self._hot.scan(pattern):
            keys.update(page)
        return sorted(keys)

    # --- tier moves -------------------------------------------------------------------------------

    async def promote_to_hot(self, keys: Iterable[str]) -> int:
        """Cache ``keys`` in HOT (fetching COLD bodies back into WARM); return how many are now cached."""
        checked = self._keys.check_many(keys)
        if not checked:
            return 0
        async with self._lock:
            loaded = await self._load(checked, promote=True, to_hot=True)
        return len(loaded)

    async def demote_to_cold(self, keys: Iterable[str]) -> int:
        """Move bodies of ``keys`` to one COLD segment, then drop them from WARM and HOT; return the count."""
        checked = self._keys.check_many(keys)
        if not checked:
            return 0
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
        return len(moved)

    # --- checks -----------------------------------------------------------------------------------

    async def verify_coherence(self, page_size: int = 500) -> CoherenceReport:
        """Compare every HOT record's version and checksum with WARM, one SCAN page at a time."""
        checked = 0
        mismatches: list[CoherenceMismatch] = []
        async for page in self._hot.scan("*", page_size):
            async with self._lock:  # a batch between its commit and its cache update is not a mismatch
                hot = await self._hot_page(page)
                warm = await self._warm.get_versions(list(hot))
            for key, record in hot.items():
                checked += 1
                if record is None:
                    mismatches.append(CoherenceMismatch(key, "corrupt_hot", None, warm.get(key, (None,))[0]))
                    continue
                stored = warm.get(key)
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
                    mismatches.append(
                        CoherenceMismatch(key, kind, record.version, None if stored is None else stored[0])
                    )
        return CoherenceReport(checked, mismatches)

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

    async def get_storage_stats(self) -> StorageStats:
        """Counts and sizes of this bot's state in each tier."""
        by_tier, value_bytes = await self._warm.stats(datetime.now(UTC))
        cold_objects, cold_bytes = await self._cold.stats()
        return StorageStats(
            bot_id=self.bot_id,
            hot_backend=self._hot.name,
            warm_backend=self._warm.name,
            cold_backend=self._cold.name,
            hot_keys=await self._hot.count(),
            warm_records=sum(by_tier.values()),
            warm_records_by_tier=by_tier,
            warm_value_bytes=value_bytes,
            cold_objects=cold_objects,
            cold_bytes=cold_bytes,
            schema_version=self._warm.schema_version,
        )


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
