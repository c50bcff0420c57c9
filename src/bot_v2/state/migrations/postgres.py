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
)
