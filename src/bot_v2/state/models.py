"""Public value types of the state layer and the records the tiers exchange."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, overload


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
    """Result of ``verify_coherence`` / ``repair_coherence``: how many HOT keys were checked, which disagreed
    with WARM, and (repair only) how many of those were rewritten from WARM or deleted from HOT."""

    checked: int
    mismatches: list[CoherenceMismatch] = field(default_factory=list)
    repaired: int = 0

    @property
    def mismatch_count(self) -> int:
        return len(self.mismatches)

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass(frozen=True, slots=True)
class HotRecovery:
    """One HOT outage and its recovery: detection, restore of the hot set from WARM, key-by-key verification."""

    detected_at: datetime
    recovered_at: datetime
    restore_seconds: float  # restore + verification (the outage itself is ``outage_seconds``)
    keys_restored: int  # hot-set records written back into HOT from WARM
    keys_evicted: int  # dirty keys no longer in the hot set, deleted from HOT
    keys_verified: int  # HOT keys checked against WARM after the restore (version + checksum)
    mismatches_repaired: int  # of those, how many still disagreed and were rewritten / deleted
    corrupt_in_warm: int  # hot-set rows whose WARM body failed its checksum (not cached; reads raise)

    @property
    def outage_seconds(self) -> float:
        return (self.recovered_at - self.detected_at).total_seconds()

    @property
    def keys_moved(self) -> int:
        return self.keys_restored + self.keys_evicted + self.mismatches_repaired


class HotState(enum.StrEnum):
    """``up``: HOT serves reads. ``degraded``: HOT unreachable, reads and writes use WARM only.
    ``restoring``: HOT answered again; the hot set is being rewritten (writes go through, reads use WARM)."""

    UP = "up"
    DEGRADED = "degraded"
    RESTORING = "restoring"


class WarmState(enum.StrEnum):
    """``up``: durable writes go to WARM. ``journaling``: WARM did not answer; durable writes go to the local
    journal (``state/outage.py``). ``replaying``: WARM answers again; the journal is being replayed."""

    UP = "up"
    JOURNALING = "journaling"
    REPLAYING = "replaying"


@dataclass(frozen=True, slots=True)
class WarmRecovery:
    """One WARM outage, from the first journaled write to the truncated journal."""

    detected_at: datetime | None
    recovered_at: datetime
    outage_seconds: float | None
    replay_seconds: float
    records_journaled: int
    records_replayed: int
    records_skipped: int  # already applied by an earlier, interrupted replay
    batches: int
    database_lost: bool = False  # WARM came back without this bot's lease: checkpoint restored first
    checkpoint_id: str | None = None
    data_loss_estimate_seconds: float | None = None  # database_lost: the window neither copy covers


class ColdState(enum.StrEnum):
    """``up``: COLD writes go to the COLD store. ``degraded``: it did not answer; COLD writes go to the local
    spool. ``syncing``: it answers again; the spool is being uploaded (writes still go to the spool)."""

    UP = "up"
    DEGRADED = "degraded"
    SYNCING = "syncing"


@dataclass(frozen=True, slots=True)
class ColdRecovery:
    """One COLD outage and its recovery: detection, spool sync (every object verified), back to ``up``."""

    detected_at: datetime
    recovered_at: datetime
    sync_seconds: float  # the successful sync (upload + verify + delete from the spool)
    objects_synced: int  # over the whole outage (a failed sync's verified uploads included)
    bytes_synced: int

    @property
    def outage_seconds(self) -> float:
        return (self.recovered_at - self.detected_at).total_seconds()


@dataclass(frozen=True, slots=True)
class StateHealth:
    """Snapshot of the state layer's HOT cache and COLD store health (``StateManager.health()``, no I/O)."""

    hot_state: HotState
    hot_down_since: datetime | None
    last_hot_error: str | None
    dirty_keys: int  # keys whose HOT copy may be stale: never served from HOT until rewritten
    next_probe_in_seconds: float | None
    hot_repaired_at_start: int
    hot_recoveries: int
    last_hot_recovery: HotRecovery | None
    warm_state: WarmState = WarmState.UP
    warm_down_since: datetime | None = None
    last_warm_error: str | None = None
    journal_records: int = 0  # durable writes in the local journal, waiting for WARM
    warm_recoveries: int = 0
    last_warm_recovery: WarmRecovery | None = None
    cold_state: ColdState = ColdState.UP
    cold_down_since: datetime | None = None
    last_cold_error: str | None = None
    cold_spooled_objects: int = 0  # COLD objects in the local spool, waiting for the COLD store
    cold_spooled_bytes: int = 0
    next_cold_probe_in_seconds: float | None = None
    cold_recoveries: int = 0
    last_cold_recovery: ColdRecovery | None = None
    hot_hits: int = 0  # keys reads found in HOT since the manager was created
    hot_misses: int = 0  # keys reads had to fetch from WARM / COLD (absent keys included)

    @property
    def degraded_hot(self) -> bool:
        return self.hot_state is not HotState.UP

    @property
    def degraded_cold(self) -> bool:
        return self.cold_state is not ColdState.UP

    @property
    def degraded_warm(self) -> bool:
        return self.warm_state is not WarmState.UP


@dataclass(frozen=True, slots=True)
class StorageStats:
    """Counts and sizes per tier, for this bot's namespace (``hot_keys`` is None while HOT is unreachable)."""

    bot_id: str
    hot_backend: str
    warm_backend: str
    cold_backend: str
    hot_keys: int | None
    warm_records: int
    warm_records_by_tier: dict[str, int]
    warm_value_bytes: int
    cold_objects: int
    cold_bytes: int
    schema_version: int
    degraded_hot: bool = False
    hot_dirty_keys: int = 0
    hot_repaired_at_start: int = 0
    hot_recoveries: int = 0
    last_hot_recovery: HotRecovery | None = None
    degraded_cold: bool = False  # COLD store unreachable: cold_objects / cold_bytes are last known + spool
    cold_spooled_objects: int = 0
    cold_spooled_bytes: int = 0
    cold_recoveries: int = 0
    last_cold_recovery: ColdRecovery | None = None


class WarmRestore(NamedTuple):
    """One row of a checkpoint restore: written with version ``max(current, version) + 1``."""

    key: str
    category: str
    tier: Tier
    version: int  # the version in the checkpoint
    checksum: str
    value: bytes | None
    cold_ref: str | None
    expires_at: datetime | None


class RestoreRows(Sequence[WarmRestore]):
    """The rows of a checkpoint restore by column (``rows[i]`` is a ``WarmRestore``): a restore hands the
    WARM tier its columns as the checkpoint decoded them, without building an object per row (PostgreSQL
    sends them as arrays as they are)."""

    __slots__ = ("columns",)

    def __init__(
        self,
        keys: Sequence[str],
        categories: Sequence[str],
        tiers: Sequence[Tier],
        versions: Sequence[int],
        checksums: Sequence[str],
        values: Sequence[bytes | None],
        cold_refs: Sequence[str | None],
        expires_at: Sequence[datetime | None],
    ) -> None:
        self.columns = (keys, categories, tiers, versions, checksums, values, cold_refs, expires_at)

    @classmethod
    def of(cls, rows: Sequence[WarmRestore]) -> RestoreRows:
        """``rows`` by column (as they are when they already are ``RestoreRows``)."""
        if isinstance(rows, RestoreRows):
            return rows
        if not rows:
            return cls([], [], [], [], [], [], [], [])
        return cls(*map(list, zip(*rows, strict=True)))

    def __len__(self) -> int:
        return len(self.columns[0])

    @overload
    def __getitem__(self, index: int) -> WarmRestore: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[WarmRestore]: ...
    def __getitem__(self, index: int | slice) -> WarmRestore | Sequence[WarmRestore]:
        if isinstance(index, slice):
            return list(self)[index]
        keys, categories, tiers, versions, checksums, values, cold_refs, expires_at = self.columns
        return WarmRestore(
            keys[index],
            categories[index],
            tiers[index],
            versions[index],
            checksums[index],
            values[index],
            cold_refs[index],
            expires_at[index],
        )

    def __iter__(self) -> Iterator[WarmRestore]:
        return map(WarmRestore, *self.columns)


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """One stored checkpoint: what it holds, its size before / after compression and its SHA-256.

    ``duration_seconds`` covers the snapshot read, encoding, compression and the COLD upload.
    """

    checkpoint_id: str
    created_at: datetime
    reason: str
    key_count: int
    raw_bytes: int
    compressed_bytes: int
    sha256: str
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """Result of ``CheckpointStore.restore_checkpoint``: every record was verified before anything was
    written; with ``verify_only`` nothing was written."""

    checkpoint_id: str
    created_at: datetime
    verify_only: bool
    keys_in_checkpoint: int
    keys_restored: int  # records written back (version = max(current, checkpoint) + 1)
    keys_deleted: int  # live records not in the checkpoint, deleted in the same transaction
    keys_expired: int  # records whose TTL ran out since the checkpoint: not restored
    source: str  # "warm" or "cold": where the checkpoint blob was read from
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class LeaseClaim:
    """Who asks for a bot id's lease: ``holder`` is unique per process (host, pid and a random suffix)."""

    holder: str
    host: str
    pid: int
    role: str = "primary"  # "primary" | "standby" | "restore": shown to whoever is refused
    # The acquire grants at least this epoch. A lease taken again after the database came back from an old
    # backup (its row gone, or an older epoch) must be above every epoch this bot used, or a zombie writer
    # of an old, higher epoch would pass the fence (docs/STATE.md "Degraded WARM: the journal").
    min_epoch: int = 1


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A bot id's lease row as the WARM store saw it, with the store's clock at that moment (``db_now``).

    Expiry and ages are computed from the store's clock only, never from this host's wall clock."""

    bot_id: str
    holder: str
    host: str
    pid: int
    role: str
    epoch: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    db_now: datetime
    handover_requested: bool = False
    #: who asked for the hand-over and why (``cli:<user>@<host>:<pid> (<reason>)``, as the controls' ``source``)
    handover_source: str | None = None

    @property
    def remaining_seconds(self) -> float:
        """Time left before expiry by the store's clock (<= 0: expired)."""
        return (self.expires_at - self.db_now).total_seconds()

    @property
    def renewal_age_seconds(self) -> float:
        """Time since the holder last renewed, by the store's clock."""
        return (self.db_now - self.renewed_at).total_seconds()

    @property
    def live(self) -> bool:
        return self.remaining_seconds > 0

    def describe(self) -> str:
        """One line naming the holder, for refusals and logs."""
        state = (
            f"expires in {self.remaining_seconds:.3f}s"
            if self.live
            else f"expired {-self.remaining_seconds:.3f}s ago"
        )
        return (
            f"{self.role} on host {self.host} pid {self.pid}, epoch {self.epoch}, "
            f"last renewal {self.renewal_age_seconds:.3f}s ago, {state}"
        )


class LeaseGrant(NamedTuple):
    """The answer to an acquire: ``acquired`` False means ``record`` is someone else's live lease."""

    acquired: bool
    record: LeaseRecord
