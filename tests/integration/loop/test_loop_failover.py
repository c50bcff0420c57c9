"""The trading loop against REAL state services that die and come back.

The bot runs on the simulated exchange with HOT in a private redis-server and WARM in a private PostgreSQL
cluster, both killed with SIGKILL mid-run:

* Redis dies: cycles keep succeeding (reads and writes served by PostgreSQL), and when Redis returns the hot
  set is restored and coherent.
* PostgreSQL dies: cycles fail as *retryable* (no intent can be made durable, so no order can be sent), the
  bot keeps running, and when PostgreSQL returns it carries on from the same state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot_v2.config import load_settings
from bot_v2.orchestration.bot import BotRunSummary, run_bot
from bot_v2.orchestration.wiring import open_runtime
from tests.fixtures.services import PostgresServer, RedisServer
from tests.helpers import eventually_async

pytestmark = pytest.mark.integration


@pytest.fixture
def private_services() -> Any:
    redis, postgres = RedisServer(), PostgresServer()
    redis.start()
    postgres.start()
    try:
        yield redis, postgres
    finally:
        redis.stop()
        postgres.cleanup()


def _health(data_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((data_dir / "health.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


class RunningBot:
    def __init__(self, data_dir: Path, task: asyncio.Task[BotRunSummary], stop: asyncio.Event) -> None:
        self.data_dir, self.task, self.stop = data_dir, task, stop

    async def cycles_past(self, cycle: int, *, ok: bool | None = None, timeout: float = 20) -> dict[str, Any]:
        async def check() -> dict[str, Any]:
            assert not self.task.done(), "the bot stopped"
            health = _health(self.data_dir)
            assert health.get("last_cycle", 0) > cycle, health
            if ok is not None:
                assert health.get("ok") is ok, health
            return health

        return await eventually_async(check, timeout=timeout)


@pytest.fixture
async def running_bot(tmp_path: Path, private_services: Any) -> AsyncIterator[tuple[RunningBot, Any]]:
    redis, postgres = private_services
    env = {
        "REDIS_URL": redis.url,
        "DATABASE_URL": postgres.url,
        "PERPS_DATA_DIR": str(tmp_path / "data"),
        "PERPS_INTERVAL_SECONDS": "0.1",
        "SIM_TICK_SECONDS": "0.05",
        "PERPS_BOT_ID": "failover",
    }
    settings = load_settings("dev", env, root=tmp_path)
    stop = asyncio.Event()
    async with open_runtime(settings) as runtime:
        task = asyncio.create_task(run_bot(runtime, stop_event=stop))
        bot = RunningBot(settings.data_dir, task, stop)
        try:
            await bot.cycles_past(2, ok=True)
            yield bot, (redis, postgres, runtime)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)


async def test_redis_killed_mid_run_keeps_trading_and_restores_the_hot_set(running_bot: Any) -> None:
    bot, (redis, _postgres, runtime) = running_bot
    redis.kill()
    before = _health(bot.data_dir)["last_cycle"]
    # Several healthy cycles with Redis dead: WARM serves and takes every write.
    await bot.cycles_past(before + 5, ok=True)
    assert runtime.state.degraded_hot
    redis.start()
    await eventually_async(lambda: _not_degraded(runtime.state), timeout=20)
    await bot.cycles_past(_health(bot.data_dir)["last_cycle"] + 2, ok=True)
    report = await runtime.state.verify_coherence()
    assert report.ok, report
    stats = await runtime.state.get_storage_stats()
    assert stats.hot_recoveries >= 1 and stats.last_hot_recovery is not None
    assert stats.last_hot_recovery.keys_moved > 0
    # the loop reported the outage and the recovery as events (and metrics)
    events = [json.loads(line) for line in (bot.data_dir / "events.jsonl").read_text().splitlines()]
    degraded = [e for e in events if e["type"] == "tier_degraded"]
    recovered = [e for e in events if e["type"] == "recovery" and e.get("kind") == "hot_tier"]
    assert degraded and degraded[0]["tier"] == "hot"
    assert recovered and recovered[0]["coherent"] is True and recovered[0]["keys_moved"] > 0
    assert recovered[0]["outage_seconds"] > 0


async def _not_degraded(state: Any) -> bool:
    await state.get_state("safety:mode")  # any operation lets the manager probe Redis
    return not state.degraded_hot


async def test_postgres_killed_mid_run_journals_and_the_bot_resumes(running_bot: Any) -> None:
    """PostgreSQL dies under a running bot: the loop keeps cycling on the WARM-outage journal (docs/STATE.md
    "Degraded WARM: the journal"), and once PostgreSQL is back the journal is replayed and the state is
    coherent again."""
    bot, (_redis, postgres, runtime) = running_bot
    safety_before = await runtime.state.get_state("safety:mode")
    postgres.kill()

    async def journaling() -> bool:
        return bool(runtime.state.health().degraded_warm)

    await eventually_async(journaling, timeout=20, interval=0.02)
    down_at = _health(bot.data_dir)["last_cycle"]
    await bot.cycles_past(down_at + 3)  # cycles go on while PostgreSQL is down
    assert not bot.task.done()
    postgres.start()

    async def warm_up() -> bool:
        return not runtime.state.health().degraded_warm

    await eventually_async(warm_up, timeout=30, interval=0.05)
    recovered = await bot.cycles_past(_health(bot.data_dir)["last_cycle"] + 2, ok=True, timeout=30)
    assert recovered["trading_state"] == "ACTIVE"
    safety_after = await runtime.state.get_state("safety:mode")
    assert safety_after["trading_state"] == safety_before["trading_state"]
    report = await runtime.state.verify_coherence()
    assert report.ok, report
    bot.stop.set()
    summary = await asyncio.wait_for(bot.task, 60)
    assert not summary.halted
