"""Checkpoint blob format: canonical, compressed, checksummed; any corruption is an error naming it; format 1
blobs (values as JSON strings) are still read."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from bot_v2.errors import StateIntegrityError
from bot_v2.state import checkpoint_due, codec
from bot_v2.state.checkpoint.format import (
    Columns,
    HeaderWriter,
    Record,
    compress,
    decode_checkpoint,
    encode_checkpoint,
)
from bot_v2.state.checkpoint.pacing import collector_paused, foreground, step_aside
from bot_v2.state.models import Tier

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CID = "20260102T030405000000Z-0123abcd"


def _records() -> list[Record]:
    out = []
    for i in range(50):
        value = codec.encode_value({"i": i, "name": "é"})
        out.append(Record(f"orders:{i}", "orders", Tier.HOT, i + 1, codec.checksum(value), value, None))
    value = b'"x"'
    out.append(
        Record("marks:1", "marks", Tier.HOT, 3, codec.checksum(value), value, NOW + timedelta(hours=1))
    )
    return out


def test_checkpoint_due() -> None:
    assert checkpoint_due(None, NOW, 300)
    assert not checkpoint_due(NOW, NOW + timedelta(seconds=299.9), 300)
    assert checkpoint_due(NOW, NOW + timedelta(seconds=300), 300)


def test_round_trip_is_canonical_and_compressed() -> None:
    blob, raw, digest = encode_checkpoint("bot", CID, NOW, _records())
    again, _, _ = encode_checkpoint("bot", CID, NOW, _records())
    assert blob == again  # canonical: same records, same bytes
    assert len(blob) < raw
    assert blob.startswith(b"PBCKPT2 " + digest.encode() + b"\n")
    decoded = decode_checkpoint(CID, "bot", blob, digest)
    assert decoded.records == _records()
    assert decoded.created_at == NOW
    # the payload: a zlib stream of the canonical JSON header (record metadata by column), a zlib stream of
    # the values byte for byte, then the records' SHA-256 checksums, binary
    header, values, digests = _streams(blob)
    body = json.loads(header)
    assert header == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert body["format"] == 2 and body["records"]["key"][50] == "marks:1"
    assert body["records"]["expires_at"][50] == (NOW + timedelta(hours=1)).isoformat()
    assert values == b"".join(r.value for r in _records())
    assert digests == b"".join(bytes.fromhex(r.checksum) for r in _records())
    assert raw == len(header) + len(values) + len(digests)


def _streams(blob: bytes) -> tuple[bytes, bytes, bytes]:
    payload = blob.partition(b"\n")[2]
    first = zlib.decompressobj()
    header = first.decompress(payload)
    second = zlib.decompressobj()
    values = second.decompress(first.unused_data)
    assert first.eof and second.eof
    return header, values, second.unused_data


def _forge(header: bytes, values: bytes, digests: bytes) -> tuple[bytes, str]:
    payload = zlib.compress(header) + zlib.compress(values) + digests
    digest = hashlib.sha256(payload).hexdigest()
    return b"PBCKPT2 " + digest.encode() + b"\n" + payload, digest


def test_encoding_a_slice_at_a_time_gives_the_same_bytes() -> None:
    records = _records()
    writer = HeaderWriter("bot", CID, NOW)
    columns = Columns.of(records)
    for start in range(0, len(records), 7):
        writer.add(columns.slice(start, start + 7))
    writer.add(Columns.of([]))
    assert writer.seal(compress([r.value for r in records])) == encode_checkpoint("bot", CID, NOW, records)
    assert encode_checkpoint("bot", CID, NOW, columns) == encode_checkpoint("bot", CID, NOW, records)
    empty = encode_checkpoint("bot", CID, NOW, [])
    assert decode_checkpoint(CID, "bot", empty[0], empty[2]).records == []


def _format_1(records: list[Record], bot_id: str = "bot") -> tuple[bytes, str]:
    """A blob as format 1 wrote it: one JSON document, values as JSON strings."""
    body = {
        "format": 1,
        "bot_id": bot_id,
        "checkpoint_id": CID,
        "created_at": NOW.isoformat(),
        "records": [
            [
                r.key,
                r.category,
                r.tier.value,
                r.version,
                r.checksum,
                r.value.decode(),
                None if r.expires_at is None else r.expires_at.isoformat(),
            ]
            for r in records
        ],
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    payload = zlib.compress(raw, 6)
    digest = hashlib.sha256(payload).hexdigest()
    return b"PBCKPT1 " + digest.encode() + b"\n" + payload, digest


def test_format_1_blobs_are_still_read() -> None:
    blob, digest = _format_1(_records())
    assert decode_checkpoint(CID, "bot", blob, digest).records == _records()
    records = _records()
    records[3] = records[3]._replace(value=b'{"i":999}')
    blob, digest = _format_1(records)
    with pytest.raises(StateIntegrityError, match=r"orders:3.*fails its checksum"):
        decode_checkpoint(CID, "bot", blob, digest)


def _damaged(name: str, header: bytes, values: bytes, digests: bytes) -> tuple[bytes, str]:
    body = json.loads(header)
    records = body["records"]
    if name == "a checksum too many":
        return _forge(header, values, digests + bytes(32))
    if name == "a checksum byte short":
        return _forge(header, values, digests[:-1])
    if name == "a value too many":
        return _forge(header, values + b"x", digests)
    if name == "a value short":
        return _forge(header, values[:-1], digests)
    if name == "no values stream":
        payload = zlib.compress(header)
        return b"PBCKPT2 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload, ""
    if name == "truncated values stream":
        payload = zlib.compress(header) + zlib.compress(values)[:-3]
        return b"PBCKPT2 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload, ""
    if name == "columns of unequal length":
        records["key"] = records["key"][:-1]
    elif name == "a column missing":
        del records["tier"]
    elif name == "length not a number":
        records["length"] = [str(n) for n in records["length"]]
    elif name == "unknown tier":
        records["tier"] = ["lukewarm"] * len(records["tier"])
    elif name == "no records":
        del body["records"]
    return _forge(json.dumps(body).encode(), values, digests)


@pytest.mark.parametrize(
    "damage",
    [
        "a checksum too many",
        "a checksum byte short",
        "a value too many",
        "a value short",
        "no values stream",
        "truncated values stream",
        "columns of unequal length",
        "a column missing",
        "length not a number",
        "unknown tier",
        "no records",
    ],
)
def test_a_malformed_payload_with_a_good_checksum_is_rejected(damage: str) -> None:
    blob, _, _ = encode_checkpoint("bot", CID, NOW, _records())
    forged, _ = _damaged(damage, *_streams(blob))
    with pytest.raises(StateIntegrityError, match=rf"{CID}.*malformed"):
        decode_checkpoint(CID, "bot", forged)


def test_bit_flip_anywhere_is_an_integrity_error_naming_the_checkpoint() -> None:
    blob, _, digest = encode_checkpoint("bot", CID, NOW, _records())
    for position in (3, 20, len(blob) // 2, len(blob) - 1):
        flipped = bytearray(blob)
        flipped[position] ^= 0x04
        with pytest.raises(StateIntegrityError, match=CID):
            decode_checkpoint(CID, "bot", bytes(flipped), digest)
    with pytest.raises(StateIntegrityError, match="checksum mismatch"):
        decode_checkpoint(CID, "bot", blob, "0" * 64)  # WARM metadata disagrees with the blob


def test_record_with_a_bad_checksum_is_rejected() -> None:
    records = _records()
    records[7] = records[7]._replace(value=b'{"i":999}')  # body changed, checksum not
    blob, _, digest = encode_checkpoint("bot", CID, NOW, records)
    with pytest.raises(StateIntegrityError, match=r"orders:7.*fails its checksum"):
        decode_checkpoint(CID, "bot", blob, digest)


def test_other_bot_or_id_is_rejected() -> None:
    blob, _, digest = encode_checkpoint("bot", CID, NOW, _records())
    with pytest.raises(StateIntegrityError, match="belongs to"):
        decode_checkpoint(CID, "other-bot", blob, digest)
    payload = zlib.compress(json.dumps({"format": 9}).encode())
    forged = b"PBCKPT1 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    with pytest.raises(StateIntegrityError, match="unknown format"):
        decode_checkpoint(CID, "bot", forged)
    forged, _ = _forge(json.dumps({"format": 1}).encode(), b"", b"")
    with pytest.raises(StateIntegrityError, match="unknown format"):
        decode_checkpoint(CID, "bot", forged)


def test_the_collector_is_paused_only_while_a_snapshot_is_held() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("snapshot failed")
    assert gc.isenabled()
    gc.disable()  # someone else paused it: left as it was
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_background_work_steps_aside_while_a_trading_cycle_runs() -> None:
    """A checkpoint's ``step_aside`` waits while a cycle is in the foreground (it would otherwise take the GIL
    from the worker thread the cycle waits on) and resumes once the cycle ends."""
    with foreground():
        waiting = asyncio.ensure_future(step_aside())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not waiting.done()
    await asyncio.wait_for(waiting, timeout=1)


async def test_background_work_is_not_starved_by_cycles_that_never_end() -> None:
    """Foreground work that never ends holds a step back for at most ``_MAX_ASIDE_SECONDS``, not forever."""
    with foreground():
        await asyncio.wait_for(step_aside(), timeout=1)
