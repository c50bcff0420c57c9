"""RedisHotTier on a real redis-server: what the tier contract cannot see from outside (one script call per
batch, foreign values, the script cache, two writers). The version guard itself: test_tier_contract.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot_v2.state import codec
from bot_v2.state.keys import KeySpace
from bot_v2.state.models import HotRecord
from bot_v2.state.tiers.hot import packed
from bot_v2.state.tiers.redis_hot import RedisHotTier


def record(key: str, version: int, value: bytes = b"1", ttl_ms: int | None = None) -> HotRecord:
    return HotRecord(key, version, codec.checksum(value), value, datetime.now(UTC), ttl_ms)


@pytest.fixture
async def raw(redis_server: Any) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def tiers(redis_server: Any, state_bot_id: str) -> AsyncIterator[tuple[RedisHotTier, RedisHotTier]]:
    """Two writers of the same bot id on their own connections: the owner and a zombie."""
    pair = (
        RedisHotTier(redis_server.url, KeySpace(state_bot_id)),
        RedisHotTier(redis_server.url, KeySpace(state_bot_id)),
    )
    for tier in pair:
        await tier.connect()
    yield pair
    owner = pair[0]
    await owner.delete_many([k async for page in owner.scan("*") for k in page])
    for tier in pair:
        await tier.close()


async def _calls(client: aioredis.Redis) -> dict[str, int]:
    info = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in info.items()}


async def test_batch_is_one_transaction_and_reads_versions_only_for_keys_it_does_not_know(
    tiers: tuple[RedisHotTier, RedisHotTier], raw: aioredis.Redis, state_bot_id: str
) -> None:
    owner, _ = tiers
    await owner.apply([record("d:1", 1)])
    puts = [record(f"o:{i}", 1) for i in range(50)] + [record(f"m:{i}", 1, ttl_ms=60_000) for i in range(5)]
    before = await _calls(raw)
    assert await owner.apply(puts, ["d:1"]) == 0
    delta = await _delta(raw, before)
    # keys it never wrote: one script reads their versions (headers only), then one MULTI/EXEC
    assert delta.get("eval") == 1 and delta.get("multi") == delta.get("exec") == delta.get("mset") == 1
    assert delta.get("evalsha", 0) == delta.get("mget", 0) == delta.get("get", 0) - 1 == 0  # GET: the token
    assert await owner.count() == 55
    assert 0 < await raw.pttl(KeySpace(state_bot_id).redis_key("m:0")) <= 60_000
    assert await raw.pttl(KeySpace(state_bot_id).redis_key("o:0")) == -1

    before = await _calls(raw)
    assert await owner.apply([record(f"o:{i}", 2) for i in range(50)]) == 0
    delta = await _delta(raw, before)
    # versions it wrote itself, nobody else wrote since: no read at all, one MULTI/EXEC
    assert delta.get("multi") == delta.get("exec") == delta.get("mset") == 1
    assert delta.get("eval", 0) == delta.get("evalsha", 0) == delta.get("getrange", 0) == 0
    assert {r.version for r in (await owner.get_many([f"o:{i}" for i in range(50)])).values()} == {2}


async def _delta(client: aioredis.Redis, before: dict[str, int]) -> dict[str, int]:
    after = await _calls(client)
    return {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}


async def test_script_cache_flushed_is_reloaded(
    tiers: tuple[RedisHotTier, RedisHotTier], raw: aioredis.Redis
) -> None:
    owner, _ = tiers
    await owner.apply([record("o:1", 2)])
    await raw.script_flush()  # what a Redis restart does to the script cache
    assert await owner.apply([record("o:1", 1)]) == 1
    assert await owner.apply([record("o:1", 3), record("o:2", 1)]) == 0  # o:2: its version is read
    assert (await owner.get_many(["o:1"]))["o:1"].version == 3
    assert (await owner.versions(["o:1", "o:2"]))["o:2"][0] == 1  # the headers script, loaded again


async def test_malformed_or_foreign_values_are_replaced(
    tiers: tuple[RedisHotTier, RedisHotTier], raw: aioredis.Redis, state_bot_id: str
) -> None:
    owner, _ = tiers
    prefix = KeySpace(state_bot_id).redis_prefix
    await raw.set(prefix + "x:garbage", b"not a record")
    await raw.set(prefix + "x:header", b"1 notanumber abc 0\n{}")
    await raw.set(prefix + "x:format", b"2 99 abc 0\n{}")  # a format this code does not know
    await raw.hset(prefix + "x:hash", "f", "v")
    keys = ["x:garbage", "x:header", "x:format", "x:hash"]
    assert await owner.apply([record(key, 1) for key in keys]) == 0
    assert {key: r.version for key, r in (await owner.get_many(keys)).items()} == dict.fromkeys(keys, 1)


async def test_zombie_batch_never_replaces_the_new_owners_records(
    tiers: tuple[RedisHotTier, RedisHotTier],
) -> None:
    owner, zombie = tiers
    stale = [record(f"o:{i}", 3, b"zombie") for i in range(10)]  # committed, then the process was paused
    await owner.apply([record(f"o:{i}", 4, b"owner") for i in range(5)])  # the taker rewrote half of them
    assert await zombie.apply(stale) == 5
    got = await owner.get_many([f"o:{i}" for i in range(10)])
    assert [got[f"o:{i}"].value for i in range(10)] == [b"owner"] * 5 + [b"zombie"] * 5


async def test_a_writer_that_knew_older_versions_is_refused_after_another_writer_moved_on(
    tiers: tuple[RedisHotTier, RedisHotTier], raw: aioredis.Redis
) -> None:
    """The zombie wrote these keys itself (it knows their versions and decides without reading); the owner
    then wrote newer versions. The zombie's next batch is above what it knew, yet older than what HOT holds:
    its EXEC is refused (the owner moved the write token), it reads the versions again and stores nothing."""
    owner, zombie = tiers
    keys = [f"z:{i}" for i in range(20)]
    assert await zombie.apply([record(key, 2, b"zombie-2") for key in keys]) == 0
    assert await owner.apply([record(key, 5, b"owner-5") for key in keys[:10]]) == 0
    before = await _calls(raw)
    assert await zombie.apply([record(key, 3, b"zombie-3") for key in keys]) == 10
    delta = await _delta(raw, before)
    assert delta.get("exec") == 2  # the first was refused (nil), the second stored the keys still older
    got = await owner.get_many(keys)
    assert [got[key].value for key in keys] == [b"owner-5"] * 10 + [b"zombie-3"] * 10
    assert await owner.apply([record(key, 4, b"owner-4") for key in keys[10:]]) == 0  # owner: same check
    assert await zombie.apply([record(key, 3, b"zombie-3") for key in keys]) == 20
    assert await zombie.apply([record(key, 6, b"zombie-6") for key in keys[:1]]) == 0  # newer: stored


async def test_a_put_of_the_held_version_compares_the_bytes(
    tiers: tuple[RedisHotTier, RedisHotTier], raw: aioredis.Redis, state_bot_id: str
) -> None:
    """Same version, same bytes: left as it is (TTL included); same version, other bytes: stored (the
    script path: the bytes are compared in Redis)."""
    owner, _ = tiers
    name = KeySpace(state_bot_id).redis_key("v:1")
    await owner.apply([record("v:1", 7, b"seven", ttl_ms=60_000)])
    ttl = await raw.pttl(name)
    assert await owner.apply([record("v:1", 7, b"seven", ttl_ms=600_000)]) == 0
    assert 0 < await raw.pttl(name) <= ttl  # untouched
    assert await owner.apply([record("v:1", 7, b"SEVEN")]) == 0
    assert (await owner.get_many(["v:1"]))["v:1"].value == b"SEVEN" and await raw.pttl(name) == -1


async def test_concurrent_writers_end_with_the_highest_version(
    tiers: tuple[RedisHotTier, RedisHotTier],
) -> None:
    """Check and set are one atomic script: no interleaving of two writers lets a lower version win."""
    rng = random.Random(7)
    keys = [f"r:{i}" for i in range(20)]
    batches = [[record(key, rng.randint(1, 1000)) for key in rng.sample(keys, 10)] for _ in range(60)]

    async def write(tier: RedisHotTier, mine: list[list[HotRecord]]) -> None:
        for batch in mine:
            await tier.apply(batch)

    async with asyncio.TaskGroup() as tg:
        for n, tier in enumerate(tiers * 2):
            tg.create_task(write(tier, batches[n::4]))
    highest: dict[str, int] = {}
    for batch in batches:
        for r in batch:
            highest[r.key] = max(highest.get(r.key, 0), r.version)
    got = await tiers[0].get_many(keys)
    assert {key: r.version for key, r in got.items()} == highest


async def test_a_batch_larger_than_one_socket_write_is_still_one_transaction(
    tiers: tuple[RedisHotTier, RedisHotTier], raw: aioredis.Redis
) -> None:
    """~3 MiB of records go out in several socket writes (each bounded by the command timeout) inside one
    MULTI/EXEC: Redis applies them together."""
    owner, _ = tiers
    big = [record(f"big:{i}", 1, bytes([65 + i % 26]) * 4096) for i in range(800)]
    await owner.apply(big[:1])
    before = await _calls(raw)
    assert await owner.apply([r._replace(version=2) for r in big]) == 0
    delta = await _delta(raw, before)
    assert delta.get("multi") == delta.get("exec") == delta.get("mset") == 1
    got = await owner.get_many([r.key for r in big])
    assert all(got[r.key].version == 2 and got[r.key].value == r.value for r in big)


async def test_a_writer_refuses_only_what_hot_holds_now(
    tiers: tuple[RedisHotTier, RedisHotTier], raw: aioredis.Redis, state_bot_id: str
) -> None:
    """The owner knows it wrote version 5; another writer then rewrites the key from WARM at version 3 (WARM
    lost commits: a promoted replica). The owner's version 4 is newer than what HOT holds now: stored, not
    refused on the strength of what the owner knew. And a batch that is refused entirely leaves the write
    token alone (a zombie refused again and again does not make the owner read its versions again)."""
    owner, other = tiers
    await owner.apply([record("l:1", 5, b"five")])
    await other.put_packed([packed(record("l:1", 3, b"three"))])
    assert await owner.apply([record("l:1", 4, b"four")]) == 0
    assert (await owner.get_many(["l:1"]))["l:1"].version == 4
    token_key = KeySpace(state_bot_id).redis_prefix[:-1]
    await owner.apply([record("l:2", 9, b"nine")])
    token = await raw.get(token_key)
    assert await other.apply([record("l:2", 1, b"old")]) == 1
    assert await other.apply([record("l:2", 2, b"old")]) == 1
    assert await raw.get(token_key) == token
    assert await owner.apply([record("l:2", 10, b"ten")]) == 0
