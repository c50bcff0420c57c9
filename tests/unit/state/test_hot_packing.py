"""HOT record packing: the batch packer and the WARM reference give ``pack_record``'s bytes exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot_v2.state.codec import checksum
from bot_v2.state.models import HotRecord, Tier, WarmRow
from bot_v2.state.tiers.hot import body_matches, pack_headers, pack_record, unpack_record
from bot_v2.state.tiers.warm import pack_rows


def test_pack_headers_are_pack_records_headers() -> None:
    t0 = datetime(2026, 11, 30, 8, 0, 0, 123457, tzinfo=UTC)
    records = [
        HotRecord(f"k:{i}", i + 1, checksum(b"v%d" % i), b"v%d" % i, t0 + timedelta(microseconds=i % 3), None)
        for i in range(50)
    ]
    records.append(HotRecord("k:ttl", 10**18, checksum(b""), b"", t0, 5))
    packed = [head + r.value for head, r in zip(pack_headers(records), records, strict=True)]
    assert packed == [pack_record(r) for r in records]
    assert unpack_record("k:1", packed[1]).updated_at == records[1].updated_at


def test_pack_rows_packs_the_hot_records_and_body_matches_finds_corrupt_ones() -> None:
    now = datetime.now(UTC)
    good = WarmRow("a", "orders", Tier.HOT, 3, checksum(b"x"), b"x", None, now, now + timedelta(seconds=2))
    bad = good._replace(key="b", value=b"y")
    packed = pack_rows([good, bad], now)
    record = HotRecord("a", 3, good.checksum, b"x", now, packed[0].ttl_ms)
    assert packed[0].packed == pack_record(record) and 1900 <= (packed[0].ttl_ms or 0) <= 2000
    assert body_matches(packed[0].packed or b"")
    assert packed[1].key == "b" and packed[1].packed is not None and not body_matches(packed[1].packed)
    assert not body_matches(b"no header") and not body_matches(b"\nx")
