"""Tier and StateManager fixtures over every backend (embedded and real services)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot_v2.state import StateManager
from bot_v2.state.keys import KeySpace
from bot_v2.state.settings import StateSettings
from bot_v2.state.tiers.factory import build_tiers
from bot_v2.state.tiers.memory_hot import MemoryHotTier


@pytest.fixture(params=["memory", "redis"])
async def hot_tier(request: pytest.FixtureRequest, state_bot_id: str) -> AsyncIterator[Any]:
    if request.param == "memory":
        tier: Any = MemoryHotTier()
    else:
        from bot_v2.state.tiers.redis_hot import RedisHotTier

        tier = RedisHotTier(request.getfixturevalue("redis_server").url, KeySpace(state_bot_id))
    await tier.connect()
    yield tier
    await tier.delete_many([k async for page in tier.scan("*") for k in page])
    await tier.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def warm_tier(request: pytest.FixtureRequest, state_bot_id: str, tmp_path: Any) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        from bot_v2.state.tiers.sqlite_warm import SqliteWarmTier

        tier: Any = SqliteWarmTier(tmp_path / "warm.sqlite3", KeySpace(state_bot_id))
    else:
        from bot_v2.state.tiers.postgres_warm import PostgresWarmTier

        tier = PostgresWarmTier(request.getfixturevalue("postgres_server").url, KeySpace(state_bot_id))
    await tier.connect()
    yield tier
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    await tier.delete_many(await tier.keys_matching("*", now), now)
    await tier.close()


@pytest.fixture(params=["directory", "s3", "spooling-directory", "spooling-s3"])
async def cold_tier(request: pytest.FixtureRequest, state_bot_id: str, tmp_path: Any) -> AsyncIterator[Any]:
    """Every COLD backend, bare and inside the spooling wrapper the manager always puts around it."""
    if request.param.endswith("directory"):
        from bot_v2.state.tiers.directory_cold import DirectoryColdTier

        tier: Any = DirectoryColdTier(tmp_path / "cold", KeySpace(state_bot_id))
    else:
        from bot_v2.state.tiers.s3_cold import S3ColdTier
        from tests.fixtures.services import S3_TEST_BUCKET, S3_TEST_CREDENTIALS

        server = request.getfixturevalue("s3_server")
        tier = S3ColdTier(
            S3_TEST_BUCKET,
            KeySpace(state_bot_id),
            endpoint_url=server.url,
            access_key_id=S3_TEST_CREDENTIALS["aws_access_key_id"],
            secret_access_key=S3_TEST_CREDENTIALS["aws_secret_access_key"],
        )
    if request.param.startswith("spooling-"):
        from bot_v2.state.tiers.spool import SpoolingColdTier

        tier = SpoolingColdTier(tier, tmp_path / "spool")
    await tier.connect()
    yield tier
    await tier.close()


@pytest.fixture(params=["embedded", "real"])
def state_settings(request: pytest.FixtureRequest) -> StateSettings:
    """StateSettings for the embedded combo (memory/SQLite/directory) and the real one (Redis/PG/S3)."""
    name = "embedded_state_settings" if request.param == "embedded" else "real_state_settings"
    settings: StateSettings = request.getfixturevalue(name)
    return settings


@pytest.fixture
async def sm(state_settings: StateSettings) -> AsyncIterator[StateManager]:
    async with await StateManager.create(state_settings) as manager:
        yield manager


def spied_tiers(settings: StateSettings) -> tuple[Any, Any, Any]:
    """The tiers ``settings`` selects, each wrapped in a ``TierSpy``."""
    from tests.unit.state.fakes import TierSpy

    hot, warm, cold = build_tiers(settings, KeySpace(settings.bot_id, settings.max_key_bytes))
    return TierSpy(hot), TierSpy(warm), TierSpy(cold)


def break_journal(settings: StateSettings) -> None:
    """Make the WARM-outage journal unwritable (its directory becomes a file): a WARM write that fails is
    then durable nowhere, and fails."""
    import shutil

    journal = settings.journal_dir / settings.bot_id
    shutil.rmtree(journal, ignore_errors=True)
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_bytes(b"")


def break_spool(settings: StateSettings) -> None:
    """Make the COLD spool unwritable (its directory becomes a file): a COLD write that fails then fails."""
    import shutil

    spool = settings.spool_dir / settings.bot_id
    shutil.rmtree(spool, ignore_errors=True)
    spool.write_bytes(b"")
