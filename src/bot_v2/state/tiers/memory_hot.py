"""In-process HOT tier (the dev profile default): a dict with per-key expiry; same semantics as Redis."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence

from bot_v2.state.keys import glob_to_regex
from bot_v2.state.models import HotRecord
from bot_v2.state.tiers.hot import PackedRecord, pack_record, unpack_record


class MemoryHotTier:
    """HOT tier kept in this process; lost on exit (WARM is the durable copy)."""

    name = "memory"

    def __init__(self) -> None:
        self._data: dict[str, tuple[HotRecord, float | None]] = {}

    async def connect(self) -> None:
        """Nothing to connect."""

    async def ping(self) -> None:
        """Always answers."""

    def _live(self, key: str, now: float) -> HotRecord | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        record, deadline = entry
        if deadline is not None and deadline <= now:
            del self._data[key]
            return None
        return record

    async def get_many(self, keys: Sequence[str]) -> dict[str, HotRecord]:
        now = time.monotonic()
        found: dict[str, HotRecord] = {}
        for key in keys:
            record = self._live(key, now)
            if record is not None:
                found[key] = record
        return found

    async def versions(self, keys: Sequence[str]) -> dict[str, tuple[int, str] | None]:
        now = time.monotonic()
        found: dict[str, tuple[int, str] | None] = {}
        for key in keys:
            record = self._live(key, now)
            if record is not None:
                found[key] = (record.version, record.checksum)
        return found

    async def differing(self, records: Sequence[PackedRecord]) -> list[str]:
        now = time.monotonic()
        out: list[str] = []
        for record in records:
            held = self._live(record.key, now)
            if held is None or pack_record(held) != record.packed:
                out.append(record.key)
        return out

    async def put_packed(
        self, records: Sequence[PackedRecord], deletes: Sequence[str] = (), *, read_back: bool = False
    ) -> list[str]:
        puts = [unpack_record(r.key, r.packed)._replace(ttl_ms=r.ttl_ms) for r in records if r.packed]
        await self.apply(puts, deletes, replace=True)
        return await self.differing([r for r in records if r.packed]) if read_back else []

    async def apply(
        self, puts: Sequence[HotRecord], deletes: Sequence[str] = (), *, replace: bool = False
    ) -> int:
        """Version-guarded puts, then deletes: the same rule as Redis (see ``HotTier.apply``)."""
        now = time.monotonic()
        refused = 0
        for record in puts:
            held = None if replace else self._live(record.key, now)
            if held is not None and held.version > record.version:
                refused += 1
            elif held is not None and _same_record(held, record):
                pass  # left as it is, TTL included
            elif record.ttl_ms is None:
                self._data[record.key] = (record, None)
            elif record.ttl_ms > 0:
                self._data[record.key] = (record, now + record.ttl_ms / 1000)
            else:
                self._data.pop(record.key, None)
        for key in deletes:
            self._data.pop(key, None)
        return refused

    async def delete_many(self, keys: Sequence[str]) -> int:
        now = time.monotonic()
        existed = 0
        for key in keys:
            if self._live(key, now) is not None:
                existed += 1
            self._data.pop(key, None)
        return existed

    async def scan(self, pattern: str = "*", page_size: int = 500) -> AsyncIterator[list[str]]:
        matcher = re.compile(glob_to_regex(pattern), re.S)
        now = time.monotonic()
        keys = [key for key in list(self._data) if matcher.match(key) and self._live(key, now) is not None]
        for start in range(0, len(keys), page_size):
            yield keys[start : start + page_size]

    async def count(self) -> int:
        now = time.monotonic()
        return sum(1 for key in list(self._data) if self._live(key, now) is not None)

    async def close(self) -> None:
        self._data.clear()


def _same_record(a: HotRecord, b: HotRecord) -> bool:
    return (a.version, a.checksum, a.value) == (b.version, b.checksum, b.value)
