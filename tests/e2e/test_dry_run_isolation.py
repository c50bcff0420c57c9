"""A live bot and a dry-run (paper) bot of one profile against one exchange: the paper run never touches the
live bot's state, events, health file or orders, and a paper DRAWDOWN latch never reaches the live bot.

Both run as subprocesses (tests/e2e/bot_driver.py and ``python -m bot_v2.cli``) against one standalone
simulator; the dev profile's embedded state (SQLite / directory) lives under one PERPS_DATA_DIR.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot_v2.config import BotSettings, CliOverrides, load_settings
from bot_v2.monitoring.events import read_events
from bot_v2.monitoring.health import read_health
from bot_v2.orchestration import keys
from bot_v2.orchestration.wiring import open_state
from bot_v2.risk import ReasonCode, RiskConfig, RiskEngine, RiskSnapshot, TradingState
from bot_v2.state import StateCategory
from tests.e2e.conftest import ROOT, StandaloneSimulator, sim_env

pytestmark = pytest.mark.e2e

DRIVER = [sys.executable, str(ROOT / "tests" / "e2e" / "bot_driver.py")]
CLI = [sys.executable, "-m", "bot_v2.cli"]


def _process_env(env: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    for var in ("REDIS_URL", "DATABASE_URL", "S3_ENDPOINT_URL", "S3_BUCKET"):
        full.pop(var, None)
    return full | env


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=_process_env(env), capture_output=True, text=True, timeout=90, check=False
    )


def _driver_summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr[-2000:]
    for line in result.stdout.splitlines():
        if line.startswith("DRIVER DONE "):
            summary: dict[str, Any] = json.loads(line.removeprefix("DRIVER DONE "))
            return summary
    raise AssertionError(f"driver printed no summary:\n{result.stdout}")


def _exchange_client_ids(sim: StandaloneSimulator) -> list[str]:
    client = sim.sdk_client()
    try:
        return [
            str(o.to_dict()["client_order_id"]) for o in client.list_orders(product_ids=["BTC-USD"]).orders
        ]
    finally:
        client.session.close()


async def _namespace(settings: BotSettings) -> dict[str, Any]:
    """Every record of the bot's state namespace (relative key -> value)."""
    async with open_state(settings) as state:
        return dict(await state.batch_get_state(await state.get_keys_by_pattern("*")))


def _files(settings: BotSettings) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (settings.events_path, settings.health_path)}


async def _latch_drawdown(settings: BotSettings) -> None:
    """Store a guard state with DRAWDOWN latched (equity 100000 -> 61100: 38.90%), as a paper run would."""
    engine = RiskEngine(RiskConfig(max_drawdown_pct=Decimal(5), daily_loss_limit_pct=None))
    now = datetime.now(UTC)
    engine.evaluate_cycle(RiskSnapshot(equity_usd=Decimal(100000)), now - timedelta(seconds=1))
    engine.evaluate_cycle(RiskSnapshot(equity_usd=Decimal(61100)), now)
    assert engine.state is TradingState.HALTED and ReasonCode.DRAWDOWN in engine.reasons
    async with open_state(settings) as state:
        await state.set_state(keys.GUARDS_KEY, engine.export_state(), StateCategory.GUARDS)


def _snapshot_state(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr[-2000:]
    trading_state: dict[str, Any] = json.loads(result.stdout)["trading_state"]
    return trading_state


def test_paper_bot_runs_beside_the_live_bot_and_never_touches_its_state(
    standalone_simulator: StandaloneSimulator, tmp_path: Path
) -> None:
    sim = standalone_simulator
    env = sim_env(
        sim.base_url, sim.key_file, sim.ca_file, tmp_path / "data", PERPS_LOG_DIR=str(tmp_path / "logs")
    )
    paper_env = env | {"PERPS_DRY_RUN": "1"}
    live = load_settings("dev", env, root=tmp_path)
    paper = load_settings("dev", env, CliOverrides(dry_run=True), root=tmp_path)
    assert (paper.bot_id, paper.client_id_prefix) == ("perps-dev-paper", "pbp-")

    # 1. Side by side: a live bot and a paper bot, each buying once, at the same time.
    started = [
        subprocess.Popen(
            [*DRIVER, "--cycles", "3", "--buy"],
            cwd=ROOT,
            env=_process_env(e),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for e in (env, paper_env)
    ]
    results = []
    for process in started:
        stdout, stderr = process.communicate(timeout=90)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    live_run, paper_run = (_driver_summary(r) for r in results)
    assert live_run["orders_placed"] == 1 and live_run["fills"] >= 1 and live_run["errors"] == []
    assert paper_run["orders_placed"] == 1 and paper_run["fills"] >= 1 and paper_run["errors"] == []

    # Only the live order reached the exchange; the paper order stayed in the paper broker.
    client_ids = _exchange_client_ids(sim)
    assert len(client_ids) == 1 and client_ids[0].startswith("pb-")

    live_records = asyncio.run(_namespace(live))
    paper_records = asyncio.run(_namespace(paper))
    live_fills = [k for k in live_records if k.startswith(keys.FILL_PREFIX)]
    paper_fills = [k for k in paper_records if k.startswith(keys.FILL_PREFIX)]
    assert live_fills and paper_fills and not set(live_fills) & set(paper_fills)
    for key in (k for k in live_records if k.startswith((keys.INTENT_PREFIX, keys.ORDER_PREFIX))):
        assert key.split(":", 1)[1] in client_ids, f"{key} is not the live bot's order"
    assert all(
        k.split(":", 1)[1].startswith("pbp-") for k in paper_records if k.startswith(keys.INTENT_PREFIX)
    )
    live_position = live_records[keys.position_key("BTC-USD")]
    assert Decimal(str(live_position["quantity"])) == Decimal("0.001")  # the live buy only, not the paper one

    live_events = read_events(live.events_path)
    assert live_events and all(e.get("bot_id", live.bot_id) == live.bot_id for e in live_events)
    assert [e["dry_run"] for e in live_events if e["type"] == "bot_started"] == [False]
    paper_events = read_events(paper.events_path)
    assert [(e["bot_id"], e["dry_run"]) for e in paper_events if e["type"] == "bot_started"] == [
        ("perps-dev-paper", True)
    ]
    assert read_health(live.health_path)["bot_id"] == "perps-dev"
    assert read_health(paper.health_path)["bot_id"] == "perps-dev-paper"
    assert paper.state.sqlite_path.exists() and paper.state.sqlite_path != live.state.sqlite_path

    # 2. A paper DRAWDOWN latch, then paper runs through the CLI: the live bot's files and records stay as
    # they were, and the next live start comes up ACTIVE.
    asyncio.run(_latch_drawdown(paper))
    live_files, live_before = _files(live), asyncio.run(_namespace(live))
    halted = _run([*CLI, "--dry-run", "--dev-fast"], env, tmp_path)
    assert halted.returncode == 1, halted.stderr[-2000:]  # --dev-fast ending HALTED fails the smoke test
    assert read_health(paper.health_path)["trading_state"] == "HALTED"
    assert (tmp_path / "logs" / "paper" / "perps_bot.log").exists()
    assert _files(live) == live_files
    assert asyncio.run(_namespace(live)) == live_before

    paper_view = _snapshot_state(_run([*CLI, "--account-snapshot", "--json", "--dry-run"], env, tmp_path))
    assert paper_view["trading_state"] == "HALTED"
    # (The paper broker's book is in memory, so a second paper run may also see RECONCILE_MISMATCH.)
    assert "DRAWDOWN" in [r["code"] for r in paper_view["reasons"]]

    preview = [*CLI, "--preview-order", "--order-symbol", "BTC-USD", "--order-side", "buy"]
    preview += ["--order-type", "market", "--order-quantity", "0.001"]
    refused = _run([*preview, "--dry-run"], env, tmp_path)
    assert refused.returncode == 2 and "HALTED" in refused.stdout + refused.stderr, refused.stderr[-2000:]
    approved = _run(preview, env, tmp_path)
    assert approved.returncode == 0, approved.stdout[-2000:] + approved.stderr[-2000:]

    started_live = _run([*CLI, "--dev-fast"], env, tmp_path)
    assert started_live.returncode == 0, started_live.stderr[-2000:]
    assert read_health(live.health_path)["trading_state"] == "ACTIVE"
    live_view = _snapshot_state(_run([*CLI, "--account-snapshot", "--json"], env, tmp_path))
    assert live_view["trading_state"] == "ACTIVE" and live_view["reasons"] == []
    assert not any(e["type"] == "guard_trip" for e in read_events(live.events_path))
    assert [e["bot_id"] for e in read_events(live.events_path) if e["type"] == "bot_started"] == [
        "perps-dev",
        "perps-dev",
    ]
