"""Checkpoint blob format: canonical, compressed, checksummed; any corruption is an error naming it."""

from __future__ import annotations

import hashlib
import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from bot_v2.errors import StateIntegrityError
from bot_v2.state import checkpoint_due, codec
from bot_v2.state.checkpoint import _Record, decode_checkpoint, encode_checkpoint
from bot_v2.state.models import Tier

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CID = "20260102T030405000000Z-0123abcd"


def _records() -> list[_Record]:
    out = []
    for i in range(50):
        value = codec.encode_value({"i": i, "name": "é"})
        out.append(_Record(f"orders:{i}", "orders", Tier.HOT, i + 1, codec.checksum(value), value, None))
    value = b'"x"'
    out.append(
        _Record("marks:1", "marks", Tier.HOT, 3, codec.checksum(value), value, NOW + timedelta(hours=1))
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
    assert blob.startswith(b"PBCKPT1 " + digest.encode() + b"\n")
    decoded = decode_checkpoint(CID, "bot", blob, digest)
    assert decoded.records == _records()
    assert decoded.created_at == NOW


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
    payload = json.dumps({"format": 9}).encode()
    compressed = zlib.compress(payload)
    forged = b"PBCKPT1 " + hashlib.sha256(compressed).hexdigest().encode() + b"\n" + compressed
    with pytest.raises(StateIntegrityError, match="unknown format"):
        decode_checkpoint(CID, "bot", forged)
