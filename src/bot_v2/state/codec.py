"""Canonical value encoding: the exact bytes every tier stores, and their checksum.

Values are JSON types plus ``Decimal`` and timezone-aware ``datetime``, nested. The encoding is stdlib
``json`` with sorted keys and compact separators, so equal values always give equal bytes. ``Decimal`` and
``datetime`` travel in a tagged form (``{"$decimal": "0.10"}``, ``{"$datetime": "2024-...+00:00"}``) and
come back exactly; a user dict that looks like a tag is wrapped as ``{"$dict": [[key, value]]}``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from bot_v2.errors import StateEncodingError, StateIntegrityError

_DECIMAL = "$decimal"
_DATETIME = "$datetime"
_DICT = "$dict"
_TAGS = frozenset({_DECIMAL, _DATETIME, _DICT})


def _default(obj: object) -> object:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"non-finite Decimal {obj!r}")
        return {_DECIMAL: str(obj)}
    if isinstance(obj, datetime):
        if obj.tzinfo is None or obj.utcoffset() is None:
            raise ValueError(f"naive datetime {obj.isoformat()} (use an aware UTC datetime)")
        return {_DATETIME: obj.isoformat()}
    if isinstance(obj, date):
        raise ValueError(f"date {obj.isoformat()} is not supported (use an aware datetime)")
    raise TypeError(f"type {type(obj).__name__} is not encodable")


def _make_encoder() -> Callable[[object], str]:
    """Build the C encoder once (``json.dumps`` rebuilds it on every call, which dominates small values)."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - CPython always has the C accelerator
        encoder = json.JSONEncoder(
            sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
        )
        return encoder.encode
    iterencode = c_make_encoder(
        None, _default, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )  # markers=None: a cycle ends in RecursionError

    def encode(value: object) -> str:
        return "".join(iterencode(value, 0))

    return encode


_encode = _make_encoder()


_SCALARS = frozenset({str, int, float, bool, type(None), Decimal, datetime})
_STR_ONLY = frozenset({str})


def _needs_escape(obj: object) -> bool:
    """Check dict keys are strings and find user dicts that look like tags (rare: then we transform).

    Type-set checks (``frozenset.issuperset(map(type, ...))``) run in C, so flat values cost almost nothing.
    """
    if isinstance(obj, dict):
        if len(obj) == 1 and next(iter(obj)) in _TAGS:
            return True
        if not _STR_ONLY.issuperset(map(type, obj)):
            for key in obj:
                if not isinstance(key, str):
                    raise TypeError(f"dict key {key!r} is not a string")
        items: Any = obj.values()
    elif isinstance(obj, list | tuple):
        items = obj
    else:
        return False
    if _SCALARS.issuperset(map(type, items)):
        return False
    return any(_needs_escape(item) for item in items if type(item) not in _SCALARS)


def _escape(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and next(iter(obj)) in _TAGS:
            return {_DICT: [[key, _escape(item)] for key, item in obj.items()]}
        return {key: _escape(item) for key, item in obj.items()}
    if isinstance(obj, list | tuple):
        return [_escape(item) for item in obj]
    return obj


def encode_value(value: object, key: str = "?") -> bytes:
    """Return the canonical bytes of ``value``; raise ``StateEncodingError`` naming ``key`` if impossible."""
    try:
        if _needs_escape(value):
            value = _escape(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"non-finite float {value!r}")
        return _encode(value).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise StateEncodingError(f"state key {key!r}: value cannot be encoded: {exc}") from None


def _object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((tag, payload),) = obj.items()
        if tag == _DECIMAL:
            return Decimal(payload)
        if tag == _DATETIME:
            return datetime.fromisoformat(payload)
        if tag == _DICT:
            return {pair[0]: pair[1] for pair in payload}
    return obj


_DECODER = json.JSONDecoder(object_hook=_object_hook)


def decode_value(data: bytes, key: str = "?") -> Any:
    """Decode canonical bytes back into the value (``Decimal``/``datetime`` restored exactly)."""
    try:
        return _DECODER.decode(data.decode("utf-8"))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise StateIntegrityError(f"state key {key!r}: stored value cannot be decoded: {exc}") from None


def checksum(data: bytes) -> str:
    """Return the hex SHA-256 of the value bytes."""
    return hashlib.sha256(data).hexdigest()


def verify(key: str, data: bytes, expected: str) -> None:
    """Raise ``StateIntegrityError`` naming ``key`` unless ``data`` hashes to ``expected``."""
    if hashlib.sha256(data).hexdigest() != expected:
        raise StateIntegrityError(f"state key {key!r}: checksum mismatch (stored record is corrupt)")
