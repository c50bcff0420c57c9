"""Fuzz the bytes state reads back: checkpoint blobs (flipped, truncated, re-sealed, wrong version), stored
record bodies (``codec.decode_value``) and packed HOT records (``unpack_record``).

Each ends in a value or a ``StateIntegrityError`` naming the checkpoint or key -- one line, never another
exception type (which the loop would treat as a bug and halt on with a traceback in the log).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from bot_v2.errors import StateIntegrityError
from bot_v2.state import codec
from bot_v2.state.checkpoint.format import MAGIC, MAGIC_V1, Record, decode_checkpoint, encode_checkpoint
from bot_v2.state.models import HotRecord, Tier
from bot_v2.state.tiers.hot import pack_record, parse_header, unpack_record
from tests.fuzz.profiles import fuzz

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CID = "20261130T120000000000Z-0123abcd"


def _records(n: int) -> list[Record]:
    out = []
    for i in range(n):
        value = codec.encode_value({"i": i, "px": codec.decode_value(b'{"$d":"1.5"}'), "at": NOW})
        out.append(Record(f"orders:{i:04d}", "orders", Tier.HOT, i + 1, codec.checksum(value), value, None))
    return out


BLOB, _, _ = encode_checkpoint("bot", CID, NOW, _records(5))
VALUES = b"".join(r.value for r in _records(5))
DIGESTS = b"".join(hashlib.sha256(r.value).digest() for r in _records(5))
HEADER, _, PAYLOAD = BLOB.partition(b"\n")


def _seal(payload: bytes, magic: bytes = MAGIC) -> bytes:
    """A header whose SHA-256 matches ``payload``: the parse behind the checksum gets exercised."""
    return magic + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _decodes_or_integrity_error(blob: bytes) -> None:
    try:
        decoded = decode_checkpoint(CID, "bot", blob)
    except StateIntegrityError as exc:
        message = str(exc)
        assert "\n" not in message and CID in message
        return
    for record in decoded.records():  # what decodes must be whole: every value matches its checksum
        assert hashlib.sha256(record.value).hexdigest() == record.checksum


@fuzz(150)
@given(st.data())
def test_checkpoint_flipped_or_truncated(data: st.DataObject) -> None:
    blob = bytearray(BLOB)
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(blob)), label="truncate at")
    raw = bytes(blob[:cut])
    _decodes_or_integrity_error(raw)
    if raw != BLOB:
        try:
            decode_checkpoint(CID, "bot", raw)
        except StateIntegrityError:
            return
        raise AssertionError("a damaged checkpoint decoded")


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    )


def _v2_payload(head: object, values: bytes, digests: bytes) -> bytes:
    return zlib.compress(json.dumps(head).encode()) + zlib.compress(values) + zlib.compress(digests)


def _valid_head() -> dict[str, object]:
    head_bytes = zlib.decompressobj().decompress(PAYLOAD)
    parsed = json.loads(head_bytes)
    assert isinstance(parsed, dict)
    return parsed


@fuzz(80)
@given(st.data())
def test_checkpoint_resealed_structure(data: st.DataObject) -> None:
    """Mutate the parsed header (columns, types, lengths, format), re-compress and re-seal it."""
    head = _valid_head()
    columns = dict(head["records"])  # type: ignore[call-overload]
    mode = data.draw(st.sampled_from(["column", "field", "whole", "v1"]), label="mode")
    if mode == "column":
        name = data.draw(st.sampled_from(sorted(columns)))
        columns[name] = data.draw(st.lists(_json_values(), max_size=6) | _json_values())
        head["records"] = columns
    elif mode == "field":
        name = data.draw(st.sampled_from(["format", "bot_id", "checkpoint_id", "created_at", "records"]))
        head[name] = data.draw(_json_values())
    values, digests = VALUES, DIGESTS
    if data.draw(st.booleans(), label="damage values"):
        values = data.draw(st.binary(max_size=64))
    if mode == "whole":
        payload = _v2_payload(data.draw(_json_values()), values, digests)
        blob = _seal(payload)
    elif mode == "v1":
        body = data.draw(_json_values()) if data.draw(st.booleans()) else {**head, "format": 1}
        blob = _seal(zlib.compress(json.dumps(body).encode()), MAGIC_V1)
    else:
        blob = _seal(_v2_payload(head, values, digests))
    _decodes_or_integrity_error(blob)


def test_checkpoint_wrong_version_is_one_line() -> None:
    for magic in (b"PBCKPT3", b"PBCKPT", b"pbckpt2"):
        try:
            decode_checkpoint(CID, "bot", magic + BLOB[len(MAGIC) :])
        except StateIntegrityError as exc:
            assert "malformed header" in str(exc)
        else:
            raise AssertionError(magic)
    head = _valid_head()
    head["format"] = 3
    values, digests = VALUES, DIGESTS
    _decodes_or_integrity_error(_seal(_v2_payload(head, values, digests)))


GOOD_VALUE = codec.encode_value({"price": codec.decode_value(b'{"$d":"60000.25"}'), "at": NOW, "tags": ["a"]})


@fuzz(200)
@given(st.data())
def test_decode_value_corrupted_bodies(data: st.DataObject) -> None:
    how = data.draw(st.sampled_from(["random", "flip", "truncate", "json"]), label="how")
    if how == "random":
        body = data.draw(st.binary(max_size=200))
    elif how == "json":
        tagged = st.sampled_from(['{"$d":%s}', '{"$t":%s}', '{"$m":%s}', '[{"$d":%s}]', '{"a":{"$t":%s}}'])
        arg = data.draw(
            st.sampled_from(
                [
                    '"x"',
                    "1",
                    "null",
                    "[]",
                    '[["a"]]',
                    "[[1,2,3]]",
                    '"1e999999"',
                    '"9999-99-99"',
                    '[[{"$d":1},2]]',
                    '"NaN"',
                    '"\\ud800"',
                ]
            )
        )
        body = (data.draw(tagged) % arg).encode()
    else:
        raw = bytearray(GOOD_VALUE)
        if how == "flip":
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= data.draw(st.integers(1, 255))
        else:
            del raw[data.draw(st.integers(0, len(raw) - 1)) :]
        body = bytes(raw)
    try:
        codec.decode_value(body, "orders:x")
    except StateIntegrityError as exc:
        assert "orders:x" in str(exc) and "\n" not in str(exc)


@fuzz(150)
@given(st.data())
def test_unpack_hot_record_corrupted(data: st.DataObject) -> None:
    good = pack_record(HotRecord("orders:x", 7, codec.checksum(GOOD_VALUE), GOOD_VALUE, NOW))
    how = data.draw(st.sampled_from(["random", "flip", "truncate", "header"]), label="how")
    if how == "random":
        raw = data.draw(st.binary(max_size=120))
    elif how == "header":
        fields = [data.draw(st.sampled_from([b"1", b"2", b""]) | st.binary(max_size=12)) for _ in range(4)]
        raw = b" ".join(fields) + b"\n" + GOOD_VALUE
    else:
        buf = bytearray(good)
        if how == "flip":
            at = data.draw(st.integers(0, len(buf) - 1))
            buf[at] ^= data.draw(st.integers(1, 255))
        else:
            del buf[data.draw(st.integers(0, len(buf) - 1)) :]
        raw = bytes(buf)
    parse_header(raw.partition(b"\n")[0])
    try:
        record = unpack_record("orders:x", raw)
    except StateIntegrityError as exc:
        assert "orders:x" in str(exc) and "\n" not in str(exc)
        return
    assert record.key == "orders:x"


def test_regression_hot_record_header_not_ascii_or_out_of_range() -> None:
    """Found by the fuzzer: a flipped checksum byte raised UnicodeDecodeError, a huge timestamp
    OverflowError -- both escaped as non-integrity errors."""
    for header in (
        b"1 7 \xe4bc 1764504000000000",
        b"1 7 abc 99999999999999999999999",
        b"1 7 abc -99999999999999999",
    ):
        try:
            unpack_record("orders:x", header + b"\n{}")
        except StateIntegrityError as exc:
            assert "malformed HOT record header" in str(exc)
        else:
            raise AssertionError(header)
