"""Truthful health (issue 10, item 5): health.json, --dev-fast's exit code, task-group errors, the snapshot.

The CLI runs as a subprocess on the dev profile's in-process simulated exchange (the real SDK over TLS).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot_v2.monitoring.health import read_health
from tests.e2e.test_cli_commands import assert_one_line_error, run_cli, unreachable_exchange_env

pytestmark = pytest.mark.e2e


def test_dev_fast_ending_halted_exits_1_and_health_names_the_reason(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--dev-fast", env={"RISK_KILL_SWITCH_ENABLED": "1"})
    assert_one_line_error(result, 1, "the run ended HALTED (KILL_SWITCH)")
    health = read_health(tmp_path / "data" / "health.json")
    assert health["ok"] is False and health["trading_state"] == "HALTED"
    assert health["reasons"] == ["KILL_SWITCH"]


def test_operator_reduce_only_is_healthy(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--dev-fast", "--reduce-only")
    assert result.returncode == 0, result.stderr[-2000:]
    # reduce-only chosen by the operator is not a fault (no latch): health gives no reason against it
    assert read_health(tmp_path / "data" / "health.json")["reasons"] == []


def test_account_snapshot_with_the_exchange_down_is_one_clean_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--account-snapshot", env=unreachable_exchange_env())
    assert_one_line_error(result, 1, "ExchangeUnavailableError")
    assert "ExceptionGroup" not in result.stderr and "TaskGroup" not in result.stderr


def test_snapshot_shows_pnl_and_spot_holdings(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "--dev-fast").returncode == 0
    result = run_cli(tmp_path, "--account-snapshot", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert set(data["pnl"]) >= {"realized", "unrealized", "today", "fees"}
    assert data["pnl"]["today"] is not None
    holdings = {h["currency"]: h for h in data["spot_holdings"]}
    assert "BTC" in holdings and float(holdings["BTC"]["value_usd"]) > 0
    table = run_cli(tmp_path, "--account-snapshot")
    assert "PnL (USD): realized" in table.stdout and "Spot holdings" in table.stdout
