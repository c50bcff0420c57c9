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
from typing import Any, TypeVar

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
T = TypeVar("T")

_SCAN_PAGES = 10  # header pages per SCAN call in the start-up repair (``check_headers``)


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

    async def check(self, page_size: int, repair: bool) -> CoherenceReport:
        """Compare every HOT key's version and checksum with WARM, one SCAN page at a time, reading every HOT
        record and checking its body against its checksum too; with ``repair`` rewrite (or delete) the keys
        that disagree. (The start-up repair reads headers only: ``check_headers``.)"""
        checked = repaired = 0
        mismatches: list[CoherenceMismatch] = []
        pages = aiter(self._hot.scan("*", page_size))
        while True:
            with self._hot_state.io():
                page = await anext(pages, None)
            if page is None:
                break
            async with self._lock:  # a batch between its commit and its cache update is not a mismatch
                with self._hot_state.io():
                    hot = await self.read_page(page)
                found = compare(hot, await self._warm.get_versions(list(hot)))
                checked += len(hot)
                if repair and found:
                    repaired += await self._repair(found)
            mismatches.extend(found)
        return CoherenceReport(checked, mismatches, repaired)

    async def check_headers(self, page_size: int, repair: bool) -> CoherenceReport:
        """The start-up repair's pass: compares only what HOT's record headers say (``HotTier.versions``: ~128
        bytes a key, the values stay in Redis) with WARM. It finds every stale, foreign or malformed record; a
        body corrupted under an intact header is left to reads, which verify every body they serve, and to
        ``check``.

        PostgreSQL, Redis and this process work at the same time. WARM reads the hot set's (key, version,
        checksum) in key-range pages of ``page_size`` (``hot_versions``: one ordered range of the index
        ``(bot_id, tier, key)`` each) while SCAN lists HOT's names (``page_size * _SCAN_PAGES`` a call). If
        the names are listed before the first page arrives (a small or an empty HOT), the headers of all of
        them are asked for at once (``RedisHotTier.versions``: a Lua script, one round trip). Otherwise WARM
        drives: the headers of each page's keys are asked for as soon as it arrives, while WARM reads the next
        page (once the names are listed, the keys HOT does not hold are left out: after a Redis restart, all),
        and the keys HOT holds outside the hot set (strays: demoted, deleted, leftovers in this bot's key space)
        are asked for at the end. The strays' WARM versions are read last. A hot-set key HOT does not hold is
        not a mismatch (reads fill it). The whole pass holds the manager lock and every header in memory (~150
        bytes a key): it runs before the manager serves anything."""
        heads: dict[str, tuple[int, str] | None] = {}
        warm: dict[str, tuple[int, str]] = {}
        reads: list[asyncio.Future[dict[str, tuple[int, str] | None]]] = []
        async with self._lock:
            names = asyncio.ensure_future(self._names(page_size * _SCAN_PAGES))
            first = asyncio.ensure_future(self._warm.hot_versions("", page_size, datetime.now(UTC)))
            try:
                await asyncio.wait((names, first), return_when=asyncio.FIRST_COMPLETED)
                all_asked = names.done() and not names.exception()
                if all_asked and names.result():
                    reads.append(asyncio.ensure_future(self._hot.versions(list(names.result()))))
                page = await first  # a WARM failure propagates from here as WARM's, not as HOT's
                while True:
                    warm.update(page)
                    keys = [] if all_asked else list(page)
                    if keys and names.done() and not names.exception():
                        held = names.result()
                        keys = [key for key in keys if key in held]
                    if keys:
                        reads.append(asyncio.ensure_future(self._hot.versions(keys)))
                    if len(page) < page_size:
                        break
                    page = await self._warm.hot_versions(next(reversed(page)), page_size, datetime.now(UTC))
                with self._hot_state.io():
                    listed = await names
                    strays = list(listed.keys() - warm.keys())
                    if strays and not all_asked:
                        reads.append(asyncio.ensure_future(self._hot.versions(strays)))
                    for part in await asyncio.gather(*reads):
                        heads.update(part)
                if strays:
                    warm.update(await self._warm.get_versions(strays))
            finally:  # an error: cancel what still runs, collect every outcome
                tasks: list[asyncio.Future[Any]] = [names, first, *reads]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            found = compare_headers(heads, warm)
            repaired = 0
            for chunk in chunks(found, page_size) if repair else ():
                repaired += await self._repair(chunk)
        return CoherenceReport(len(heads), found, repaired)

    async def _names(self, count: int) -> dict[str, None]:
        """Every key HOT holds (SCAN pages of about ``count``), as a dict for its C-speed key-set views."""
        held: dict[str, None] = {}
        async for page in self._hot.scan("*", count):
            held.update(dict.fromkeys(page))
        return held

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
    if hot.items() <= warm.items():  # all coherent (the usual start): one comparison in C, no loop here
        return []
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


def chunks(keys: Sequence[T], size: int) -> Iterator[Sequence[T]]:
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
