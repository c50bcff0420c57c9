"""The operator scripts as subprocesses against the dev profile, each run in its own temporary directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bot_v2.brokerages.simulated.auth import new_private_pem
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "scripts" / "perps_dashboard.py"
PREFLIGHT = ROOT / "scripts" / "production_preflight.py"
VERIFY = ROOT / "scripts" / "validation" / "verify_core.py"


def tool_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PERPS_", "COINBASE_", "RISK_", "REDIS_", "DATABASE_", "S3_", "AWS_"))
    }
    env.update(
        {
            "PERPS_DATA_DIR": str(tmp_path / "data"),
            "PERPS_LOG_DIR": str(tmp_path / "logs"),
            "SIM_TICK_SECONDS": "0.05",
            "COLUMNS": "200",
        }
    )
    env.update(extra)
    return env


def run(
    tmp_path: Path, *args: str | Path, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=tmp_path,
        env=tool_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_and_bad_arguments(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("NOT A LINE\n")
    # eight independent runs that each stop at their arguments: started together (CPU-bound Python start-ups)
    runs: dict[str, tuple[str | Path, ...]] = {
        **{f"{script.name} --help": (script, "--help") for script in (DASHBOARD, PREFLIGHT, VERIFY)},
        **{
            f"{script.name} bad profile": (script, "--profile", "nope")
            for script in (DASHBOARD, PREFLIGHT, VERIFY)
        },
        "refresh": (DASHBOARD, "--refresh", "0"),
        "config": (DASHBOARD, "--once", "--env-file", env_file),
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        done = dict(zip(runs, pool.map(lambda args: run(tmp_path, *args), runs.values()), strict=True))
    for script in (DASHBOARD, PREFLIGHT, VERIFY):
        shown = done[f"{script.name} --help"]
        assert shown.returncode == 0 and "examples:" in shown.stdout, shown.stderr
        bad = done[f"{script.name} bad profile"]
        assert bad.returncode == 2
        assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: "), bad.stderr
    refresh = done["refresh"]
    assert refresh.returncode == 2 and "--refresh" in refresh.stderr
    config = done["config"]
    assert config.returncode == 2 and "Traceback" not in config.stderr and config.stderr.startswith("error: ")


def test_dashboard_once_after_a_dev_fast_run(tmp_path: Path) -> None:
    bot = run(tmp_path, "-m", "bot_v2.cli", "--profile", "dev", "--dev-fast", timeout=90)
    assert bot.returncode == 0, bot.stderr
    frame = run(tmp_path, DASHBOARD, "--profile", "dev", "--once")
    assert frame.returncode == 0, frame.stderr
    out = frame.stdout
    assert "Trading state ACTIVE" in out
    assert "BTC-USD" in out and "ETH-USD" in out
    assert "bot_started" in out and "reconciliation" in out
    assert "hot memory / warm sqlite / cold directory" in out
    as_json = run(tmp_path, DASHBOARD, "--once", "--json")
    data = json.loads(as_json.stdout)
    assert data["safety"]["trading_state"] == "ACTIVE" and data["state"]["error"] is None


def test_dashboard_reads_while_the_bot_runs(tmp_path: Path) -> None:
    """SQLite WAL: the dashboard reads the running bot's state concurrently; the bot keeps cycling."""
    env = tool_env(tmp_path, PERPS_SYMBOLS="BTC-USD")
    bot = subprocess.Popen(
        [sys.executable, "-m", "bot_v2.cli", "--profile", "dev", "--interval", "0.2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    health = tmp_path / "data" / "health.json"
    try:
        eventually(lambda: health.exists() and json.loads(health.read_text())["last_cycle"] >= 2, timeout=30)
        frame = run(tmp_path, DASHBOARD, "--once", "--json", PERPS_SYMBOLS="BTC-USD")
        assert frame.returncode == 0, frame.stderr
        data = json.loads(frame.stdout)
        assert data["health"]["pid"] == bot.pid and data["health_age_seconds"] < 5
        assert data["safety"]["trading_state"] == "ACTIVE"
        seen = json.loads(health.read_text())["last_cycle"]
        eventually(lambda: json.loads(health.read_text())["last_cycle"] > seen + 2, timeout=15)
    finally:
        bot.send_signal(signal.SIGINT)
        try:
            bot.wait(timeout=20)
        except subprocess.TimeoutExpired:
            bot.kill()
            bot.wait()
        if bot.stderr is not None:
            bot.stderr.close()
    assert bot.returncode == 0


def test_preflight_passes_on_dev(tmp_path: Path) -> None:
    result = run(tmp_path, PREFLIGHT, "--profile", "dev", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    assert (
        checks["exchange"] == checks["clock skew"] == checks["state tiers"] == checks["coherence"] == "PASS"
    )
    table = run(tmp_path, PREFLIGHT, "--profile", "dev")
    assert table.returncode == 0 and "OK:" in table.stdout and "FAIL" not in table.stdout


def test_preflight_on_canary_without_credentials_fails(tmp_path: Path) -> None:
    result = run(tmp_path, PREFLIGHT, "--profile", "canary")
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "credentials" in line)
    assert "FAIL" in line and "COINBASE_API_KEY" in line
    assert "Traceback" not in result.stdout + result.stderr


def test_preflight_unreachable_services_fail_fast_with_secrets_masked(tmp_path: Path) -> None:
    pem = new_private_pem()
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"name": "organizations/o/apiKeys/k123456789ABCD", "privateKey": pem}))
    port = free_port()
    started = time.monotonic()
    result = run(
        tmp_path,
        PREFLIGHT,
        "--profile",
        "canary",
        "--json",
        "--timeout",
        "2",
        COINBASE_KEY_FILE=str(key_file),
        COINBASE_BASE_URL=f"127.0.0.1:{port}",
        REDIS_URL=f"redis://:redispassword1@127.0.0.1:{port}/0",
        DATABASE_URL=f"postgresql://u:pgpassword1@127.0.0.1:{port}/db",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        S3_BUCKET="b",
    )
    assert time.monotonic() - started < 20
    assert result.returncode == 1, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["exchange"]["status"] == "FAIL" and checks["state tiers"]["status"] == "FAIL"
    assert checks["clock skew"]["status"] == "SKIP"
    for secret in ("redispassword1", "pgpassword1", "BEGIN EC PRIVATE KEY"):
        assert secret not in result.stdout + result.stderr


def test_verify_core_all_passes(tmp_path: Path) -> None:
    result = run(tmp_path, VERIFY, "--check", "all", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert [c["name"] for c in data["checks"]] == ["config", "exchange", "state", "risk", "loop"]
    assert {c["status"] for c in data["checks"]} == {"PASS"}
    assert not (tmp_path / "data").exists()  # every check ran in its own temporary directory
