"""E2E fixtures: settings aimed at a simulator, and a standalone simulator process that outlives the bot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.brokerages.simulated import StandaloneSimulator as RemoteStandaloneSimulator
from bot_v2.config import BotSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]

# Guards that would trip on the simulator's seeded walk or on forced price moves are switched off.
QUIET_RISK_ENV = {
    "RISK_VOLATILITY_WARN_PCT": "none",
    "RISK_VOLATILITY_REDUCE_ONLY_PCT": "none",
    "RISK_VOLATILITY_HALT_PCT": "none",
    "RISK_MAX_SLIPPAGE_BPS": "none",
    "RISK_ERROR_RATE_REDUCE_ONLY_PCT": "none",
    "RISK_ERROR_RATE_HALT_PCT": "none",
    "RISK_MAX_DRAWDOWN_PCT": "none",
}

#: perps-bot arguments of the operator's preview of a 0.001 BTC-USD market BUY.
PREVIEW_MARKET_BUY = (
    "--preview-order",
    "--order-symbol",
    "BTC-USD",
    "--order-side",
    "buy",
    "--order-type",
    "market",
    "--order-quantity",
    "0.001",
)


def sim_env(base_url: str, key_file: Path, ca_file: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a dev-profile bot talking to an external simulator."""
    env = {
        "COINBASE_BASE_URL": base_url,
        "COINBASE_KEY_FILE": str(key_file),
        "COINBASE_CA_FILE": str(ca_file),
        "PERPS_DATA_DIR": str(data_dir),
        "PERPS_SYMBOLS": "BTC-USD",
        "PERPS_INTERVAL_SECONDS": "0.1",
        "METRICS_PORT": "0",  # no fixed port (tests/conftest.py); a test that scrapes passes its own
        **QUIET_RISK_ENV,
    }
    env.update(extra)
    return env


@pytest.fixture
def sim_settings(fresh_simulator: RunningSimulator, tmp_path: Path) -> Callable[..., BotSettings]:
    """Build dev-profile settings that point at ``fresh_simulator`` (extra env overrides)."""

    def build(**extra: str) -> BotSettings:
        env = sim_env(
            fresh_simulator.base_url,
            fresh_simulator.key_file,
            fresh_simulator.ca_path,
            tmp_path / "data",
            **extra,
        )
        return load_settings("dev", env, root=tmp_path)

    return build


class StandaloneSimulator(RemoteStandaloneSimulator):
    """The standalone simulator of ``standalone_simulator`` (``ca_file``: its CA, as the bot's settings name it)."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, "--rate-limit", "0", "--tick-seconds", "0.25")
        self.ca_file = self.ca_path

    def sdk_client(self) -> Any:
        from coinbase.rest import RESTClient

        client = RESTClient(base_url=self.base_url, key_file=str(self.key_file), timeout=5)
        client.session.trust_env = False
        client.session.verify = str(self.ca_file)
        return client


@pytest.fixture
def standalone_simulator(tmp_path: Path) -> Iterator[StandaloneSimulator]:
    """``python -m bot_v2.brokerages.simulated`` as its own process (it outlives bot crashes)."""
    with StandaloneSimulator(tmp_path / "sim") as sim:
        yield sim


def run_driver(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run tests/e2e/bot_driver.py with ``env`` on top of the current environment (minus crash hooks)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "e2e" / "bot_driver.py"), *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- failover drills, run once per session (test_failover_drills and the runbook walk share them) ------------

#: One round, tiny settings: a smoke run of each drill (~15 s each).
DRILLS: dict[str, list[str]] = {
    "redis_failover_drill": ["--baseline-cycles", "5", "--down-cycles", "5"],
    "postgres_failover_drill": ["--baseline-cycles", "5", "--down-cycles", "3"],
    "s3_failover_drill": [
        "--baseline-cycles",
        "5",
        "--ops",
        "1",
        "--down-seconds",
        "0.5",
        "--sync-timeout",
        "0",
        "--moto",
        "thread",  # the smoke run keeps moto in the drill's process: no server start-up per round
    ],
    "engine_crash_drill": ["--fast", "--cycles-after", "3", "--cycles-before", "3"],
}


def require_drill_servers() -> None:
    """Skip (fail on CI) unless redis-server and PostgreSQL are installed: the drills start their own."""
    import shutil

    from tests.fixtures.services import find_postgres_bin

    if shutil.which("redis-server") is None or find_postgres_bin() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server / PostgreSQL needed by the drills", pytrace=False)
        pytest.skip("redis-server / PostgreSQL not installed")


def run_drill_script(
    name: str, args: list[str], out: Path, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run ``scripts/benchmarks/<name>.py args`` on its own servers (no REDIS_URL & co.), writing into ``out``;
    return the process and the fields of its last RESULT line (empty without one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "S3_ENDPOINT_URL")}
    env["DRILL_OUT_DIR"] = str(out)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmarks" / f"{name}.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return proc, dict(re.findall(r"(\w+)=(\S+)", lines[-1])) if lines else {}


@dataclass(frozen=True)
class DrillRun:
    """One drill subprocess: its result, RESULT-line fields, JSON path and the bot log it wrote."""

    proc: subprocess.CompletedProcess[str]
    result: dict[str, str]
    json_path: Path
    log_text: str


@pytest.fixture(scope="session")
def drill_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], DrillRun]:
    """Run a drill (``--rounds 1`` + ``DRILLS[name]``) into a private output dir, once per session."""
    require_drill_servers()
    out = tmp_path_factory.mktemp("drills")
    runs: dict[str, DrillRun] = {}

    def run(name: str) -> DrillRun:
        if name not in runs:
            proc, fields = run_drill_script(name, ["--rounds", "1", *DRILLS[name]], out, timeout=90)
            logs = sorted(out.glob(f"{name}*.log"))
            text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in logs)
            runs[name] = DrillRun(proc, fields, out / f"{name}.json", text)
        return runs[name]

    return run
