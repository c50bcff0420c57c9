"""The durable side of the ``StateManager``: record I/O on WARM and COLD, below the HOT cache.

The manager validates a batch with ``prepare`` outside its lock (bad input writes nothing) and runs the rest
under it; each call returns what HOT must cache or evict, which the manager writes only after the durable
part succeeded:

* ``commit``: COLD segment first, then one WARM transaction;
* ``load``: read WARM (and COLD bodies), verify, promote rows to the tier their category reads from;
* ``demote``: bodies to one COLD segment before they leave WARM;
* ``read_cold``: bodies of COLD rows from their segments, each verified against its checksum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from bot_v2.errors import StateEncodingError, StateIntegrityError
from bot_v2.state import codec
from bot_v2.state.coherence import hot_record
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import (
    ColdRecord,
    HotRecord,
    StateCategory,
    StateWrite,
    Tier,
    TierMove,
    WarmRow,
    WarmWrite,
)
from bot_v2.state.tiers.cold import ColdTier, decode_segment, encode_segment, new_segment_name
from bot_v2.state.tiers.warm import WarmTier


class Prepared(NamedTuple):
    """One validated, encoded write."""

    key: str
    category: StateCategory
    tier: Tier
    value: bytes
    checksum: str
    ttl_ms: int | None


class Loaded(NamedTuple):
    """Verified bodies of the keys found, and the HOT records to cache for the ones promoted."""

    values: dict[str, bytes]
    puts: list[HotRecord]


class Committed(NamedTuple):
    """A committed batch: key -> new version, and what HOT must now cache / evict."""

    versions: dict[str, int]
    puts: list[HotRecord]
    evict: list[str]


def prepare(writes: Sequence[StateWrite], keys: KeySpace, max_value_bytes: int) -> list[Prepared]:
    """Check every key, category, value size and TTL and encode every value; a later write of a key wins."""
    check = keys.check
    out: dict[str, Prepared] = {}
    for write in writes:
        key = check(write.key)
        category = _category(key, write.category)
        data = codec.encode_value(write.value, key)
        if len(data) > max_value_bytes:
            raise StateEncodingError(
                f"state key {key!r}: value is {len(data)} bytes, limit is {max_value_bytes}"
            )
        out.pop(key, None)
        out[key] = Prepared(
            key, category, category.tier, data, codec.checksum(data), _ttl_ms(key, write.ttl_seconds)
        )
    return list(out.values())


async def commit(prepared: Sequence[Prepared], cold: ColdTier, warm: WarmTier, bot_id: str) -> Committed:
    """COLD segment first (a failed WARM commit then leaves only an unreferenced segment), then one WARM
    transaction; the caller holds the manager lock and caches ``puts`` / ``evict`` in HOT."""
    now = datetime.now(UTC)
    segment: str | None = None
    cold_writes = [p for p in prepared if p.tier is Tier.COLD]
    if cold_writes:
        segment = new_segment_name(now)
        records = [ColdRecord(p.key, None, p.checksum, p.category.value, p.value) for p in cold_writes]
        await cold.put_segment(segment, encode_segment(bot_id, records))
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
    stored = await warm.upsert_many(rows, now)
    puts: list[HotRecord] = []
    evict: list[str] = []
    for p in prepared:
        version, tier = stored[p.key]
        if tier is Tier.HOT:
            puts.append(HotRecord(p.key, version, p.checksum, p.value, now, p.ttl_ms))
        elif p.tier is Tier.COLD:
            evict.append(p.key)
    return Committed({key: version for key, (version, _) in stored.items()}, puts, evict)


async def load(
    warm: WarmTier, cold: ColdTier, keys: Sequence[str], *, promote: bool, to_hot: bool = False
) -> Loaded:
    """Read ``keys`` from WARM (and COLD), verify every body, and (``promote``) move each row to the tier
    its category reads from (``to_hot``: to HOT); the caller holds the lock and caches ``puts``."""
    now = datetime.now(UTC)
    rows = await warm.get_many(keys, now)
    out: dict[str, bytes] = {}
    puts: list[HotRecord] = []
    moves: list[TierMove] = []
    cold_rows = [row for row in rows.values() if row.tier is Tier.COLD]
    bodies = await read_cold(cold, cold_rows) if cold_rows else {}
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
            puts.append(hot_record(row, value, now))
        if target is not row.tier and target is not Tier.COLD:
            moves.append(TierMove(key, row.version, target, value, None))
    if moves:
        moved = set(await warm.move_many(moves))
        puts = [p for p in puts if p.key in moved or rows[p.key].tier is Tier.HOT]
    return Loaded(out, puts)


async def demote(warm: WarmTier, cold: ColdTier, keys: Sequence[str], bot_id: str) -> list[str]:
    """Move the bodies of ``keys`` to one COLD segment (written before they leave WARM); return the keys
    moved, which the caller (holding the lock) evicts from HOT."""
    now = datetime.now(UTC)
    rows = [row for row in (await warm.get_many(keys, now)).values() if row.tier is not Tier.COLD]
    if not rows:
        return []
    records = []
    for row in rows:
        assert row.value is not None
        codec.verify(row.key, row.value, row.checksum)
        records.append(ColdRecord(row.key, row.version, row.checksum, row.category, row.value))
    segment = new_segment_name(now)
    await cold.put_segment(segment, encode_segment(bot_id, records))  # COLD before dropping
    return await warm.move_many([TierMove(r.key, r.version, Tier.COLD, None, segment) for r in rows])


async def read_cold(cold: ColdTier, rows: Sequence[WarmRow]) -> dict[str, bytes]:
    """The bodies of COLD ``rows`` (one segment read per segment), each verified against its checksum."""
    by_segment: dict[str, list[WarmRow]] = {}
    for row in rows:
        if row.cold_ref is None:
            raise StateIntegrityError(f"state key {row.key!r}: COLD row without a segment reference")
        by_segment.setdefault(row.cold_ref, []).append(row)
    out: dict[str, bytes] = {}
    for name, members in by_segment.items():
        records = decode_segment(name, await cold.get_segment(name))
        for row in members:
            record = records.get(row.key)
            if record is None:
                raise StateIntegrityError(f"state key {row.key!r}: missing from cold segment {name!r}")
            codec.verify(row.key, record.value, row.checksum)
            out[row.key] = record.value
    return out


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


def _target_tier(row: WarmRow) -> Tier:
    """Where a read promotes a row: HOT kinds to HOT, WARM kinds to WARM, COLD kinds stay in COLD."""
    if row.tier is Tier.HOT:
        return Tier.HOT
    try:
        return StateCategory(row.category).tier
    except ValueError:
        return Tier.WARM
