"""Many bots on one Redis, PostgreSQL and S3: one bot's recovery never touches another's keys.

Bot A goes through everything that scans, pages, restores, repairs, prunes or deletes (a HOT outage and the
hot-set restore with a stray key in its namespace, an on-demand coherence repair, checkpoints pruned to one,
a checkpoint restore, a COLD demotion, a lease taken and released, a start-up repair); bot B's Redis keys,
PostgreSQL rows (records, checkpoints, lease) and S3 objects are compared byte for byte before and after.
"""

from __future__ import annotations

import signal
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import boto3
import pytest
import redis.asyncio as aioredis

from bot_v2.state import HotState, StateCategory, StateManager
from bot_v2.state.models import LeaseClaim
from bot_v2.state.settings import StateSettings
from tests.fixtures.services import (
    S3_TEST_CREDENTIALS,
    RedisServer,
    ServiceError,
    purge_namespace,
    unavailable,
)
from tests.helpers import eventually_async

ORDERS, FILLS = StateCategory.ORDERS, StateCategory.FILLS


@pytest.fixture
async def two_bots(
    real_state_settings: StateSettings, tmp_path: Any
) -> AsyncIterator[tuple[StateSettings, ...]]:
    """Settings of bots A and B on one private Redis (A's outage is a SIGSTOP) and the shared PG / S3."""
    try:
        server = RedisServer()
        server.start()
    except ServiceError as exc:
        unavailable("redis-server", exc)
    a = replace(
        real_state_settings,
        redis_url=server.url,
        checkpoint_retention=1,
        hot_probe_timeout_seconds=1.0,
        connect_timeout_seconds=1.0,
    )
    b = replace(a, bot_id=f"t-{uuid.uuid4().hex[:12]}", data_dir=tmp_path / "bot-b")
    try:
        yield a, b, server  # type: ignore[misc]
    finally:
        await purge_namespace(b)
        server.stop()


async def _footprint(settings: StateSettings) -> dict[str, Any]:
    """Everything bot ``settings.bot_id`` has in Redis, PostgreSQL and S3, as bytes / text."""
    bot = settings.bot_id
    client = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        names = sorted([n async for n in client.scan_iter(match=f"state:{bot}*", count=1000)])
        redis_data = {n: (await client.dump(n), await client.type(n)) for n in names}
    finally:
        await client.aclose()
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = [
            tuple(r)
            for r in await conn.fetch("SELECT * FROM state_records WHERE bot_id = $1 ORDER BY key", bot)
        ]
        checkpoints = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT checkpoint_id, sha256, blob FROM state_checkpoints WHERE bot_id = $1 ORDER BY 1", bot
            )
        ]
        leases = [tuple(r) for r in await conn.fetch("SELECT * FROM state_leases WHERE bot_id = $1", bot)]
    finally:
        await conn.close()
    s3 = boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1", **S3_TEST_CREDENTIALS
    )
    try:
        listing = s3.list_objects_v2(Bucket=settings.s3_bucket or "", Prefix=f"state/{bot}/")
        objects = {
            o["Key"]: s3.get_object(Bucket=settings.s3_bucket or "", Key=o["Key"])["Body"].read()
            for o in listing.get("Contents", [])
        }
    finally:
        s3.close()
    return {"redis": redis_data, "rows": rows, "checkpoints": checkpoints, "leases": leases, "s3": objects}


async def _populate(sm: StateManager, tag: str) -> None:
    await sm.batch_set_state({f"orders:{i}": {"bot": tag, "i": i} for i in range(60)}, ORDERS)
    await sm.batch_set_state({f"fills:{i}": {"bot": tag} for i in range(20)}, FILLS)
    await sm.set_state("marks:BTC", {"px": tag}, StateCategory.MARKS, ttl_seconds=3600)
    await sm.demote_to_cold([f"orders:{i}" for i in range(50, 60)])
    await sm.checkpoints.create_checkpoint("seed")
    await sm.checkpoints.create_checkpoint("seed")


async def test_one_bots_recovery_leaves_another_bots_keys_byte_identical(
    two_bots: tuple[StateSettings, StateSettings, RedisServer],
) -> None:
    a, b, server = two_bots
    async with await StateManager.create(b) as bot_b:
        await _populate(bot_b, "b")
        claim = LeaseClaim(holder=f"b-{uuid.uuid4().hex[:6]}", host=socket.gethostname(), pid=1)
        assert (await bot_b.acquire_lease(claim, 600)).acquired
    before = await _footprint(b)
    assert before["redis"] and before["rows"] and before["checkpoints"] and before["leases"] and before["s3"]

    async with await StateManager.create(a) as bot_a:
        await _populate(bot_a, "a")
        raw = aioredis.Redis.from_url(a.redis_url or "")
        await raw.set(f"state:{a.bot_id}:orders:stray", b"not a record")  # A's restore deletes it
        # A's HOT outage (Redis hangs for A's commands) and the hot-set restore
        server.send_signal(signal.SIGSTOP)
        try:
            assert await bot_a.get_state("orders:1") == {"bot": "a", "i": 1}  # WARM serves
            assert bot_a.health().degraded_hot
        finally:
            server.send_signal(signal.SIGCONT)

        async def a_hot() -> bool:
            await bot_a.get_state("orders:1")
            return bot_a.health().hot_state is HotState.UP

        await eventually_async(a_hot, timeout=10, interval=0.02)
        assert await raw.exists(f"state:{a.bot_id}:orders:stray") == 0
        await raw.set(f"state:{a.bot_id}:orders:2", b"1 1 0 0\ncorrupt")  # repaired on demand
        assert (await bot_a.repair_coherence()).repaired >= 1
        await raw.aclose()
        # checkpoints: pruned to one, restored; the lease: taken, renewed, released
        await bot_a.checkpoints.create_checkpoint("prune")
        assert len(await bot_a.checkpoints.list_checkpoints()) == 1
        await bot_a.set_state("orders:1", "changed", ORDERS)
        await bot_a.checkpoints.restore_checkpoint("latest")
        assert await bot_a.get_state("orders:1") == {"bot": "a", "i": 1}
        claim = LeaseClaim(holder=f"a-{uuid.uuid4().hex[:6]}", host=socket.gethostname(), pid=2)
        grant = await bot_a.acquire_lease(claim, 30)
        assert grant.acquired
        await bot_a.renew_lease(claim.holder, grant.record.epoch, 30)
        assert await bot_a.release_lease(claim.holder, grant.record.epoch)
        await bot_a.batch_delete_state([f"fills:{i}" for i in range(20)])
    async with await StateManager.create(a) as bot_a:  # a start-up coherence repair
        assert (await bot_a.verify_coherence()).ok

    assert await _footprint(b) == before
    async with await StateManager.create(b) as bot_b:
        assert await bot_b.get_state("orders:55") == {"bot": "b", "i": 55}  # from COLD, B's own segment
        assert (await bot_b.verify_coherence()).ok
