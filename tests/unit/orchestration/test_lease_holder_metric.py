"""perps_bot_lease_holder: who holds the lease, as the holder and a standby see it (embedded state)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bot_v2.config.settings import LeaseSettings
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.lease import LeaseKeeper
from bot_v2.state import StateManager, StateSettings
from bot_v2.state.models import LeaseClaim

FAST = LeaseSettings(ttl_seconds=0.3, watchdog_seconds=0.5, submit_budget_seconds=0.1)


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateManager]:
    manager = await StateManager.create(StateSettings(bot_id="lease-m", data_dir=tmp_path, read_only=True))
    yield manager
    await manager.close()


def _holders(metrics: BotMetrics) -> dict[tuple[str, str], float]:
    family = next(f for f in metrics.registry.collect() if f.name == "perps_bot_lease_holder")
    return {(s.labels["holder"], s.labels["role"]): s.value for s in family.samples}


async def test_holder_and_standby_both_name_the_holder_until_it_releases(state: StateManager) -> None:
    primary_metrics, standby_metrics = BotMetrics(CollectorRegistry()), BotMetrics(CollectorRegistry())
    primary = LeaseKeeper(
        state, FAST, LeaseClaim("h:1:a", "h", 1, "primary"), bot_id="lease-m", metrics=primary_metrics
    )
    standby = LeaseKeeper(
        state, FAST, LeaseClaim("h:2:b", "h", 2, "standby"), bot_id="lease-m", metrics=standby_metrics
    )
    await primary.acquire()
    assert _holders(primary_metrics) == {("h:1:a", "primary"): 1}
    renewing = asyncio.create_task(primary.run())
    waiting = asyncio.create_task(standby.wait_for_lease())
    try:
        for _ in range(20):
            primary.heartbeat()
            if _holders(standby_metrics):
                break
            await asyncio.sleep(0.05)
        assert _holders(standby_metrics) == {("h:1:a", "primary"): 1}  # the standby sees the live bot
        renewing.cancel()
        await primary.release()
        assert _holders(primary_metrics) == {}
        record = await asyncio.wait_for(waiting, timeout=5)
        assert record.epoch == 2
        assert _holders(standby_metrics) == {("h:2:b", "standby"): 2}  # took over: one series, its own
    finally:
        renewing.cancel()
        waiting.cancel()
