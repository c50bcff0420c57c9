"""The WARM lease and fencing contract, on SQLite and a real PostgreSQL (DESIGN.md "Ownership")."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot_v2.errors import FencedError
from bot_v2.state import codec
from bot_v2.state.models import CheckpointInfo, LeaseClaim, Tier, WarmRestore, WarmWrite

TTL = 0.3


def claim(name: str, role: str = "primary") -> LeaseClaim:
    return LeaseClaim(f"host:{name}", "host", 1000 + len(name), role)


def write(key: str, value: bytes = b"1") -> WarmWrite:
    return WarmWrite(key, "orders", Tier.WARM, codec.checksum(value), value, None, None)


async def expire(warm: Any) -> None:
    """Wait until the lease expired by the store's clock."""
    while (record := await warm.read_lease()) is not None and record.live:
        await asyncio.sleep(max(record.remaining_seconds, 0.005))


async def test_first_acquire_is_epoch_1_and_a_live_lease_is_not_taken(warm_tier: Any) -> None:
    assert await warm_tier.read_lease() is None
    first = await warm_tier.acquire_lease(claim("a"), TTL)
    assert first.acquired and first.record.epoch == 1 and first.record.holder == "host:a"
    assert 0 < first.record.remaining_seconds <= TTL
    second = await warm_tier.acquire_lease(claim("b"), TTL)
    assert not second.acquired
    assert second.record.holder == "host:a" and second.record.epoch == 1  # the live holder, untouched


async def test_expired_lease_is_taken_with_the_next_epoch(warm_tier: Any) -> None:
    await warm_tier.acquire_lease(claim("a"), TTL)
    await expire(warm_tier)
    taken = await warm_tier.acquire_lease(claim("b", "standby"), TTL)
    assert taken.acquired and taken.record.epoch == 2 and taken.record.role == "standby"


async def test_an_acquire_with_a_minimum_epoch_starts_above_a_restored_row(warm_tier: Any) -> None:
    """A lease taken again after the database came back from a backup: no row, or an older one (epoch 1)."""
    first = await warm_tier.acquire_lease(replace(claim("a"), min_epoch=7), TTL)
    assert first.acquired and first.record.epoch == 7  # no row: the floor, not 1
    await expire(warm_tier)
    assert (await warm_tier.acquire_lease(claim("b"), TTL)).record.epoch == 8  # no floor: epoch + 1
    await expire(warm_tier)
    third = await warm_tier.acquire_lease(replace(claim("c"), min_epoch=12), TTL)
    assert third.acquired and third.record.epoch == 12  # an older row: the floor, not 9
    await expire(warm_tier)
    assert (await warm_tier.acquire_lease(replace(claim("d"), min_epoch=3), TTL)).record.epoch == 13


async def test_renew_extends_only_the_current_holder_and_epoch(warm_tier: Any) -> None:
    grant = await warm_tier.acquire_lease(claim("a"), TTL)
    renewed = await warm_tier.renew_lease("host:a", 1, TTL)
    assert renewed.expires_at >= grant.record.expires_at and renewed.renewed_at >= grant.record.renewed_at
    with pytest.raises(FencedError):
        await warm_tier.renew_lease("host:b", 1, TTL)
    await expire(warm_tier)
    await warm_tier.acquire_lease(claim("b"), TTL)
    with pytest.raises(FencedError):  # a paused holder waking after a takeover
        await warm_tier.renew_lease("host:a", 1, TTL)


async def test_renew_after_expiry_without_takeover_keeps_the_lease(warm_tier: Any) -> None:
    await warm_tier.acquire_lease(claim("a"), TTL)
    await expire(warm_tier)
    renewed = await warm_tier.renew_lease("host:a", 1, TTL)  # nobody wrote with a newer epoch
    assert renewed.live and renewed.epoch == 1


async def test_release_makes_the_lease_free_at_once_and_keeps_the_epoch(warm_tier: Any) -> None:
    await warm_tier.acquire_lease(claim("a"), 60)
    assert await warm_tier.release_lease("host:a", 1)
    assert not (await warm_tier.read_lease()).live
    taken = await warm_tier.acquire_lease(claim("b"), TTL)
    assert taken.acquired and taken.record.epoch == 2
    assert not await warm_tier.release_lease("host:a", 1)  # an old holder cannot release the new lease


async def test_handover_request_reaches_the_holder_at_its_next_renewal(warm_tier: Any) -> None:
    asked = "cli:ops@h1:4242 (deploy 42)"
    assert await warm_tier.request_handover(asked) is None  # nobody holds it
    await warm_tier.acquire_lease(claim("a"), 60)
    assert (await warm_tier.read_lease()).handover_source is None
    requested = await warm_tier.request_handover(asked)
    assert requested is not None and requested.holder == "host:a" and requested.handover_source == asked
    renewed = await warm_tier.renew_lease("host:a", 1, 60)
    assert renewed.handover_requested and renewed.handover_source == asked  # who asked, and why
    await warm_tier.release_lease("host:a", 1)
    assert (await warm_tier.read_lease()).handover_source is None
    taken = (await warm_tier.acquire_lease(claim("b"), 60)).record
    assert not taken.handover_requested and taken.handover_source is None


async def test_fenced_writer_commits_nothing(warm_tier: Any) -> None:
    now = datetime.now(UTC)
    await warm_tier.acquire_lease(claim("a"), TTL)
    warm_tier.set_fence(1)
    assert (await warm_tier.upsert_many([write("orders:1")], now))["orders:1"][0] == 1
    await expire(warm_tier)
    await warm_tier.acquire_lease(claim("b"), TTL)  # epoch 2 takes over
    info = CheckpointInfo("cp-1", now, "manual", 1, 1, 1, "0" * 64, 0.0)
    restore = WarmRestore("orders:1", "orders", Tier.WARM, 1, codec.checksum(b"x"), b"x", None, None)
    for attempt in (
        warm_tier.upsert_many([write("orders:1", b"zombie"), write("orders:2")], now),
        warm_tier.delete_many(["orders:1"], now),
        warm_tier.replace_rows([restore], [], now),
        warm_tier.put_checkpoint(info, b"blob"),
        warm_tier.prune_checkpoints(0),
    ):
        with pytest.raises(FencedError):
            await attempt
    rows = await warm_tier.get_many(["orders:1", "orders:2"], now)
    assert set(rows) == {"orders:1"} and rows["orders:1"].value == b"1" and rows["orders:1"].version == 1
    assert await warm_tier.list_checkpoints() == []
    warm_tier.set_fence(2)  # the new holder writes
    assert (await warm_tier.upsert_many([write("orders:1", b"2")], now))["orders:1"][0] == 2
    warm_tier.set_fence(None)


async def test_unfenced_writes_ignore_the_lease(warm_tier: Any) -> None:
    """Tools and operator control writes hold no lease: they are not fenced (commands are refused instead)."""
    now = datetime.now(UTC)
    await warm_tier.acquire_lease(claim("a"), 60)
    assert (await warm_tier.upsert_many([write("control:operator")], now))["control:operator"][0] == 1


async def test_concurrent_acquires_elect_exactly_one_holder(warm_tier: Any) -> None:
    grants = await asyncio.gather(*(warm_tier.acquire_lease(claim(f"c{i}"), 60) for i in range(8)))
    winners = [g for g in grants if g.acquired]
    assert len(winners) == 1
    assert {g.record.holder for g in grants} == {winners[0].record.holder}


async def test_repair_restores_warm_truth_over_a_higher_hot_version(real_state_settings: Any) -> None:
    """WARM lost commits (a restore, a promoted replica): HOT holds a HIGHER version than WARM. The version
    guard refuses ordinary stale puts, but repair and restore rewrite HOT from WARM regardless."""
    from dataclasses import replace

    from bot_v2.state import StateCategory, StateManager
    from bot_v2.state.keys import KeySpace
    from bot_v2.state.models import HotRecord
    from bot_v2.state.tiers.factory import build_tiers

    settings = replace(real_state_settings, repair_hot_at_start=False)
    hot, warm, cold = build_tiers(settings, KeySpace(settings.bot_id, settings.max_key_bytes))
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        await sm.set_state("orders:1", {"v": "warm"}, StateCategory.ORDERS)  # v1 in WARM and HOT
        future = codec.encode_value({"v": "lost commit"}, "orders:1")
        await hot.apply([HotRecord("orders:1", 9, codec.checksum(future), future, datetime.now(UTC), None)])
        assert await sm.get_state("orders:1") == {"v": "lost commit"}  # what a stale cache would serve
        report = await sm.repair_coherence()
        assert report.repaired == 1
        assert await sm.get_state("orders:1") == {"v": "warm"}
