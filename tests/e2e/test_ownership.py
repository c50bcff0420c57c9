"""One live writer per bot id, with real processes: a second copy, a paused (SIGSTOP) primary, a step-down.

Every bot here is its own process (``tests/e2e/bot_driver.py --lease`` runs exactly what ``perps-bot`` runs:
the lease, fenced state, the gated exchange) against one standalone simulator and real Redis, PostgreSQL and
moto S3 servers started by the suite. Each process has its own data dir (events.jsonl, health.json) and the
same bot id and stores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot_v2.cli import handlers
from bot_v2.config import load_settings
from bot_v2.monitoring.events import EventType, read_events
from tests.e2e.conftest import PREVIEW_MARKET_BUY, ROOT, StandaloneSimulator, run_driver, sim_env
from tests.fixtures.services import S3_TEST_BUCKET, S3_TEST_CREDENTIALS, purge_namespace
from tests.helpers import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DRIVER = ROOT / "tests" / "e2e" / "bot_driver.py"


class BotProcess:
    """A bot driver subprocess with its own data dir; output goes to files so it never blocks."""

    def __init__(self, env: dict[str, str], data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.out = (data_dir / "stdout.txt").open("w")
        self.err = (data_dir / "stderr.txt").open("w")
        full = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
        full.update(env, PERPS_DATA_DIR=str(data_dir))
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), *args], cwd=ROOT, env=full, stdout=self.out, stderr=self.err
        )

    def events(self, kind: EventType) -> list[dict[str, Any]]:
        return read_events(self.data_dir / "events.jsonl", kind)

    def lease_events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events(EventType.LEASE) if e.get("kind") == kind]

    def stderr(self) -> str:
        return (self.data_dir / "stderr.txt").read_text()

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.out.close()
            self.err.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()


@pytest.fixture
def owned_env(
    standalone_simulator: StandaloneSimulator,
    tmp_path: Path,
    state_bot_id: str,
    redis_server: Any,
    postgres_server: Any,
    s3_server: Any,
) -> Iterator[dict[str, str]]:
    """Env for bots of one id on the real stores, trading on one standalone simulator."""
    sim = standalone_simulator
    env = sim_env(
        sim.base_url,
        sim.key_file,
        sim.ca_file,
        tmp_path / "unused",
        PERPS_BOT_ID=state_bot_id,
        PERPS_INTERVAL_SECONDS="0.2",
        RISK_MAX_ORDERS_PER_MINUTE="none",
        REDIS_URL=redis_server.url,
        DATABASE_URL=postgres_server.url,
        S3_ENDPOINT_URL=s3_server.url,
        S3_BUCKET=os.environ.get("S3_BUCKET", S3_TEST_BUCKET),
        AWS_DEFAULT_REGION="us-east-1",
        **({} if s3_server.external else _aws_env()),
    )
    yield env
    settings = load_settings("dev", {**env, "PERPS_DATA_DIR": str(tmp_path / "unused")}, root=tmp_path)
    import asyncio

    asyncio.run(purge_namespace(settings.state))


def _aws_env() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": S3_TEST_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": S3_TEST_CREDENTIALS["aws_secret_access_key"],
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., BotProcess]]:
    started: list[BotProcess] = []

    def start(env: dict[str, str], name: str, *args: str) -> BotProcess:
        bot = BotProcess(env, tmp_path / name, *args)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.stop()


def _cycles(bot: BotProcess) -> int:
    health = bot.data_dir / "health.json"
    if not health.exists():
        return 0
    import json

    try:
        return int(json.loads(health.read_text()).get("last_cycle") or 0)
    except ValueError:  # caught mid-write
        return 0


def _placed(bot: BotProcess) -> int:
    return len(bot.events(EventType.ORDER_PLACED))


def test_second_bot_exits_2_and_leaves_the_first_untouched(
    owned_env: dict[str, str], spawn: Callable[..., BotProcess], standalone_simulator: StandaloneSimulator
) -> None:
    client = standalone_simulator.sdk_client()
    resting = client.limit_order_gtc_buy("pb-e2e-resting-1", "BTC-USD", "0.001", "30000")
    order_id = resting["success_response"]["order_id"]

    primary = spawn(owned_env, "primary", "--lease", "--cycles", "0")
    eventually(lambda: _cycles(primary) >= 2, timeout=30)
    first = primary.events(EventType.RECONCILIATION)[0]
    assert "pb-e2e-resting-1" in first["adopted_orders"]  # the running bot owns the resting order
    assert "pb-e2e-resting-1" in first["intents_rebuilt"]  # sent without an intent: one rebuilt in state

    second = run_driver({**owned_env, "PERPS_DATA_DIR": str(primary.data_dir)}, "--lease", "--cycles", "1")
    assert second.returncode == 2, second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert "already running" in line and f"pid {primary.proc.pid}" in line and "epoch" in line

    assert client.get_order(order_id)["order"]["status"] == "OPEN"  # not cancelled by the second start
    assert primary.proc.poll() is None
    before = _cycles(primary)
    eventually(lambda: _cycles(primary) >= before + 2, timeout=20)  # still trading, still the holder
    assert not primary.lease_events("fenced")
    primary.proc.terminate()
    assert primary.wait() == 0


def test_paused_primary_is_fenced_after_the_standby_takes_over(
    owned_env: dict[str, str], spawn: Callable[..., BotProcess], standalone_simulator: StandaloneSimulator
) -> None:
    primary = spawn(owned_env, "primary", "--lease", "--cycles", "0", "--buy-every")
    eventually(lambda: _placed(primary) >= 2, timeout=30)
    standby = spawn(owned_env, "standby", "--standby", "--cycles", "0", "--buy-every")
    time.sleep(1.0)  # the standby is connected and following the lease
    assert not standby.lease_events("takeover") and _placed(standby) == 0

    primary.proc.send_signal(signal.SIGSTOP)
    paused_at = time.time()
    eventually(lambda: standby.lease_events("takeover"), timeout=20)
    eventually(lambda: _placed(standby) >= 2, timeout=20)

    primary.proc.send_signal(signal.SIGCONT)
    assert primary.wait(timeout=30) == 1  # fenced: one line, exit 1
    assert "newer lease holder" in primary.stderr() or "FencedError" in primary.stderr()
    assert len(primary.lease_events("fenced")) == 1
    takeover_at = _ts(standby.lease_events("takeover")[0])
    late_intents = [e for e in primary.events(EventType.ORDER_INTENT) if _ts(e) > paused_at]
    assert late_intents == []  # the zombie decided nothing after waking up

    before = _placed(standby)
    eventually(lambda: _placed(standby) >= before + 1, timeout=20)  # the new holder keeps trading
    standby.proc.terminate()
    assert standby.wait() == 0
    exchange = _exchange_orders(standalone_simulator)
    client_ids = [o["client_order_id"] for o in exchange]
    assert len(client_ids) == len(set(client_ids))  # nothing placed twice
    zombie = {e["client_order_id"] for e in primary.events(EventType.ORDER_INTENT)}
    zombie_after_takeover = [
        o for o in exchange if o["client_order_id"] in zombie and _iso(o["created_time"]) > takeover_at
    ]
    assert (
        zombie_after_takeover == []
    )  # no order of the fenced writer reached the exchange after the takeover
    intents = {e["client_order_id"] for bot in (primary, standby) for e in bot.events(EventType.ORDER_INTENT)}
    assert set(client_ids) <= intents  # every order at the exchange had a durable intent first


def test_step_down_hands_over_to_the_standby_keeping_open_orders(
    owned_env: dict[str, str],
    spawn: Callable[..., BotProcess],
    standalone_simulator: StandaloneSimulator,
    tmp_path: Path,
) -> None:
    client = standalone_simulator.sdk_client()
    resting = client.limit_order_gtc_buy("pb-e2e-resting-2", "BTC-USD", "0.001", "30000")
    order_id = resting["success_response"]["order_id"]
    primary = spawn(owned_env, "primary", "--lease", "--cycles", "0")
    eventually(lambda: _cycles(primary) >= 2, timeout=30)
    standby = spawn(owned_env, "standby", "--standby", "--cycles", "0")
    time.sleep(1.0)

    settings = load_settings(
        "dev", {**owned_env, "PERPS_DATA_DIR": str(tmp_path / "operator")}, root=tmp_path
    )
    import asyncio

    assert asyncio.run(handlers.step_down(settings, reason="deploy  42")) == 0
    assert primary.wait(timeout=20) == 0
    (asked,) = primary.lease_events("step_down")
    assert asked["source"] == handlers.actor("deploy 42")  # cli:<user>@<host>:<pid> (deploy 42)
    assert primary.lease_events("released")
    eventually(lambda: standby.lease_events("takeover") and _cycles(standby) >= 1, timeout=20)
    assert client.get_order(order_id)["order"]["status"] == "OPEN"  # kept for the next holder
    stopped = primary.events(EventType.BOT_STOPPED)[-1]
    assert stopped["clean"] is True
    standby.proc.terminate()
    assert standby.wait() == 0


def test_read_only_commands_write_nothing_to_any_tier(
    owned_env: dict[str, str], spawn: Callable[..., BotProcess], tmp_path: Path
) -> None:
    primary = spawn(owned_env, "primary", "--lease", "--cycles", "3", "--buy")
    assert primary.wait(timeout=60) == 0
    env = {**owned_env, "PERPS_DATA_DIR": str(primary.data_dir)}
    settings = load_settings("dev", env, root=tmp_path)
    import asyncio

    before = asyncio.run(_tier_image(settings))
    for args in (
        ["--account-snapshot", "--json"],
        ["--list-checkpoints"],
        ["--restore-checkpoint", "latest", "--verify-only"],
        [*PREVIEW_MARKET_BUY],
    ):
        result = _cli(env, *args)
        assert result.returncode == 0, (args, result.stderr)
    assert asyncio.run(_tier_image(settings)) == before


async def _tier_image(settings: Any) -> tuple[Any, ...]:
    """Every WARM row (version, checksum), every HOT key's raw bytes, the lease row, every COLD object."""
    import asyncpg
    import boto3
    import redis.asyncio as aioredis

    state = settings.state
    conn = await asyncpg.connect(state.database_url)
    try:
        rows = await conn.fetch(
            "SELECT key, version, checksum, tier FROM state_records WHERE bot_id = $1 ORDER BY key",
            state.bot_id,
        )
        lease = await conn.fetchrow(
            "SELECT epoch, holder, expires_at FROM state_leases WHERE bot_id = $1", state.bot_id
        )
        checkpoints = await conn.fetch(
            "SELECT checkpoint_id FROM state_checkpoints WHERE bot_id = $1", state.bot_id
        )
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(state.redis_url)
    try:
        names = sorted([n async for n in client.scan_iter(match=f"state:{state.bot_id}:*")])
        hot = [(n, await client.dump(n)) for n in names]
    finally:
        await client.aclose()
    s3 = boto3.client(
        "s3",
        endpoint_url=state.s3_endpoint_url,
        aws_access_key_id=state.aws_access_key_id,
        aws_secret_access_key=state.aws_secret_access_key,
        region_name="us-east-1",
    )
    listed = s3.list_objects_v2(Bucket=state.s3_bucket, Prefix=f"state/{state.bot_id}/")
    cold = sorted((o["Key"], o["ETag"]) for o in listed.get("Contents", []))
    return (
        [tuple(r) for r in rows],
        None if lease is None else tuple(lease),
        sorted(r[0] for r in checkpoints),
        hot,
        cold,
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot_v2.cli", "--profile", "dev", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _exchange_orders(sim: StandaloneSimulator) -> list[dict[str, Any]]:
    client = sim.sdk_client()
    orders: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.list_orders(limit=1000, cursor=cursor) if cursor else client.list_orders(limit=1000)
        data = page.to_dict()
        orders.extend(o for o in data["orders"] if o["client_order_id"].startswith("pb-"))
        if not data.get("has_next"):
            return orders
        cursor = data["cursor"]


def _ts(event: dict[str, Any]) -> float:
    return _iso(event["ts"])


def _iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
