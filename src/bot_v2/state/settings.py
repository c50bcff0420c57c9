"""Connection and behaviour settings of the state layer (built by ``bot_v2.config`` from profile + env)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from bot_v2.monitoring.masking import mask_url


class HotBackend(enum.StrEnum):
    MEMORY = "memory"
    REDIS = "redis"


class WarmBackend(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


class WarmOutageMode(enum.StrEnum):
    """What the loop may send while WARM is down (``PERPS_WARM_OUTAGE_MODE``)."""

    REDUCE_ONLY = "reduce_only"
    FULL = "full"


class ColdBackend(enum.StrEnum):
    DIRECTORY = "directory"
    S3 = "s3"


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Which backend each tier uses and how to reach it. Secrets never appear in ``repr``."""

    bot_id: str
    data_dir: Path
    hot_backend: HotBackend = HotBackend.MEMORY
    warm_backend: WarmBackend = WarmBackend.SQLITE
    cold_backend: ColdBackend = ColdBackend.DIRECTORY
    redis_url: str | None = field(default=None, repr=False)
    # Redis Sentinel instead of redis_url (docs/RUNBOOK.md "High availability"): the sentinels' addresses,
    # the master's name, the data nodes' password and db, the sentinels' own password.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_sentinel_password: str | None = field(default=None, repr=False)
    redis_db: int = 0
    database_url: str | None = field(default=None, repr=False)
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    max_value_bytes: int = 1_048_576
    max_key_bytes: int = 256
    connect_timeout_seconds: float = 5.0
    # HOT (cache) availability: see docs/STATE.md "Degraded HOT".
    hot_required_at_start: bool = True  # False: start degraded (serve from WARM) if HOT does not answer
    repair_hot_at_start: bool = True  # coherence pass at create(): stale / corrupt HOT keys are repaired
    # a reader: no write, no promotion, no repair, no probe/restore/sync on any tier until take_ownership()
    read_only: bool = False
    coherence_page_size: int = 500  # keys per SCAN / WARM page in coherence passes
    hot_restore_page_size: int = 2000  # rows per WARM page (and HOT write + read-back) in a hot-set restore
    # While HOT is down it is probed on a timer (no operation needed) every hot_probe_interval_seconds,
    # doubling per failed probe up to hot_probe_max_interval_seconds; the defaults make it a short FIXED
    # interval: a refused connect costs microseconds, a hung server is bounded by the probe timeout, and HOT
    # is back within one interval of Redis answering (docs/STATE.md "Degraded HOT").
    hot_probe_interval_seconds: float = 0.02
    hot_probe_max_interval_seconds: float = 0.02
    hot_probe_timeout_seconds: float = 0.25
    # Hung servers (docs/STATE.md "Hung servers"): a stopped Redis or PostgreSQL accepts connections and
    # answers nothing. Every HOT command (the socket timeout) and every WARM operation the loop makes (the
    # acquire and the whole statement; the connection is dropped, not reused) fails as unavailable after
    # these bounds, so a hang is detected within one bound of the next operation and no cycle waits longer.
    # Checkpoints, restores of a checkpoint and migrations move whole snapshots: warm_bulk_timeout_seconds.
    hot_command_timeout_seconds: float = 0.1
    warm_command_timeout_seconds: float = 0.15
    warm_bulk_timeout_seconds: float = 60.0
    hot_degraded_warn_interval_seconds: float = 60.0  # "still degraded" warnings at most this often
    # COLD (S3) availability: see docs/STATE.md "Degraded COLD: the spool".
    cold_required_at_start: bool = True  # False: start degraded (spooling) if COLD does not answer
    # While COLD is down it is probed on a timer every cold_probe_interval_seconds (doubling per failed probe
    # up to cold_probe_max_interval_seconds; the defaults make it a short FIXED interval, as for HOT): one
    # HeadBucket without retries, so the spool starts draining within one interval of S3 answering. While
    # the endpoint refuses connections a probe is a bare TCP connect (~0.05 ms of CPU; S3ColdTier.probe).
    cold_probe_interval_seconds: float = 0.02
    cold_probe_max_interval_seconds: float = 0.02
    cold_probe_timeout_seconds: float = 5.0
    cold_degraded_warn_interval_seconds: float = 60.0
    checkpoint_interval_seconds: float = 300.0
    checkpoint_retention: int = 10
    # WARM (PostgreSQL) outage: see docs/STATE.md "Degraded WARM: the journal". Durable writes go to a local
    # journal while WARM does not answer; it is probed on a timer and the journal replayed in batches of
    # journal_replay_batch rows once it answers. warm_outage_mode: what the loop may send meanwhile
    # (reduce_only: only orders that shrink a position; full: anything the risk guards allow), for at most
    # warm_outage_max_seconds after the last lease renewal (docs/RUNBOOK.md "PostgreSQL failure").
    warm_outage_mode: WarmOutageMode = WarmOutageMode.REDUCE_ONLY
    warm_outage_max_seconds: float = 300.0
    warm_probe_interval_seconds: float = 0.05
    warm_probe_timeout_seconds: float = 1.0
    journal_replay_batch: int = 500

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "state" / "warm.sqlite3"

    @property
    def cold_dir(self) -> Path:
        return self.data_dir / "state" / "cold"

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "state" / "journal"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "state" / "spool"

    @property
    def cold_recent_dir(self) -> Path:
        """Local copies of recently written COLD segments (``tiers/cold_recent.py``), one directory per bot."""
        return self.data_dir / "state" / "cold-recent"

    def __repr__(self) -> str:
        return (
            f"StateSettings(bot_id={self.bot_id!r}, data_dir={str(self.data_dir)!r}, "
            f"hot={self.hot_backend.value}, warm={self.warm_backend.value}, cold={self.cold_backend.value}, "
            f"redis_url={mask_url(self.redis_url)!r}, redis_sentinels={self.redis_sentinels!r}, "
            f"redis_sentinel_master={self.redis_sentinel_master!r}, database_url={mask_url(self.database_url)!r}, "
            f"s3_endpoint_url={self.s3_endpoint_url!r}, s3_bucket={self.s3_bucket!r})"
        )
