from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot_v2.errors import StateEncodingError, StateIntegrityError
from bot_v2.state import codec

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
json_scalars |= st.floats(allow_nan=False, allow_infinity=False)
json_scalars |= st.decimals(allow_nan=False, allow_infinity=False)
json_scalars |= st.datetimes(timezones=st.just(UTC)) | st.datetimes(
    timezones=st.sampled_from([timezone(timedelta(hours=-5)), timezone(timedelta(minutes=330))])
)
values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=10) | st.sampled_from(["$decimal", "$datetime", "$dict"]), inner, max_size=4
        )
    ),
    max_leaves=20,
)


@given(values)
def test_round_trip_is_exact_and_canonical(value: object) -> None:
    data = codec.encode_value(value)
    decoded = codec.decode_value(data)
    assert decoded == value
    assert codec.encode_value(decoded) == data


def test_decimal_keeps_its_exponent_and_datetime_its_offset() -> None:
    value = {
        "qty": Decimal("0.10"),
        "at": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2))),
    }
    decoded = codec.decode_value(codec.encode_value(value))
    assert str(decoded["qty"]) == "0.10"
    assert decoded["at"].utcoffset() == timedelta(hours=2)
    assert decoded["at"].isoformat() == "2024-01-02T03:04:05.000006+02:00"


def test_encoding_is_sorted_compact_utf8() -> None:
    assert codec.encode_value({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


def test_user_dict_that_looks_like_a_tag_round_trips() -> None:
    value = {"$decimal": "1.5"}
    assert codec.decode_value(codec.encode_value(value)) == value
    assert codec.decode_value(codec.encode_value([{"$dict": {"$decimal": Decimal("2")}}])) == [
        {"$dict": {"$decimal": Decimal("2")}}
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {1, 2},
        b"bytes",
        datetime(2024, 1, 1),  # naive
        math.nan,
        {"x": math.inf},
        Decimal("NaN"),
        {1: "int key"},
        datetime(2024, 1, 1).date(),
        object(),
    ],
)
def test_unencodable_values_are_rejected_naming_the_key(bad: object) -> None:
    with pytest.raises(StateEncodingError, match="orders:pb-1"):
        codec.encode_value(bad, "orders:pb-1")


def test_checksum_verification() -> None:
    data = codec.encode_value({"a": 1})
    codec.verify("k", data, codec.checksum(data))
    with pytest.raises(StateIntegrityError, match="'k'"):
        codec.verify("k", data + b" ", codec.checksum(data))


def test_undecodable_bytes_are_an_integrity_error() -> None:
    with pytest.raises(StateIntegrityError, match="orders:x"):
        codec.decode_value(b"{not json", "orders:x")
