"""PostgreSQL schema migrations (values are exact bytes in ``bytea``, never jsonb)."""

from __future__ import annotations

from bot_v2.state.migrations import Migration

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS state_schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "state_records: versioned, checksummed records per bot",
        (
            """
            CREATE TABLE state_records (
                bot_id     text COLLATE "C" NOT NULL,
                key        text COLLATE "C" NOT NULL,
                category   text NOT NULL,
                tier       text NOT NULL CHECK (tier IN ('hot', 'warm', 'cold')),
                version    bigint NOT NULL CHECK (version > 0),
                checksum   text NOT NULL,
                value      bytea,
                cold_ref   text,
                updated_at timestamptz NOT NULL,
                expires_at timestamptz,
                PRIMARY KEY (bot_id, key),
                CHECK ((value IS NULL) = (tier = 'cold'))
            )
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
                bot_id           text COLLATE "C" NOT NULL,
                checkpoint_id    text COLLATE "C" NOT NULL,
                created_at       timestamptz NOT NULL,
                reason           text NOT NULL,
                key_count        integer NOT NULL,
                raw_bytes        bigint NOT NULL,
                compressed_bytes bigint NOT NULL,
                sha256           text NOT NULL,
                duration_seconds double precision NOT NULL,
                blob             bytea NOT NULL,
                PRIMARY KEY (bot_id, checkpoint_id)
            )
            """,
            "CREATE INDEX state_checkpoints_bot_created ON state_checkpoints (bot_id, created_at)",
        ),
    ),
    Migration(
        3,
        "state_leases: one live writer per bot id (holder, fencing epoch, expiry by the database clock)",
        (
            """
            CREATE TABLE state_leases (
                bot_id             text COLLATE "C" PRIMARY KEY,
                holder             text NOT NULL,
                host               text NOT NULL,
                pid                integer NOT NULL,
                role               text NOT NULL,
                epoch              bigint NOT NULL CHECK (epoch > 0),
                acquired_at        timestamptz NOT NULL,
                renewed_at         timestamptz NOT NULL,
                expires_at         timestamptz NOT NULL,
                handover_requested boolean NOT NULL DEFAULT false
            )
            """,
        ),
    ),
    Migration(
        4,
        "state_records: index (bot_id, tier, key) in place of (bot_id, tier): the hot set in key order",
        # The restore and the start-up repair page the hot set by key (tier = 'hot' AND key > $after ORDER BY
        # key LIMIT n). On (bot_id, tier) each page read every hot row left and sorted them (a 10,000-key
        # hot set cost five scans + top-N sorts); on (bot_id, tier, key) a page is one ordered index range.
        # It still serves every (bot_id, tier) lookup, so it replaces that index rather than adding a third.
        (
            "CREATE INDEX state_records_bot_tier_key ON state_records (bot_id, tier, key)",
            "DROP INDEX state_records_bot_tier",
        ),
    ),
    Migration(
        5,
        "state_leases.handover_source: who asked for the hand-over and why (--step-down --reason)",
        ("ALTER TABLE state_leases ADD COLUMN handover_source text",),
    ),
)
