"""Canonical value encoding: the exact bytes every tier stores, and their checksum.

Values are JSON types plus ``Decimal`` and timezone-aware ``datetime``, nested. The encoding is JSON with sorted
keys, compact separators and raw UTF-8, so equal values always give equal bytes. ``Decimal`` and ``datetime``
travel in a tagged form (``{"$decimal": "0.10"}``, ``{"$datetime": "2024-...+00:00"}``) and come back exactly;
a user dict that looks like a tag is wrapped as ``{"$dict": [[key, value]]}``.

Two implementations produce the same bytes. The reference is stdlib ``json`` (sorted keys, ``default`` hook
for the tags). The fast path, used whenever it can, replaces every ``Decimal``/``datetime`` by its tag dict
(and every float by its ``repr``, which is what stdlib ``json`` writes) in one pass over the value, then lets
msgspec's C encoder write it with sorted keys. Anything the fast path does not handle exactly -- a user dict
that looks like a tag, subclasses (enums included), unencodable values -- goes through the reference, which
also raises the errors. Decoding is msgspec plus a pass that turns tag dicts back into values, falling back
to the reference for input msgspec rejects. ``tests/unit/state/test_codec*.py`` prove both paths give the
same bytes and values.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from bot_v2.errors import StateEncodingError, StateIntegrityError

_DECIMAL = "$decimal"
_DATETIME = "$datetime"
_DICT = "$dict"
_TAGS = frozenset({_DECIMAL, _DATETIME, _DICT})


# --- reference encoder (stdlib json) -------------------------------------------------------------------------


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


def _encode_reference(value: object, key: str) -> bytes:
    try:
        if _needs_escape(value):
            value = _escape(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"non-finite float {value!r}")
        return _encode(value).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise StateEncodingError(f"state key {key!r}: value cannot be encoded: {exc}") from None


# --- fast encoder (msgspec) ----------------------------------------------------------------------------------


class _Reference(Exception):
    """The fast path cannot encode this value exactly like the reference: use the reference."""


# Exact types msgspec writes byte for byte like the reference (subclasses such as enums are not in here).
_PLAIN = frozenset({str, int, bool, type(None)})


def _tag_dict(obj: dict[Any, Any]) -> dict[Any, Any]:
    # A non-str key makes msgspec raise TypeError (order="sorted"); str subclasses are written as their text,
    # as the reference does.
    if len(obj) == 1 and next(iter(obj)) in _TAGS:
        raise _Reference  # needs the $dict wrapping
    out: dict[Any, Any] | None = None
    for key, item in obj.items():
        kind = type(item)
        if kind in _PLAIN:
            continue
        if out is None:
            out = obj.copy()
        if kind is Decimal and item.is_finite():  # inlined: the common case, a flat record with amounts
            out[key] = {_DECIMAL: str(item)}
        else:
            out[key] = _tag(item)
    return obj if out is None else out


def _tag_list(obj: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    out: list[Any] | None = None
    for index, item in enumerate(obj):
        if type(item) in _PLAIN:
            continue
        if out is None:
            out = list(obj)
        out[index] = _tag(item)
    return obj if out is None else out


def _tag_decimal(obj: Decimal) -> object:
    if not obj.is_finite():
        raise _Reference
    return {_DECIMAL: str(obj)}


def _tag_datetime(obj: datetime) -> object:
    if obj.utcoffset() is None:
        raise _Reference
    return {_DATETIME: obj.isoformat()}


def _tag_float(obj: float) -> object:
    if not math.isfinite(obj):
        raise _Reference
    return msgspec.Raw(float.__repr__(obj).encode())  # msgspec writes 1e16, stdlib json 1e+16


def _keep(obj: object) -> object:
    return obj


_TAGGERS: dict[type, Callable[[Any], object]] = {
    dict: _tag_dict,
    list: _tag_list,
    tuple: _tag_list,
    Decimal: _tag_decimal,
    datetime: _tag_datetime,
    float: _tag_float,
    str: _keep,
    int: _keep,
    bool: _keep,
    type(None): _keep,
}


def _tag(obj: object) -> object:
    tagger = _TAGGERS.get(type(obj))
    if tagger is None:
        raise _Reference
    return tagger(obj)


_encode_fast = msgspec.json.Encoder(order="sorted").encode


def encode_value(value: object, key: str = "?") -> bytes:
    """Return the canonical bytes of ``value``; raise ``StateEncodingError`` naming ``key`` if impossible."""
    try:
        return _encode_fast(_tag_dict(value) if type(value) is dict else _tag(value))
    except (_Reference, TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        return _encode_reference(value, key)


# --- decoding ------------------------------------------------------------------------------------------------


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
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, ArithmeticError, RecursionError)


def _decode_reference(data: bytes, key: str) -> Any:
    try:
        return _DECODER.decode(data.decode("utf-8"))
    except _DECODE_ERRORS as exc:
        raise StateIntegrityError(f"state key {key!r}: stored value cannot be decoded: {exc}") from None


def _untag_dict(obj: dict[str, Any]) -> Any:
    """Apply ``_object_hook`` bottom-up, in place, as ``json`` does while it parses."""
    for key, item in obj.items():
        kind = type(item)
        if kind is dict:
            if len(item) == 1 and type(payload := item.get(_DECIMAL)) is str:
                obj[key] = Decimal(payload)  # inlined _object_hook: amounts are most of the tags
            else:
                obj[key] = _untag_dict(item)
        elif kind is list:
            _untag_list(item)
    return _object_hook(obj) if len(obj) == 1 else obj


def _untag_list(obj: list[Any]) -> None:
    for index, item in enumerate(obj):
        kind = type(item)
        if kind is dict:
            if len(item) == 1 and type(payload := item.get(_DECIMAL)) is str:
                obj[index] = Decimal(payload)
            else:
                obj[index] = _untag_dict(item)
        elif kind is list:
            _untag_list(item)


_decode_fast = msgspec.json.Decoder().decode


def decode_value(data: bytes, key: str = "?") -> Any:
    """Decode canonical bytes back into the value (``Decimal``/``datetime`` restored exactly)."""
    try:
        value = _decode_fast(data)
        # A tag has a "$" in its key, written as is or (not by us, but valid JSON) as a \u escape; without
        # either the parsed value is final.
        if b"$" not in data and b"\\u" not in data:
            return value
        if type(value) is dict:
            return _untag_dict(value)
        if type(value) is list:
            _untag_list(value)
        return value
    except (msgspec.DecodeError, *_DECODE_ERRORS):
        return _decode_reference(data, key)  # stdlib json is more lenient (NaN, lone surrogates, 1e400)


def checksum(data: bytes) -> str:
    """Return the hex SHA-256 of the value bytes."""
    return hashlib.sha256(data).hexdigest()


def verify(key: str, data: bytes, expected: str) -> None:
    """Raise ``StateIntegrityError`` naming ``key`` unless ``data`` hashes to ``expected``."""
    if hashlib.sha256(data).hexdigest() != expected:
        raise StateIntegrityError(f"state key {key!r}: checksum mismatch (stored record is corrupt)")
