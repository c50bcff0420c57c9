"""Audit (issue 10, item 8): who acted and why, the config hash at start, the daily PnL export from stored fills."""

from __future__ import annotations

import csv
import getpass
import io
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot_v2.monitoring.health import read_health
from tests.e2e.test_cli_commands import run_cli

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
#: the actor a CLI command records: ``cli:<user>@<host>:<pid>``
ACTOR = rf"cli:{re.escape(getpass.getuser())}@{re.escape(socket.gethostname())}:\d+"


def events(tmp_path: Path, kind: str) -> list[dict[str, object]]:
    lines = (tmp_path / "data" / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == kind]


def _started(tmp_path: Path) -> list[dict[str, object]]:
    return events(tmp_path, "bot_started")


def test_controls_record_who_acted_and_why_in_events(tmp_path: Path) -> None:
    """--kill-switch / --reconcile --reason: the bot's control_applied event names user@host:pid and why."""
    assert run_cli(tmp_path, "--kill-switch", "on", "--reason", "SEV-1  drill").returncode == 0
    assert run_cli(tmp_path, "--dev-fast").returncode == 1  # HALTED by the kill switch
    [applied] = [e["control"] for e in events(tmp_path, "control_applied") if e.get("control")]
    assert isinstance(applied, dict) and applied["kill_switch"] is True
    assert re.fullmatch(ACTOR + r" \(SEV-1 drill\)", str(applied["source"])), applied

    assert run_cli(tmp_path, "--kill-switch", "off").returncode == 0
    assert run_cli(tmp_path, "--reconcile", "--reason", "after the outage").returncode == 0
    assert run_cli(tmp_path, "--dev-fast").returncode == 0
    applied = [e["control"] for e in events(tmp_path, "control_applied") if e.get("control")][-1]
    assert isinstance(applied, dict) and applied["kill_switch"] is False
    request = applied["reconcile_request"]
    assert isinstance(request, dict)
    assert re.fullmatch(ACTOR + r" \(after the outage\)", str(request["source"])), request


def test_step_down_records_who_asked_and_why_in_the_lease_row(tmp_path: Path) -> None:
    """--step-down --reason: the hand-over request in the lease row names user@host:pid and why (the holder's
    step_down event carries it: tests/e2e/test_ownership.py, tests/unit/orchestration/test_lease.py)."""
    import asyncio

    from bot_v2.config import load_settings
    from bot_v2.orchestration.wiring import open_state, reader_settings
    from bot_v2.state.models import LeaseClaim

    settings = reader_settings(load_settings("dev", _env(tmp_path), root=tmp_path))

    async def hold() -> None:  # a holder that stopped renewing but whose lease is still live for a minute
        async with open_state(settings) as state:
            assert (await state.acquire_lease(LeaseClaim("host:live", "h1", 1, "primary"), 60)).acquired

    async def asked() -> str | None:
        async with open_state(settings) as state:
            record = await state.read_lease()
            assert record is not None and record.handover_requested
            return record.handover_source

    asyncio.run(hold())
    done = run_cli(tmp_path, "--step-down", "--reason", "deploy  42")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(ACTOR + r" \(deploy 42\)", str(asyncio.run(asked())))


def test_config_hash_in_the_start_event_and_health(tmp_path: Path) -> None:
    order = [
        "--order-symbol",
        "BTC-USD",
        "--order-side",
        "buy",
        "--order-quantity",
        "0.001",
        "--order-type",
        "market",
    ]
    assert run_cli(tmp_path, "--place-order", *order, "--reason", "audit test").returncode == 0
    assert run_cli(tmp_path, "--dev-fast").returncode == 0
    first, second = _started(tmp_path)[-2:]
    assert second["config_hash"] == read_health(tmp_path / "data" / "health.json")["config_hash"]
    # the emergency run trades with the hold strategy and keeps its orders: another effective config
    assert first["config_hash"] != second["config_hash"]
    assert run_cli(tmp_path, "--dev-fast").returncode == 0
    assert _started(tmp_path)[-1]["config_hash"] == second["config_hash"]

    export = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_pnl.py"), "--format", "csv"],
        cwd=tmp_path,
        env={**_env(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert export.returncode == 0, export.stderr
    rows = list(csv.DictReader(io.StringIO(export.stdout)))
    assert len(rows) == 1 and rows[0]["symbol"] == "BTC-USD" and rows[0]["bought"] == "0.001"
    assert rows[0]["fills"] != "0" and rows[0]["position_end"] == "0.001"


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_", "REDIS_"))
    }
    env.pop("DATABASE_URL", None)
    return env | {"PERPS_DATA_DIR": str(tmp_path / "data"), "PERPS_LOG_DIR": str(tmp_path / "logs")}
