"""Public value types of the state layer and the records the tiers exchange."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


class Tier(enum.StrEnum):
    """Where a record's body lives (HOT is always also durable in WARM)."""

    HOT = "hot"
    WARM = "warm"
    COLD = "cold"


class StateCategory(enum.StrEnum):
    """What a record is; the category decides its tier (see ``tier``)."""

    ORDERS = "orders"
    POSITIONS = "positions"
    MARKS = "marks"
    GUARDS = "guards"
    SAFETY = "safety"
    INTENTS = "intents"
    FILLS = "fills"
    PORTFOLIO = "portfolio"
    CONTROL = "control"
    METADATA = "metadata"
    EVENTS = "events"
    CHECKPOINTS = "checkpoints"
    ARCHIVE = "archive"

    @property
    def tier(self) -> Tier:
        """HOT kinds are cached (and durable in WARM); WARM kinds live in WARM only; COLD kinds in COLD."""
        return _CATEGORY_TIER[self]


_CATEGORY_TIER: Mapping[StateCategory, Tier] = {
    StateCategory.ORDERS: Tier.HOT,
    StateCategory.POSITIONS: Tier.HOT,
    StateCategory.MARKS: Tier.HOT,
    StateCategory.GUARDS: Tier.HOT,
    StateCategory.SAFETY: Tier.HOT,
    StateCategory.INTENTS: Tier.WARM,
    StateCategory.FILLS: Tier.WARM,
    StateCategory.PORTFOLIO: Tier.WARM,
    StateCategory.CONTROL: Tier.WARM,
    StateCategory.METADATA: Tier.WARM,
    StateCategory.EVENTS: Tier.WARM,
    StateCategory.CHECKPOINTS: Tier.COLD,
    StateCategory.ARCHIVE: Tier.COLD,
}


@dataclass(frozen=True, slots=True)
class StateWrite:
    """One write of a mixed batch (``StateManager.batch_write``)."""

    key: str
    value: Any
    category: StateCategory
    ttl_seconds: float | None = None


class HotRecord(NamedTuple):
    """A cached record: the value bytes plus the version and checksum they were written with."""

    key: str
    version: int
    checksum: str
    value: bytes
    updated_at: datetime
    ttl_ms: int | None = None


class WarmWrite(NamedTuple):
    """One row of a WARM upsert; ``value`` is None for COLD records (then ``cold_ref`` names the segment)."""

    key: str
    category: str
    tier: Tier
    checksum: str
    value: bytes | None
    cold_ref: str | None
    expires_at: datetime | None


class WarmRow(NamedTuple):
    """A WARM row: the durable index entry (and body, unless the body was demoted to COLD)."""

    key: str
    category: str
    tier: Tier
    version: int
    checksum: str
    value: bytes | None
    cold_ref: str | None
    updated_at: datetime
    expires_at: datetime | None


class TierMove(NamedTuple):
    """Move a row to another tier if it is still at ``version`` (promotion / demotion)."""

    key: str
    version: int
    tier: Tier
    value: bytes | None
    cold_ref: str | None


class ColdRecord(NamedTuple):
    """One record inside a COLD segment object (``version`` None: the WARM index row holds it)."""

    key: str
    version: int | None
    checksum: str
    category: str
    value: bytes


@dataclass(frozen=True, slots=True)
class CoherenceMismatch:
    """A HOT record that disagrees with WARM. ``kind``: missing_in_warm, version, checksum, corrupt_hot."""

    key: str
    kind: str
    hot_version: int | None
    warm_version: int | None


@dataclass(frozen=True, slots=True)
class CoherenceReport:
    """Result of ``verify_coherence``: how many HOT keys were checked and which disagree with WARM."""

    checked: int
    mismatches: list[CoherenceMismatch] = field(default_factory=list)

    @property
    def mismatch_count(self) -> int:
        return len(self.mismatches)

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass(frozen=True, slots=True)
class StorageStats:
    """Counts and sizes per tier, for this bot's namespace."""

    bot_id: str
    hot_backend: str
    warm_backend: str
    cold_backend: str
    hot_keys: int
    warm_records: int
    warm_records_by_tier: dict[str, int]
    warm_value_bytes: int
    cold_objects: int
    cold_bytes: int
    schema_version: int
