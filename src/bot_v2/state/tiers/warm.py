"""The WARM tier port: the durable, versioned store of every record (PostgreSQL or SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from bot_v2.state.models import CheckpointInfo, Tier, TierMove, WarmRestore, WarmRow, WarmWrite


class WarmTier(Protocol):
    """Keys are relative; rows are scoped by bot id. Each call is one transaction (one statement if possible).

    Expired rows (``expires_at <= now``) are invisible to reads, listings and stats.
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

    async def stats(self, now: datetime) -> tuple[dict[str, int], int]:
        """Return (live row count per tier, total value bytes)."""

    async def snapshot_rows(
        self, now: datetime, exclude_categories: Sequence[str], page_size: int = 1000
    ) -> list[WarmRow]:
        """Every live row of this bot outside ``exclude_categories``, in key order, from ONE consistent
        snapshot (PostgreSQL: one REPEATABLE READ read-only transaction, fetched ``page_size`` rows at a time
        through a cursor; SQLite: one read transaction). Concurrent writers are not blocked."""

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

    async def close(self) -> None:
        """Release connections."""
