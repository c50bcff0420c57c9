"""SQLite schema migrations (values are exact bytes in a BLOB; times are integer microseconds UTC)."""

from __future__ import annotations

from bot_v2.state.migrations import Migration

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS state_schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at_us INTEGER NOT NULL
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "state_records: versioned, checksummed records per bot",
        (
            """
            CREATE TABLE state_records (
                bot_id        TEXT NOT NULL,
                key           TEXT NOT NULL,
                category      TEXT NOT NULL,
                tier          TEXT NOT NULL CHECK (tier IN ('hot', 'warm', 'cold')),
                version       INTEGER NOT NULL CHECK (version > 0),
                checksum      TEXT NOT NULL,
                value         BLOB,
                cold_ref      TEXT,
                updated_at_us INTEGER NOT NULL,
                expires_at_us INTEGER,
                PRIMARY KEY (bot_id, key),
                CHECK ((value IS NULL) = (tier = 'cold'))
            ) WITHOUT ROWID
            """,
            "CREATE INDEX state_records_bot_tier ON state_records (bot_id, tier)",
        ),
    ),
    Migration(
        2,
        "state_checkpoints: compressed, checksummed snapshots of a bot's records",
        (
            """
            CREATE TABLE state_checkpoints (
                bot_id           TEXT NOT NULL,
                checkpoint_id    TEXT NOT NULL,
                created_at_us    INTEGER NOT NULL,
                reason           TEXT NOT NULL,
                key_count        INTEGER NOT NULL,
                raw_bytes        INTEGER NOT NULL,
                compressed_bytes INTEGER NOT NULL,
                sha256           TEXT NOT NULL,
                duration_seconds REAL NOT NULL,
                blob             BLOB NOT NULL,
                PRIMARY KEY (bot_id, checkpoint_id)
            )
            """,
            "CREATE INDEX state_checkpoints_bot_created ON state_checkpoints (bot_id, created_at_us)",
        ),
    ),
    Migration(
        3,
        "state_leases: one live writer per bot id (holder, fencing epoch, expiry)",
        (
            """
            CREATE TABLE state_leases (
                bot_id             TEXT PRIMARY KEY,
                holder             TEXT NOT NULL,
                host               TEXT NOT NULL,
                pid                INTEGER NOT NULL,
                role               TEXT NOT NULL,
                epoch              INTEGER NOT NULL CHECK (epoch > 0),
                acquired_at_us     INTEGER NOT NULL,
                renewed_at_us      INTEGER NOT NULL,
                expires_at_us      INTEGER NOT NULL,
                handover_requested INTEGER NOT NULL DEFAULT 0
            )
            """,
        ),
    ),
    Migration(
        4,
        "state_records: index (bot_id, tier, key) in place of (bot_id, tier), as on PostgreSQL",
        # Same schema step as PostgreSQL's migration 4 (the versions stay equal). Here it changes no plan: an
        # index of a WITHOUT ROWID table already ends with the primary key, so (bot_id, tier) was ordered by key.
        (
            "CREATE INDEX state_records_bot_tier_key ON state_records (bot_id, tier, key)",
            "DROP INDEX state_records_bot_tier",
        ),
    ),
    Migration(
        5,
        "state_leases.handover_source: who asked for the hand-over and why (--step-down --reason)",
        ("ALTER TABLE state_leases ADD COLUMN handover_source TEXT",),
    ),
)
