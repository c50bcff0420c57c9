"""Versioned schema migrations for the WARM backends, applied at start-up.

Each backend keeps its own ordered list; the applied version is recorded in ``state_schema_version``. A
database whose recorded version is newer than the code's latest migration is refused (``StateSchemaError``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot_v2.errors import StateSchemaError


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``version`` (1, 2, ...), a description and the SQL statements to run."""

    version: int
    description: str
    statements: tuple[str, ...]


def pending(migrations: tuple[Migration, ...], current: int, backend: str) -> list[Migration]:
    """Return the migrations newer than ``current``; refuse a database newer than the code."""
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise StateSchemaError(
            f"{backend} state schema is at version {current}, but this code only knows up to {latest}: "
            "upgrade perps-bot (the database was migrated by a newer release)"
        )
    return [m for m in migrations if m.version > current]


def latest_version(migrations: tuple[Migration, ...]) -> int:
    """The schema version the code expects."""
    return migrations[-1].version if migrations else 0
