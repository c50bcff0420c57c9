"""The msgspec fast path writes and reads exactly what the stdlib ``json`` reference does.

Records stored before the fast path existed keep their bytes and checksums: the fast encoder must produce the
reference's bytes for every value the codec accepts, and the fast decoder must return the reference's value
(or its error) for every body.
"""

from __future__ import annotations

import enum
import json
import math
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot_v2.errors import StateEncodingError, StateIntegrityError
from bot_v2.state import codec

# --- strategies: the value shapes the codec accepts ----------------------------------------------------------

offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
timezones = st.just(UTC) | st.builds(timezone, offsets) | st.timezones()
aware_datetimes = st.datetimes(timezones=timezones)
# Decimals in every notation str() uses: plain, scientific (1E+3, 1.20E-9), negative zero, long coefficients.
decimals = st.decimals(allow_nan=False, allow_infinity=False) | st.builds(
    lambda sign, digits, exponent: Decimal((sign, digits, exponent)),
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=30).map(tuple),
    st.integers(-40, 40),
)
texts = st.text() | st.text(alphabet=st.characters(max_codepoint=0x7F))  # control characters, quotes, \\
keys = texts | st.sampled_from(["$decimal", "$datetime", "$dict", "$", "$x", "a", "A", "é", "\U0001f600"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | decimals
    | aware_datetimes
    | texts
)


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=6) | st.tuples(inner, inner)


values = st.recursive(scalars, containers, max_leaves=30)
# Without user dicts that look like a tag ({"$decimal": ...} alone), which the reference path wraps: the values
# the fast path encodes by itself.
plain_keys = keys.filter(lambda k: k not in {"$decimal", "$datetime", "$dict"})
fast_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(plain_keys, inner, max_size=6),
    max_leaves=30,
)


def same(a: object, b: object, ordered: bool = True) -> bool:
    """Equal and of the same types all the way down (``==`` says Decimal("1") == 1 == 1.0 == True).

    ``ordered``: dict keys in the same order too (decoded dicts come back in sorted key order).
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        if (list(a) if ordered else sorted(a)) != (list(b) if ordered else sorted(b)):
            return False
        return all(same(a[k], b[k], ordered) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y, ordered) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | Decimal):
        return repr(a) == repr(b)  # keeps exponents, -0.0 and NaN comparable
    if isinstance(a, datetime):
        assert isinstance(b, datetime)
        return a.isoformat() == b.isoformat() and a.tzinfo == b.tzinfo
    return a == b


def outcome(fn: Any, *args: object) -> tuple[str, object]:
    """The result of ``fn(*args)`` or the exception it raised, as something to compare."""
    try:
        return "ok", fn(*args)
    except Exception as exc:  # whatever comes out is compared
        return type(exc).__name__, str(exc)


# --- encoding ------------------------------------------------------------------------------------------------


@given(fast_values)
@settings(max_examples=500)
def test_fast_encoder_writes_the_reference_bytes(value: object) -> None:
    # Straight through the fast path (no fallback), so a difference cannot hide behind the reference.
    fast = codec._encode_fast(codec._tag(value))
    assert fast == codec._encode_reference(value, "k")


@given(values)
@settings(max_examples=500)
@example({"$decimal": "1.5"})
@example([{"$dict": {"$decimal": Decimal("2")}}, (1, 2.5e-7)])
def test_encode_value_is_the_reference_for_every_value(value: object) -> None:
    data = codec.encode_value(value, "k")
    assert data == codec._encode_reference(value, "k")
    decoded = codec.decode_value(data, "k")
    assert codec.encode_value(decoded) == data  # canonical: what comes back encodes to the same bytes


class Side(enum.StrEnum):
    BUY = "BUY"


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    def __str__(self) -> str:
        return "not this"


class When(datetime):
    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        return "custom"


class Amount(Decimal):
    pass


cycle: list[object] = []
cycle.append(cycle)


@pytest.mark.parametrize(
    "value",
    [
        {"side": Side.BUY, "level": Level.HIGH, Side.BUY: 1},
        {Text("k"): Text("v"), "a": [Text("x")]},
        OrderedDict([("b", 1), ("a", Decimal("1"))]),
        {"nested": OrderedDict([("$decimal", "x")])},
        ("tuple", Decimal("0.1"), (1, 2)),
        {"at": When(2026, 1, 2, tzinfo=UTC)},
        {"qty": Amount("1.10")},
        Decimal("-0E-12"),
        -0.0,
        1e22,
        2**100,
        "\u2028\x7f\x00",
        [],
        {},
    ],
)
def test_subclasses_and_odd_values_give_the_reference_bytes(value: object) -> None:
    assert codec.encode_value(value, "k") == codec._encode_reference(value, "k")


@pytest.mark.parametrize(
    "bad",
    [
        {1, 2},
        b"bytes",
        bytearray(b"x"),
        datetime(2024, 1, 1),  # naive
        {"at": [datetime(2024, 1, 1)]},
        math.nan,
        [1.0, {"x": -math.inf}],
        Decimal("NaN"),
        {"q": Decimal("-Infinity")},
        [Decimal("sNaN")],
        {1: "int key"},
        {"a": {None: 1}},
        {True: 1},
        {(1, 2): "tuple key"},
        date(2024, 1, 1),
        {"d": [date(2024, 1, 1)]},
        object(),
        {"s": "\ud800"},  # a lone surrogate has no UTF-8
        {"\udfff": 1},
        cycle,
        {"$decimal": {1, 2}},
    ],
)
def test_unencodable_values_raise_what_the_reference_raises(bad: object) -> None:
    with pytest.raises(StateEncodingError, match="orders:pb-1") as raised:
        codec.encode_value(bad, "orders:pb-1")
    with pytest.raises(StateEncodingError) as reference:
        codec._encode_reference(bad, "orders:pb-1")
    assert str(raised.value) == str(reference.value)


def test_known_record_keeps_its_bytes_and_checksum() -> None:
    """Bytes and SHA-256 written by the stdlib-only codec (commit 99e9f0f): stored records stay verifiable."""
    value = {
        "client_order_id": "pb-00000001",
        "price": Decimal("60001.25"),
        "size": Decimal("0.00100000"),
        "side": "BUY",
        "filled": [Decimal("1E+3"), 1.5e16, -0.0, 2**70],
        "at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "local": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        "meta": {"$decimal": "not a tag", "note": 'é\n\u2028"'},
        "wrapped": {"$datetime": "x"},
        "ok": True,
        "none": None,
    }
    stored = (
        '{"at":{"$datetime":"2026-01-02T03:04:05.000006+00:00"},"client_order_id":"pb-00000001",'
        '"filled":[{"$decimal":"1E+3"},1.5e+16,-0.0,1180591620717411303424],'
        '"local":{"$datetime":"2026-01-02T03:04:05+05:30"},"meta":{"$decimal":"not a tag","note":"é\\n\u2028\\""},'
        '"none":null,"ok":true,"price":{"$decimal":"60001.25"},"side":"BUY","size":{"$decimal":"0.00100000"},'
        '"wrapped":{"$dict":[["$datetime","x"]]}}'
    ).encode()
    assert codec.encode_value(value) == stored
    assert codec.checksum(stored) == "0f976ae0570147da557833653bd7f7f0f03eaec51a4f575385fa6faf15bcfb2b"
    codec.verify("orders:pb-00000001", stored, codec.checksum(stored))
    assert same(codec.decode_value(stored), value, ordered=False)


# --- decoding ------------------------------------------------------------------------------------------------


@given(values)
@settings(max_examples=500)
def test_decoder_returns_the_reference_value(value: object) -> None:
    data = codec._encode_reference(value, "k")
    msgspec.json.decode(data)  # the fast path parses every canonical body itself
    decoded = codec.decode_value(data, "k")
    assert same(decoded, codec._decode_reference(data, "k"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=15,
)


@given(
    json_values,
    st.booleans(),
    st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :")]),
    st.sampled_from([None, 1]),
)
@settings(max_examples=300)
@example({"$decimal": "1.5"}, True, (",", ":"), None)
@example({"$datetime": "2026-01-02T03:04:05+01:00"}, False, (", ", ": "), 1)
@example({"$dict": [["$decimal", {"$decimal": "2"}]]}, False, (",", ":"), None)
@example([float("nan"), float("inf"), 1e400], False, (",", ":"), None)
def test_decoder_agrees_with_the_reference_on_any_json(
    value: object, ascii_only: bool, separators: tuple[str, str], indent: int | None
) -> None:
    """Non-canonical but valid JSON too: whitespace, \\u escapes, NaN/Infinity (which only stdlib parses)."""
    data = json.dumps(value, ensure_ascii=ascii_only, separators=separators, indent=indent).encode()
    assert same(outcome(codec.decode_value, data, "k"), outcome(codec._decode_reference, data, "k"))


@pytest.mark.parametrize(
    "data",
    [
        b'{"\\u0024decimal":"1.5"}',  # a tag key written with an escape is still a tag
        b'"\\ud800"',  # lone surrogate escape: stdlib only
        b"[1e400]",
        b'{"a":1,"a":2}',
        b" [1] ",
        b"123456789012345678901234567890",
        b'{"$decimal":5}',
    ],
)
def test_unusual_bodies_decode_like_the_reference(data: bytes) -> None:
    assert same(codec.decode_value(data, "k"), codec._decode_reference(data, "k"))


@given(values, st.data())
@settings(max_examples=300)
def test_corrupt_bodies_decode_like_the_reference_or_fail_naming_the_key(value: object, data: Any) -> None:
    body = bytearray(codec.encode_value(value))
    at = data.draw(st.integers(0, len(body) - 1))
    body[at] = data.draw(st.integers(0, 255))
    fast, reference = (
        outcome(codec.decode_value, bytes(body), "orders:x"),
        outcome(codec._decode_reference, bytes(body), "orders:x"),
    )
    assert same(fast, reference)
    if fast[0] != "ok":
        assert fast[0] == "StateIntegrityError"
        assert "orders:x" in str(fast[1])


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b'{"a":1',
        b'"\xff"',
        b"",
        b'{"$decimal":"abc"}',  # InvalidOperation is an ArithmeticError, not a ValueError
        b'{"$decimal":[1]}',
        b'{"$datetime":"yesterday"}',
        b'{"$datetime":5}',
        b'{"$dict":[["a"]]}',
        b'{"$dict":5}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_undecodable_bodies_are_integrity_errors_naming_the_key(data: bytes) -> None:
    with pytest.raises(StateIntegrityError, match="orders:x"):
        codec.decode_value(data, "orders:x")


def test_decode_does_not_share_state_between_calls() -> None:
    data = codec.encode_value({"a": [{"$decimal": "1"}], "b": Decimal("2")})
    first = codec.decode_value(data)
    first["a"].append("changed")
    assert codec.decode_value(data) == {"a": [{"$decimal": "1"}], "b": Decimal("2")}
