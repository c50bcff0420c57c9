"""Strict readers for the plain dicts the risk engine exports (Decimal and aware datetimes allowed as values).

A stored dict is read back field by field; anything missing, extra or of the wrong type raises
``StateIntegrityError`` naming the field, so a corrupted record halts instead of silently trading on defaults.
Decimals and datetimes are accepted either as objects or as their canonical strings, so the state layer may
encode them either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from bot_v2.errors import StateIntegrityError

E = TypeVar("E")


def expect_mapping(value: object, where: str) -> Mapping[str, object]:
    """Return ``value`` as a str-keyed mapping or raise."""
    if not isinstance(value, Mapping):
        raise StateIntegrityError(f"{where}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise StateIntegrityError(f"{where}: keys must be strings, got {key!r}")
    return value


def expect_keys(
    data: Mapping[str, object],
    required: AbstractSet[str],
    where: str,
    optional: AbstractSet[str] = frozenset(),
) -> None:
    """Raise unless ``data`` has every required key and nothing unknown."""
    missing = sorted(required - data.keys())
    if missing:
        raise StateIntegrityError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(data.keys() - required - optional)
    if unknown:
        raise StateIntegrityError(f"{where}: unknown field(s) {', '.join(unknown)}")


def read_decimal(value: object, where: str) -> Decimal:
    """Read a finite Decimal (from a Decimal, int or canonical string; never a float)."""
    if isinstance(value, bool | float):
        raise StateIntegrityError(f"{where}: expected a decimal, got {type(value).__name__}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise StateIntegrityError(f"{where}: {value!r} is not a decimal") from None
    else:
        raise StateIntegrityError(f"{where}: expected a decimal, got {type(value).__name__}")
    if not result.is_finite():
        raise StateIntegrityError(f"{where}: {value!r} is not finite")
    return result


def read_optional_decimal(value: object, where: str) -> Decimal | None:
    """Read a Decimal or ``None``."""
    return None if value is None else read_decimal(value, where)


def read_datetime(value: object, where: str) -> datetime:
    """Read an aware datetime (object or ISO-8601 string) and return it in UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise StateIntegrityError(f"{where}: {value!r} is not an ISO-8601 datetime") from None
    if not isinstance(value, datetime):
        raise StateIntegrityError(f"{where}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise StateIntegrityError(f"{where}: naive datetime {value.isoformat()} (UTC required)")
    return value.astimezone(UTC)


def read_optional_datetime(value: object, where: str) -> datetime | None:
    """Read an aware datetime or ``None``."""
    return None if value is None else read_datetime(value, where)


def read_date(value: object, where: str) -> date:
    """Read a calendar date from an ISO ``YYYY-MM-DD`` string or a ``date`` (not a datetime)."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise StateIntegrityError(f"{where}: {value!r} is not an ISO date") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise StateIntegrityError(f"{where}: expected a date, got {type(value).__name__}")


def read_bool(value: object, where: str) -> bool:
    """Read a real bool (no truthy coercion)."""
    if not isinstance(value, bool):
        raise StateIntegrityError(f"{where}: expected a bool, got {type(value).__name__}")
    return value


def read_str(value: object, where: str) -> str:
    """Read a string."""
    if not isinstance(value, str):
        raise StateIntegrityError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def read_int(value: object, where: str) -> int:
    """Read an int (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateIntegrityError(f"{where}: expected an integer, got {type(value).__name__}")
    return value


def read_list(value: object, where: str) -> list[object]:
    """Read a list or tuple."""
    if not isinstance(value, list | tuple):
        raise StateIntegrityError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def read_enum(enum_type: type[E], value: object, where: str) -> E:
    """Read an enum member from its value string."""
    if not isinstance(value, str):
        raise StateIntegrityError(f"{where}: expected a string, got {type(value).__name__}")
    try:
        return enum_type(value)  # type: ignore[call-arg]
    except ValueError:
        raise StateIntegrityError(f"{where}: unknown {enum_type.__name__} {value!r}") from None
