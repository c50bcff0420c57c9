"""Audit (issue 10, item 8): the config hash at start, the daily PnL export from stored fills."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot_v2.monitoring.health import read_health
from tests.e2e.test_cli_commands import run_cli

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _started(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "data" / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == "bot_started"]


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
