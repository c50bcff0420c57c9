"""The WARM tier port: the durable, versioned store of every record (PostgreSQL or SQLite)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from bot_v2.state.models import (
    CheckpointInfo,
    HotRecord,
    LeaseClaim,
    LeaseGrant,
    LeaseRecord,
    Tier,
    TierMove,
    WarmRestore,
    WarmRow,
    WarmWrite,
)
from bot_v2.state.tiers.hot import PackedRecord, pack_record


class SnapshotPage(NamedTuple):
    """One page of a snapshot by column: row ``i`` is entry ``i`` of every column, rows in key order.

    Columns, not row objects: a checkpoint reads 10,000 rows beside the trading loop, and a row object built
    per row (on the event loop, or on a thread holding the GIL) costs the loop more than the read itself.
    ``values[i]`` is None when the body is in COLD segment ``cold_refs[i]``; ``tiers`` are ``Tier`` values.
    """

    keys: Sequence[str]
    categories: Sequence[str]
    tiers: Sequence[str]
    versions: Sequence[int]
    checksums: Sequence[str]
    values: Sequence[bytes | None]
    cold_refs: Sequence[str | None]
    expires_at: Sequence[datetime | None]


class WarmTier(Protocol):
    """Keys are relative; rows are scoped by bot id. Each call is one transaction (one statement if possible).

    Expired rows (``expires_at <= now``) are invisible to reads, listings and stats.

    Fencing (DESIGN.md "Ownership"): after ``set_fence(epoch)`` every write (upsert, delete, move, restore,
    checkpoint put/prune) first reads this bot's lease epoch in the SAME transaction (PostgreSQL: ``FOR
    SHARE``, so an acquire waits for the batch or the batch sees the new epoch) and raises ``FencedError``,
    committing nothing, when a newer epoch exists. ``set_fence(None)`` (the default) writes unfenced: tools
    and tests that hold no lease.
    """

    name: str

    @property
    def schema_version(self) -> int:
        """Schema version recorded in the database (after ``connect`` migrated it)."""

    async def connect(self) -> None:
        """Connect, then apply pending migrations; ``StateSchemaError`` if the db is newer than the code."""

    async def upsert_many(self, rows: Sequence[WarmWrite], now: datetime) -> dict[str, tuple[int, Tier]]:
        """Insert or update ``rows`` in one transaction (version = old + 1); return key -> (version, tier).

        A row already in tier HOT stays HOT when written with tier WARM (it is cached: write-through).
        """

    async def get_many(self, keys: Sequence[str], now: datetime) -> dict[str, WarmRow]:
        """Return the live rows of ``keys`` (missing and expired keys absent)."""

    async def get_versions(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        """Return key -> (version, checksum) for ``keys`` (expired rows included)."""

    async def delete_many(self, keys: Sequence[str], now: datetime) -> list[str]:
        """Delete ``keys`` in one transaction; return the live keys that really were deleted."""

    async def move_many(self, moves: Sequence[TierMove]) -> list[str]:
        """Change tier/body of rows still at the given version, in one transaction; return keys moved."""

    async def keys_matching(self, pattern: str, now: datetime) -> list[str]:
        """Return live keys matching a Redis-style glob, sorted."""

    async def page_rows(
        self, after_key: str, limit: int, now: datetime, *, tier: Tier | None = None
    ) -> list[WarmRow]:
        """Keyset pagination over live rows: up to ``limit`` rows with key > ``after_key``, in key order
        (only rows in ``tier`` when given: ``Tier.HOT`` pages through the hot set)."""

    async def hot_page(self, after_key: str, limit: int, now: datetime) -> list[PackedRecord]:
        """``page_rows(tier=Tier.HOT)`` as HOT stores the rows: each packed (``hot.pack_record``) with its
        remaining TTL; bodies NOT checked against their checksums (the caller checks, ``hot.body_matches``).
        For the hot-set restore, which then moves bytes without building a record per row in Python
        (PostgreSQL packs them in the query; ``pack_rows`` is the reference)."""

    async def hot_versions(self, after_key: str, limit: int, now: datetime) -> dict[str, tuple[int, str]]:
        """``page_rows(tier=Tier.HOT)`` as key -> (version, checksum) only, in key order: the start-up repair
        compares them with HOT's record headers, driven by WARM's key range (values never move)."""

    async def stats(self, now: datetime) -> tuple[dict[str, int], int]:
        """Return (live row count per tier, total value bytes)."""

    def snapshot_pages(
        self, now: datetime, exclude_categories: Sequence[str], page_size: int
    ) -> AsyncGenerator[SnapshotPage, None]:
        """Every live row of this bot outside ``exclude_categories``, in key order, ``page_size`` rows a page,
        all from ONE consistent snapshot (PostgreSQL: one REPEATABLE READ read-only transaction and a cursor;
        SQLite: one read transaction on a connection and thread of its own). Concurrent writers are not
        blocked. A page is read when the caller asks for it (it paces the read); close the iterator
        (``contextlib.aclosing``) to end the snapshot early."""

    async def replace_rows(
        self, rows: Sequence[WarmRestore], keep_categories: Sequence[str], now: datetime
    ) -> tuple[dict[str, tuple[int, Tier]], list[str]]:
        """In ONE transaction: upsert ``rows`` (version = max(current, row.version) + 1, tier as given) and
        delete every other row of this bot outside ``keep_categories``. Returns (key -> (version, tier),
        deleted keys). Readers see the old set or the new one, never a mix or an empty namespace."""

    async def put_checkpoint(self, info: CheckpointInfo, blob: bytes) -> None:
        """Store a checkpoint (metadata + blob) in ``state_checkpoints``."""

    async def list_checkpoints(self) -> list[CheckpointInfo]:
        """This bot's checkpoints, newest first (metadata only)."""

    async def get_checkpoint(self, checkpoint_id: str) -> tuple[CheckpointInfo, bytes] | None:
        """A checkpoint's metadata and blob, or None if there is no such checkpoint."""

    async def prune_checkpoints(self, keep: int) -> list[str]:
        """Delete all but the ``keep`` newest checkpoints; return the ids deleted."""

    def set_fence(self, epoch: int | None) -> None:
        """Fence every later write with ``epoch`` (None: unfenced)."""

    async def acquire_lease(self, claim: LeaseClaim, ttl_seconds: float) -> LeaseGrant:
        """In one transaction: take the lease if there is none or it expired (by the store's clock), with
        epoch + 1; otherwise leave it alone and return the live holder's record (``acquired`` False)."""

    async def renew_lease(self, holder: str, epoch: int, ttl_seconds: float) -> LeaseRecord:
        """Extend ``holder``'s lease to now + ttl while it still holds ``epoch``; ``FencedError`` if not."""

    async def release_lease(self, holder: str, epoch: int) -> bool:
        """Expire ``holder``'s lease now (epoch kept, so its writes stay fenced out once someone else
        acquires); return whether it still held it."""

    async def request_handover(self, source: str) -> LeaseRecord | None:
        """Ask the live holder to step down (it sees the flag, and ``source`` -- who asked and why -- at its next
        renewal); None if nobody holds."""

    async def read_lease(self) -> LeaseRecord | None:
        """This bot's lease row with the store's clock, or None if no process ever held it. Writes nothing."""

    async def close(self) -> None:
        """Release connections."""


def versions_by_key(rows: Sequence[Sequence[Any]]) -> dict[str, tuple[int, str]]:
    """``hot_versions`` of (key, version, checksum) rows, built in C (a generator over 10,000 rows cost ~3 ms)."""
    return dict(zip(map(itemgetter(0), rows), map(itemgetter(1, 2), rows), strict=True))


def pack_rows(rows: Sequence[WarmRow], now: datetime) -> list[PackedRecord]:
    """The reference ``hot_page`` of ``rows``: the bytes ``hot.pack_record`` gives (the body as stored, its
    checksum unchecked), the TTL left at ``now`` in ms (at least 1), ``packed`` None for a row without a body."""
    out: list[PackedRecord] = []
    for row in rows:
        ttl_ms = None
        if row.expires_at is not None:
            ttl_ms = max(1, int((row.expires_at - now).total_seconds() * 1000))
        body = row.value
        if body is None:
            out.append(PackedRecord(row.key, row.version, None, ttl_ms))
            continue
        record = HotRecord(row.key, row.version, row.checksum, body, row.updated_at, ttl_ms)
        out.append(PackedRecord(row.key, row.version, pack_record(record), ttl_ms))
    return out
