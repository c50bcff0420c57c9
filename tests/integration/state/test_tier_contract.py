"""One contract per tier port, run against every backend (memory/Redis, SQLite/PostgreSQL, directory/S3)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot_v2.errors import StateError, StateIntegrityError
from bot_v2.state import codec
from bot_v2.state.models import ColdRecord, HotRecord, Tier, TierMove, WarmWrite
from bot_v2.state.tiers.cold import decode_segment, encode_segment, new_segment_name
from bot_v2.state.tiers.hot import body_matches, pack_record
from tests.helpers import eventually_async


def hot_record(key: str, version: int = 1, value: bytes = b'{"a":1}', ttl_ms: int | None = None) -> HotRecord:
    return HotRecord(key, version, codec.checksum(value), value, datetime.now(UTC), ttl_ms)


def warm_write(key: str, value: bytes | None = b"1", tier: Tier = Tier.WARM, **kw: Any) -> WarmWrite:
    return WarmWrite(
        key,
        kw.get("category", "fills"),
        tier,
        codec.checksum(value or b""),
        value,
        kw.get("cold_ref"),
        kw.get("expires_at"),
    )


# --- HOT ---------------------------------------------------------------------------------------------------


async def test_hot_ping_answers(hot_tier: Any) -> None:
    await hot_tier.ping()


async def test_hot_put_get_delete(hot_tier: Any) -> None:
    await hot_tier.apply([hot_record("orders:1"), hot_record("orders:2", 3)])
    got = await hot_tier.get_many(["orders:1", "orders:2", "orders:none"])
    assert set(got) == {"orders:1", "orders:2"}
    assert got["orders:2"].version == 3
    assert got["orders:1"].value == b'{"a":1}'
    assert got["orders:1"].checksum == codec.checksum(b'{"a":1}')
    assert await hot_tier.delete_many(["orders:1", "orders:none"]) == 1
    assert await hot_tier.get_many(["orders:1"]) == {}


async def test_hot_apply_puts_and_deletes_together(hot_tier: Any) -> None:
    await hot_tier.apply([hot_record("a:1"), hot_record("a:2")])
    await hot_tier.apply([hot_record("a:3", ttl_ms=60_000)], ["a:1"])
    assert set(await hot_tier.get_many(["a:1", "a:2", "a:3"])) == {"a:2", "a:3"}
    assert await hot_tier.count() == 2


async def test_hot_ttl_expires_and_plain_put_clears_ttl(hot_tier: Any) -> None:
    await hot_tier.apply([hot_record("m:1", ttl_ms=50), hot_record("m:2", ttl_ms=50)])
    await hot_tier.apply([hot_record("m:2", version=2)])  # rewritten without TTL: must not expire

    async def gone() -> bool:
        return await hot_tier.get_many(["m:1"]) == {}

    await eventually_async(gone, timeout=5)
    assert set(await hot_tier.get_many(["m:2"])) == {"m:2"}


async def test_hot_scan_pages_match_pattern(hot_tier: Any) -> None:
    await hot_tier.apply([hot_record(f"orders:{i}") for i in range(25)] + [hot_record("marks:BTC")])
    pages = [page async for page in hot_tier.scan("orders:*", page_size=10)]
    assert sorted(k for page in pages for k in page) == sorted(f"orders:{i}" for i in range(25))
    assert [k async for page in hot_tier.scan("marks:[AB]TC") for k in page] == ["marks:BTC"]


async def test_hot_older_version_never_replaces_newer(hot_tier: Any) -> None:
    await hot_tier.apply([hot_record("o:1", 5, b"new")])
    assert await hot_tier.apply([hot_record("o:1", 4, b"old")]) == 1
    assert await hot_tier.apply([hot_record("o:1", 1, b"older", ttl_ms=60_000)]) == 1
    held = (await hot_tier.get_many(["o:1"]))["o:1"]
    assert (held.version, held.value) == (5, b"new")
    assert await hot_tier.apply([hot_record("o:1", 6, b"newer")]) == 0
    assert (await hot_tier.get_many(["o:1"]))["o:1"].value == b"newer"


async def test_hot_same_version_same_record_is_a_no_op(hot_tier: Any) -> None:
    record = hot_record("o:1", 3, ttl_ms=100)
    await hot_tier.apply([record])
    # the same record again without TTL: left as it is, so the TTL of the held record still applies
    assert await hot_tier.apply([record._replace(ttl_ms=None, updated_at=datetime.now(UTC))]) == 0

    async def gone() -> bool:
        return await hot_tier.get_many(["o:1"]) == {}

    await eventually_async(gone, timeout=5)


async def test_hot_same_version_other_bytes_is_stored(hot_tier: Any) -> None:
    await hot_tier.apply([hot_record("o:1", 3, b"lost")])  # e.g. a version WARM lost in a failover
    assert await hot_tier.apply([hot_record("o:1", 3, b"warm")]) == 0
    assert (await hot_tier.get_many(["o:1"]))["o:1"].value == b"warm"
    corrupt = hot_record("o:1", 3, b"warm")._replace(value=b"w4rm")  # same header, other body bytes
    await hot_tier.apply([corrupt], replace=True)
    assert await hot_tier.apply([hot_record("o:1", 3, b"warm")]) == 0
    assert (await hot_tier.get_many(["o:1"]))["o:1"].value == b"warm"


async def test_hot_guarded_puts_keep_ttl_semantics(hot_tier: Any) -> None:
    await hot_tier.apply([hot_record("m:1", 1), hot_record("m:2", 1, ttl_ms=60_000)])
    await hot_tier.apply([hot_record("m:1", 2, ttl_ms=50), hot_record("m:2", 2)])  # fresh: TTL set / cleared
    assert await hot_tier.apply([hot_record("m:2", 1, ttl_ms=50)]) == 1  # stale: its TTL is not applied

    async def expired() -> bool:
        return set(await hot_tier.get_many(["m:1", "m:2"])) == {"m:2"}

    await eventually_async(expired, timeout=5)
    # nothing is held once the TTL ran out: any version may be cached again
    assert await hot_tier.apply([hot_record("m:1", 1)]) == 0
    assert (await hot_tier.get_many(["m:1"]))["m:1"].version == 1
    assert await hot_tier.apply([hot_record("m:3", 1, ttl_ms=0)]) == 0  # already expired: not cached
    assert await hot_tier.get_many(["m:3"]) == {}


async def test_hot_mixed_batch_applies_only_fresh_records(hot_tier: Any) -> None:
    await hot_tier.apply([hot_record(f"k:{i}", 5, b"held") for i in range(6)])
    batch = [
        hot_record("k:0", 4, b"stale"),
        hot_record("k:1", 6, b"fresh"),
        hot_record("k:2", 1, b"stale", ttl_ms=60_000),
        hot_record("k:3", 9, b"fresh", ttl_ms=60_000),
        hot_record("k:4", 5, b"held"),  # the same record
        hot_record("k:new", 1, b"fresh"),
    ]
    assert await hot_tier.apply(batch, ["k:5"]) == 2
    got = await hot_tier.get_many([f"k:{i}" for i in range(6)] + ["k:new"])
    assert {key: (r.version, r.value) for key, r in got.items()} == {
        "k:0": (5, b"held"),
        "k:1": (6, b"fresh"),
        "k:2": (5, b"held"),
        "k:3": (9, b"fresh"),
        "k:4": (5, b"held"),
        "k:new": (1, b"fresh"),
    }


async def test_hot_large_mixed_batch(hot_tier: Any) -> None:
    """Thousands of keys (the Redis script works in chunks of 1000): every third put is stale."""
    held = [hot_record(f"p:{i}", 5) for i in range(3600)] + [hot_record(f"d:{i}") for i in range(1200)]
    await hot_tier.apply(held)
    puts = [
        hot_record(f"p:{i}", 4 if i % 3 == 0 else 6, ttl_ms=60_000 if i >= 2500 else None)
        for i in range(3600)
    ]
    assert await hot_tier.apply(puts, [f"d:{i}" for i in range(1200)]) == 1200
    got = await hot_tier.get_many([f"p:{i}" for i in range(3600)])
    assert [got[f"p:{i}"].version for i in range(3600)] == [5 if i % 3 == 0 else 6 for i in range(3600)]
    assert await hot_tier.count() == 3600


async def test_hot_deletes_are_unconditional_and_replace_skips_the_guard(hot_tier: Any) -> None:
    await hot_tier.apply([hot_record("d:1", 7), hot_record("d:2", 7)])
    assert await hot_tier.apply([], ["d:1"]) == 0
    assert await hot_tier.get_many(["d:1"]) == {}
    # the repair path: HOT holds a version WARM no longer has (the key was deleted and recreated in WARM)
    assert await hot_tier.apply([hot_record("d:2", 1, b"warm")], replace=True) == 0
    held = (await hot_tier.get_many(["d:2"]))["d:2"]
    assert (held.version, held.value) == (1, b"warm")


async def test_hot_guard_needs_no_special_key_names(hot_tier: Any) -> None:
    keys = ["o:{slot}tag", "o:{}", "o:é€-BTC/USD", "o:'\"%s", "o:" + "k" * 200, "o:日本語"]
    await hot_tier.apply([hot_record(key, 2, key.encode()) for key in keys])
    assert await hot_tier.apply([hot_record(key, 1, b"stale") for key in keys]) == len(keys)
    got = await hot_tier.get_many(keys)
    assert {key: (r.version, r.value) for key, r in got.items()} == {key: (2, key.encode()) for key in keys}


# --- WARM --------------------------------------------------------------------------------------------------


async def test_warm_upsert_versions_are_monotonic(warm_tier: Any) -> None:
    now = datetime.now(UTC)
    first = await warm_tier.upsert_many([warm_write("f:1"), warm_write("f:2")], now)
    assert first == {"f:1": (1, Tier.WARM), "f:2": (1, Tier.WARM)}
    second = await warm_tier.upsert_many([warm_write("f:1", b"2")], now)
    assert second == {"f:1": (2, Tier.WARM)}
    rows = await warm_tier.get_many(["f:1", "f:2", "f:3"], now)
    assert set(rows) == {"f:1", "f:2"}
    assert rows["f:1"].value == b"2"
    assert rows["f:1"].checksum == codec.checksum(b"2")
    assert isinstance(rows["f:1"].value, bytes)
    assert rows["f:1"].updated_at.tzinfo is not None
    assert await warm_tier.get_versions(["f:1", "f:9"]) == {"f:1": (2, codec.checksum(b"2"))}


async def test_warm_stores_exact_bytes(warm_tier: Any) -> None:
    raw = '{"b":1,"a":"é"}  '.encode()  # not canonical JSON on purpose: jsonb would rewrite it
    now = datetime.now(UTC)
    await warm_tier.upsert_many([warm_write("x:1", raw)], now)
    assert (await warm_tier.get_many(["x:1"], now))["x:1"].value == raw


async def test_warm_hot_rows_stay_hot_when_rewritten_as_warm(warm_tier: Any) -> None:
    now = datetime.now(UTC)
    await warm_tier.upsert_many([warm_write("c:1", tier=Tier.HOT)], now)
    assert await warm_tier.upsert_many([warm_write("c:1", b"2")], now) == {"c:1": (2, Tier.HOT)}


async def test_warm_expired_rows_are_invisible(warm_tier: Any) -> None:
    now = datetime.now(UTC)
    await warm_tier.upsert_many(
        [warm_write("e:1", expires_at=now + timedelta(seconds=1)), warm_write("e:2")], now
    )
    later = now + timedelta(seconds=2)
    assert set(await warm_tier.get_many(["e:1", "e:2"], later)) == {"e:2"}
    assert await warm_tier.keys_matching("e:*", later) == ["e:2"]
    assert await warm_tier.delete_many(["e:1", "e:2"], later) == ["e:2"]


async def test_warm_delete_returns_really_deleted(warm_tier: Any) -> None:
    now = datetime.now(UTC)
    await warm_tier.upsert_many([warm_write("d:1"), warm_write("d:2")], now)
    assert sorted(await warm_tier.delete_many(["d:1", "d:2", "d:3"], now)) == ["d:1", "d:2"]
    assert await warm_tier.delete_many(["d:1"], now) == []


async def test_warm_move_is_conditional_on_version(warm_tier: Any) -> None:
    now = datetime.now(UTC)
    await warm_tier.upsert_many([warm_write("m:1"), warm_write("m:2")], now)
    moved = await warm_tier.move_many(
        [TierMove("m:1", 1, Tier.COLD, None, "seg-1"), TierMove("m:2", 7, Tier.COLD, None, "seg-1")]
    )
    assert moved == ["m:1"]
    rows = await warm_tier.get_many(["m:1", "m:2"], now)
    assert (rows["m:1"].tier, rows["m:1"].value, rows["m:1"].cold_ref) == (Tier.COLD, None, "seg-1")
    assert rows["m:2"].tier is Tier.WARM
    by_tier, _ = await warm_tier.stats(now)
    assert by_tier == {"cold": 1, "warm": 1}


async def test_warm_pattern_and_keyset_paging(warm_tier: Any) -> None:
    now = datetime.now(UTC)
    keys = [f"orders:{i:03d}" for i in range(30)] + ["orders_x:1", "o%:1", "o_:1"]
    await warm_tier.upsert_many([warm_write(k) for k in keys], now)
    assert await warm_tier.keys_matching("orders:*", now) == [f"orders:{i:03d}" for i in range(30)]
    assert await warm_tier.keys_matching("orders:00[0-2]", now) == ["orders:000", "orders:001", "orders:002"]
    assert await warm_tier.keys_matching("o%:*", now) == ["o%:1"]
    assert await warm_tier.keys_matching("o_:?", now) == ["o_:1"]
    seen: list[str] = []
    after = ""
    while page := await warm_tier.page_rows(after, 7, now):
        seen += [row.key for row in page]
        after = page[-1].key
    assert seen == sorted(keys)


async def test_warm_keyset_paging_of_one_tier(warm_tier: Any) -> None:
    now = datetime.now(UTC)
    hot = [f"h:{i:02d}" for i in range(12)]
    await warm_tier.upsert_many([warm_write(k, tier=Tier.HOT) for k in hot], now)
    await warm_tier.upsert_many([warm_write(f"h:{i:02d}x") for i in range(12)], now)  # WARM rows between
    seen: list[str] = []
    after = ""
    while page := await warm_tier.page_rows(after, 5, now, tier=Tier.HOT):
        assert all(row.tier is Tier.HOT for row in page)
        seen += [row.key for row in page]
        after = page[-1].key
    assert seen == hot
    assert len(await warm_tier.page_rows("", 100, now, tier=Tier.WARM)) == 12


async def test_warm_hot_page_packs_the_hot_set_as_hot_stores_it(warm_tier: Any) -> None:
    """The database's packing (PostgreSQL: in the query) gives exactly ``hot.pack_record``'s bytes and the TTL
    left; a body that fails its checksum is packed as stored, and ``hot.body_matches`` finds it."""
    from bot_v2.state.tiers.warm import pack_rows

    now = datetime.now(UTC)
    bodies = {f"p:{i:02d}": f'{{"i":{i},"s":"\u00e9t\u00e9"}}'.encode() for i in range(6)}
    writes = [warm_write(k, v, tier=Tier.HOT) for k, v in bodies.items()]
    writes.append(warm_write("p:ttl", b"t", tier=Tier.HOT, expires_at=now + timedelta(seconds=30)))
    writes.append(warm_write("p:warm", b"w"))  # not in the hot set
    bad = warm_write("p:bad", b"good", tier=Tier.HOT)
    writes.append(bad._replace(checksum=codec.checksum(b"other")))  # body fails its checksum
    await warm_tier.upsert_many(writes, now)
    await warm_tier.upsert_many(writes[:2], now + timedelta(microseconds=123457))  # version 2
    rows = await warm_tier.page_rows("", 100, now, tier=Tier.HOT)
    page = await warm_tier.hot_page("", 100, now)
    assert page == pack_rows(rows, now)
    assert [r.key for r in page] == ["p:00", "p:01", "p:02", "p:03", "p:04", "p:05", "p:bad", "p:ttl"]
    assert page[0].version == 2 and page[0].packed == pack_record(
        HotRecord("p:00", 2, rows[0].checksum, bodies["p:00"], rows[0].updated_at)
    )
    assert [r.key for r in page if r.packed is None or not body_matches(r.packed)] == ["p:bad"]
    assert page[7].ttl_ms is not None and 29_000 < page[7].ttl_ms <= 30_000
    assert [r.key for r in await warm_tier.hot_page("p:03", 2, now)] == ["p:04", "p:05"]
    # the start-up repair's view of the same rows: (key, version, checksum), by key range
    versions = await warm_tier.hot_versions("", 100, now)
    assert list(versions.items()) == [(r.key, (r.version, r.checksum)) for r in rows]  # in key order
    assert list(await warm_tier.hot_versions("p:03", 2, now)) == ["p:04", "p:05"]


async def test_warm_upsert_is_one_transaction(warm_tier: Any) -> None:
    now = datetime.now(UTC)
    with pytest.raises(StateError):  # the CHECK constraint rejects a COLD row with a body
        await warm_tier.upsert_many([warm_write("t:1"), warm_write("t:2", tier=Tier.COLD)], now)
    assert await warm_tier.get_many(["t:1", "t:2"], now) == {}


async def test_warm_schema_version_recorded(warm_tier: Any) -> None:
    assert warm_tier.schema_version >= 1


async def test_warm_snapshot_pages_are_one_snapshot_by_column(warm_tier: Any) -> None:
    """Pages come in key order as columns, from one snapshot (a write made between two pages is not in it);
    expired rows and excluded categories are left out; closing the iterator early ends the snapshot (the next
    one starts, and sees the write)."""
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)
    await warm_tier.upsert_many([warm_write(f"s:{i:02d}", str(i).encode()) for i in range(7)], now)
    await warm_tier.upsert_many(
        [
            warm_write("s:cold", None, Tier.COLD, cold_ref="seg-1"),
            warm_write("s:ttl", b"t", expires_at=later),
            warm_write("s:gone", b"g", expires_at=now - timedelta(seconds=1)),
            warm_write("s:ckpt", b"c", category="checkpoints"),
        ],
        now,
    )
    pages = []
    async for page in warm_tier.snapshot_pages(now, ["checkpoints"], 3):
        pages.append(page)
        if len(pages) == 1:
            await warm_tier.upsert_many([warm_write("s:06", b"changed"), warm_write("s:new")], now)
    assert [len(page.keys) for page in pages] == [3, 3, 3]
    keys = [key for page in pages for key in page.keys]
    assert keys == [*(f"s:{i:02d}" for i in range(7)), "s:cold", "s:ttl"]
    values = [value for page in pages for value in page.values]
    assert values[6] == b"6" and values[7] is None  # the snapshot's value, not the later one; COLD: no body
    assert list(pages[2].keys) == ["s:06", "s:cold", "s:ttl"]
    assert list(pages[2].tiers) == ["warm", "cold", "warm"] and pages[2].cold_refs[1] == "seg-1"
    assert pages[2].expires_at[0] is None and pages[2].expires_at[2] == later and pages[0].versions[0] == 1
    assert pages[0].checksums[0] == codec.checksum(b"0")
    async with contextlib.aclosing(warm_tier.snapshot_pages(now, ["checkpoints"], 2)) as early:
        first = await anext(early)
    assert list(first.keys) == ["s:00", "s:01"]
    second = [page async for page in warm_tier.snapshot_pages(now, ["checkpoints"], 100)]
    assert "s:new" in second[0].keys and b"changed" in second[0].values


# --- COLD --------------------------------------------------------------------------------------------------


async def test_cold_segment_round_trip(cold_tier: Any) -> None:
    records = [ColdRecord(f"k:{i}", i, codec.checksum(b"1"), "archive", b"1") for i in range(3)]
    name = new_segment_name(datetime.now(UTC))
    await cold_tier.put_segment(name, encode_segment("bot", records))
    assert decode_segment(name, await cold_tier.get_segment(name)) == {r.key: r for r in records}
    objects, size = await cold_tier.stats()
    assert objects == 1 and size > 0
    await cold_tier.delete_segment(name)
    assert await cold_tier.stats() == (0, 0)


async def test_cold_upload_file_stores_a_local_file_in_one_worker_job(cold_tier: Any, tmp_path: Path) -> None:
    """The spool sync's path: the file's bytes are stored; ``then`` runs in the worker thread (not the event
    loop's) exactly when the store's answer proved the bytes -- always for S3, never for a directory (its
    put answers nothing: the sync asks head_* instead); a missing file is a FileNotFoundError."""
    import hashlib
    import threading

    data = encode_segment("bot", [ColdRecord("k:1", 1, codec.checksum(b"1"), "archive", b"1")])
    source = tmp_path / "spooled"
    source.write_bytes(data)
    name = new_segment_name(datetime.now(UTC))
    ran: list[tuple[str, int]] = []

    def then(sha256: str) -> None:
        ran.append((sha256, threading.get_ident()))

    upload = await cold_tier.upload_file("segment", name, source, then)
    assert (upload.size, upload.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert upload.proven == (upload.stored == upload.sha256) and upload.proven == (
        "S3ColdTier" in repr(cold_tier)
    )
    assert [sha for sha, _ in ran] == ([upload.sha256] if upload.proven else [])
    assert all(thread != threading.get_ident() for _, thread in ran)
    assert await cold_tier.get_segment(name) == data
    upload = await cold_tier.upload_file("checkpoint", "c-2.ckpt", source, then)
    assert await cold_tier.get_checkpoint("c-2.ckpt") == data
    with pytest.raises(FileNotFoundError):
        await cold_tier.upload_file("segment", "gone.seg.gz", tmp_path / "gone", then)
    assert await cold_tier.head_segment("gone.seg.gz") is None
    await cold_tier.delete_segment(name)
    await cold_tier.delete_checkpoint("c-2.ckpt")


async def test_cold_missing_segment_is_an_integrity_error(cold_tier: Any) -> None:
    with pytest.raises(StateIntegrityError):
        await cold_tier.get_segment("nope.seg.gz")


async def test_cold_head_reports_size_and_sha256(cold_tier: Any) -> None:
    import hashlib

    data = encode_segment("bot", [ColdRecord("k:1", 1, codec.checksum(b"1"), "archive", b"1")])
    name = new_segment_name(datetime.now(UTC))
    assert await cold_tier.head_segment(name) is None
    await cold_tier.put_segment(name, data)
    info = await cold_tier.head_segment(name)
    assert info is not None and info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    await cold_tier.put_checkpoint("c-1.ckpt", b"blob")
    assert await cold_tier.head_checkpoint("c-1.ckpt") == (4, hashlib.sha256(b"blob").hexdigest())
    await cold_tier.delete_checkpoint("c-1.ckpt")
    await cold_tier.delete_segment(name)
    assert await cold_tier.head_checkpoint("c-1.ckpt") is None
