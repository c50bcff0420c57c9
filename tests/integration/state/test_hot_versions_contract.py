"""``HotTier.versions``: (version, checksum) per key from the record headers, values left in place -- the
same answers from memory and Redis (the start-up coherence repair relies on it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot_v2.state.codec import checksum
from bot_v2.state.models import HotRecord
from bot_v2.state.tiers.hot import packed


def record(key: str, version: int = 1, value: bytes = b'{"v":1}', ttl_ms: int | None = None) -> HotRecord:
    return HotRecord(key, version, checksum(value), value, datetime.now(UTC), ttl_ms)


async def test_versions_match_the_records_and_skip_missing_keys(hot_tier: Any) -> None:
    a, b = record("orders:a", 3, b"aaa"), record("orders:b", 7, b"b" * 5000, ttl_ms=60_000)
    await hot_tier.apply([a, b])
    got = await hot_tier.versions(["orders:a", "orders:b", "orders:none"])
    assert got == {"orders:a": (3, a.checksum), "orders:b": (7, b.checksum)}
    assert await hot_tier.versions([]) == {}


async def test_versions_follow_rewrites_and_deletes(hot_tier: Any) -> None:
    await hot_tier.apply([record("o:1", 1, b"one")])
    newer = record("o:1", 2, b"two")
    await hot_tier.apply([newer])
    assert await hot_tier.versions(["o:1"]) == {"o:1": (2, newer.checksum)}
    await hot_tier.delete_many(["o:1"])
    assert await hot_tier.versions(["o:1"]) == {}


async def test_versions_of_many_keys_in_one_call(hot_tier: Any) -> None:
    records = [record(f"orders:{i:05d}", i + 1, f"v{i}".encode()) for i in range(2500)]
    await hot_tier.apply(records)
    got = await hot_tier.versions([r.key for r in records])
    assert got == {r.key: (r.version, r.checksum) for r in records}


async def test_redis_versions_flag_malformed_records_and_other_types(
    redis_server: Any, state_bot_id: str
) -> None:
    import redis.asyncio as aioredis

    from bot_v2.state.keys import KeySpace
    from bot_v2.state.tiers.redis_hot import RedisHotTier

    tier = RedisHotTier(redis_server.url, KeySpace(state_bot_id))
    raw = aioredis.Redis.from_url(redis_server.url)
    prefix = f"state:{state_bot_id}:"
    names = ["o:good", "o:garbage", "o:badversion", "o:list", "o:nonewline", "o:empty"]
    try:
        await tier.connect()
        good = record("o:good", 4, b"x" * 100)
        await tier.apply([good])
        await raw.set(prefix + "o:garbage", b"garbage")  # no header line
        await raw.set(prefix + "o:badversion", b"1 x " + b"0" * 64 + b" 0\nv")
        await raw.rpush(prefix + "o:list", b"a")  # another type: GET would fail with WRONGTYPE
        # a well-formed header line without its newline (nothing after it): not a record
        await raw.set(prefix + "o:nonewline", b"1 4 " + good.checksum.encode() + b" 0")
        await raw.set(prefix + "o:empty", b"")
        got = await tier.versions([*names, "o:none"])
        assert got == {"o:good": (4, good.checksum)} | dict.fromkeys(names[1:])
    finally:
        await raw.delete(*[prefix + k for k in names])
        await raw.aclose()
        await tier.close()


async def test_differing_lists_records_not_held_exactly(hot_tier: Any) -> None:
    same, older, other, gone = (
        record("d:same", 2, b"same"),
        record("d:older", 3, b"x"),
        record("d:other", 1, b"bytes"),
        record("d:gone", 1, b"g"),
    )
    await hot_tier.apply([same, older._replace(version=2), other._replace(value=b"BYTES"), gone])
    await hot_tier.delete_many(["d:gone"])
    expected = [packed(r) for r in (same, older, other, gone)]
    assert await hot_tier.differing(expected) == ["d:older", "d:other", "d:gone"]
    assert await hot_tier.differing(expected[:1]) == []
    assert await hot_tier.differing([]) == []
    many = [record(f"d:{i:05d}", 1, f"v{i}".encode()) for i in range(3000)]
    await hot_tier.apply(many)
    assert await hot_tier.differing([packed(r) for r in many]) == []


async def test_put_packed_stores_unguarded_with_ttl_and_deletes(hot_tier: Any) -> None:
    newer, expiring, gone = record("q:1", 9, b"nine"), record("q:2", 1, b"t", ttl_ms=60_000), record("q:3")
    await hot_tier.apply([newer, gone])
    older = record("q:1", 2, b"two")
    await hot_tier.put_packed([packed(older), packed(expiring)], ["q:3"])
    got = await hot_tier.get_many(["q:1", "q:2", "q:3"])
    assert {k: (r.version, r.value) for k, r in got.items()} == {"q:1": (2, b"two"), "q:2": (1, b"t")}
    assert await hot_tier.differing([packed(older), packed(expiring)]) == []
    assert await hot_tier.apply([record("q:1", 3, b"three")]) == 0  # the guard starts from what is held now
    assert (await hot_tier.get_many(["q:1"]))["q:1"].version == 3


async def test_put_packed_reads_back_in_the_same_call(hot_tier: Any) -> None:
    """``read_back=True``: the keys whose bytes HOT does not hold as written right after the write (none
    here: a corrupted value is the proxy test's, test_hot_recovery.py); a put without bytes is not written."""
    records = [
        record(f"r:{i}", i + 1, f"v{i}".encode(), ttl_ms=60_000 if i % 3 == 0 else None) for i in range(50)
    ]
    assert await hot_tier.put_packed([packed(r) for r in records], read_back=True) == []
    assert await hot_tier.differing([packed(r) for r in records]) == []
    assert await hot_tier.put_packed([], ["r:0"], read_back=True) == []
    assert await hot_tier.get_many(["r:0"]) == {}
