"""HOT against WARM: coherence verify / repair passes.

WARM is the truth; HOT is a cache of the hot set (the rows WARM marks ``tier = hot``). ``HotCoherence`` works
on the tiers the ``StateManager`` owns, under its write lock (a batch between its commit and its cache update
is not a mismatch), and reports HOT failures to the HOT ``TierSupervisor``:

``check`` pages through HOT (SCAN), compares every key's version and checksum with WARM and, when asked,
rewrites the ones that disagree from WARM (or deletes them from HOT). The helpers below are shared with the
hot-set restore (``hot_sync.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime

from bot_v2.errors import StateIntegrityError
from bot_v2.state import codec
from bot_v2.state.models import (
    CoherenceMismatch,
    CoherenceReport,
    HotRecord,
    HotRecovery,
    HotState,
    Tier,
    WarmRow,
)
from bot_v2.state.supervisor import TierSupervisor
from bot_v2.state.tiers.hot import HotTier
from bot_v2.state.tiers.warm import WarmTier

logger = logging.getLogger(__name__)


class HotCoherence:
    """Coherence passes over one manager's HOT and WARM tiers."""

    def __init__(
        self,
        hot: HotTier,
        warm: WarmTier,
        lock: asyncio.Lock,
        dirty: set[str],
        supervisor: TierSupervisor[HotState, HotRecovery],
    ) -> None:
        self._hot = hot
        self._warm = warm
        self._lock = lock
        self._dirty = dirty  # the manager's set, shared: keys whose HOT copy may be stale
        self._hot_state = supervisor  # HOT errors degrade the manager

    # --- verify / repair ----------------------------------------------------------------------------

    async def check(self, page_size: int, repair: bool, *, values: bool = True) -> CoherenceReport:
        """Compare every HOT key's version and checksum with WARM, one SCAN page at a time; with ``repair``
        rewrite (or delete) the keys that disagree.

        ``values=True`` reads every HOT record and checks its body against its checksum too. ``values=False``
        (the start-up repair) compares only what the records' headers say (``HotTier.versions``: ~90 bytes a
        key, the values stay in Redis) with WARM, reading both concurrently: it finds every stale, foreign or
        malformed record; a body corrupted under an intact header is left to reads, which verify every body
        they serve, and to ``values=True`` passes."""
        checked = repaired = 0
        mismatches: list[CoherenceMismatch] = []
        pages = aiter(self._hot.scan("*", page_size))
        while True:
            with self._hot_state.io():
                page = await anext(pages, None)
            if page is None:
                break
            async with self._lock:  # a batch between its commit and its cache update is not a mismatch
                if values:
                    with self._hot_state.io():
                        hot = await self.read_page(page)
                    found = compare(hot, await self._warm.get_versions(list(hot)))
                    checked += len(hot)
                else:
                    heads, warm = await self._headers_and_versions(page)
                    found = compare_headers(heads, warm)
                    checked += len(heads)
                if repair and found:
                    repaired += await self._repair(found)
            mismatches.extend(found)
        return CoherenceReport(checked, mismatches, repaired)

    async def _headers_and_versions(
        self, keys: list[str]
    ) -> tuple[dict[str, tuple[int, str] | None], dict[str, tuple[int, str]]]:
        """HOT's (version, checksum) headers and WARM's versions of ``keys``, read at the same time."""
        heads = asyncio.ensure_future(self._hot.versions(keys))
        try:
            warm = await self._warm.get_versions(keys)
        except BaseException:
            heads.cancel()
            await asyncio.gather(heads, return_exceptions=True)
            raise
        with self._hot_state.io():
            return await heads, warm

    async def _repair(self, found: Sequence[CoherenceMismatch]) -> int:
        """Rewrite mismatching HOT keys from WARM (if WARM caches them) or delete them; caller holds the lock."""
        now = datetime.now(UTC)
        keys = [m.key for m in found]
        puts, drops, _ = hot_puts(keys, await self._warm.get_many(keys, now), now)
        with (
            self._hot_state.io()
        ):  # WARM is the truth here, even when HOT holds a higher version (lost commits)
            await self._hot.apply(puts, drops, replace=True)
        self._dirty.difference_update(keys)
        return len(keys)

    async def read_page(self, keys: Sequence[str]) -> dict[str, HotRecord | None]:
        """The HOT records of ``keys`` (one MGET; missing keys absent, None for a malformed record)."""
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


def compare(
    hot: Mapping[str, HotRecord | None], warm: Mapping[str, tuple[int, str]]
) -> list[CoherenceMismatch]:
    """The mismatches of HOT records against WARM (version, checksum); None is a malformed HOT record."""
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


def compare_headers(
    hot: Mapping[str, tuple[int, str] | None], warm: Mapping[str, tuple[int, str]]
) -> list[CoherenceMismatch]:
    """``compare`` for HOT headers (version, checksum) only: None is a malformed HOT record."""
    out: list[CoherenceMismatch] = []
    for key, head in hot.items():
        stored = warm.get(key)
        warm_version = None if stored is None else stored[0]
        if head is None:
            kind: str | None = "corrupt_hot"
        elif stored is None:
            kind = "missing_in_warm"
        elif stored[0] != head[0]:
            kind = "version"
        elif stored[1] != head[1]:
            kind = "checksum"
        else:
            kind = None
        if kind is not None:
            out.append(CoherenceMismatch(key, kind, None if head is None else head[0], warm_version))
    return out


def hot_puts(
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
            puts.append(hot_record(row, row.value, now))
    return puts, drops, corrupt


def hot_record(row: WarmRow, value: bytes, now: datetime) -> HotRecord:
    """The HOT record of a WARM row (its remaining TTL in ms, at least 1)."""
    ttl_ms = None
    if row.expires_at is not None:
        ttl_ms = max(1, int((row.expires_at - now).total_seconds() * 1000))
    return HotRecord(row.key, row.version, row.checksum, value, row.updated_at, ttl_ms)


def kinds(mismatches: Sequence[CoherenceMismatch]) -> str:
    """``kind=count`` pairs for a log line."""
    counts: dict[str, int] = {}
    for m in mismatches:
        counts[m.kind] = counts.get(m.kind, 0) + 1
    return ", ".join(f"{kind}={n}" for kind, n in sorted(counts.items())) or "none"


def chunks(keys: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


async def hot_set_rows(warm: WarmTier, page_size: int) -> AsyncIterator[WarmRow]:
    """The rows WARM caches in HOT (the hot set), in key order, ``page_size`` at a time."""
    after = ""
    while True:
        rows = await warm.page_rows(after, page_size, datetime.now(UTC), tier=Tier.HOT)
        for row in rows:
            yield row
        if len(rows) < page_size:
            return
        after = rows[-1].key
