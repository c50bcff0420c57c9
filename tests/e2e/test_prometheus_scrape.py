"""A real Prometheus scrapes a running bot and evaluates deploy/prometheus/alerts.yml to a firing alert.

The bot runs with the kill switch on (HALTED); Prometheus (the Debian package's binary) scrapes it every
second with the project's rules, ``PerpsBotHalted``'s ``for: 1m`` shortened to 0s so the test takes seconds.
Then the same Prometheus answers the series operators asked for (rate-limit headroom, quote age, the lease
holder) and runs every expression of the Grafana dashboard without an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("prometheus is required in CI (scripts/bootstrap.sh installs it)", pytrace=False)
        pytest.skip("prometheus not installed")
    return path


def _query(prom_port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:  # a bad expression: HTTP 400, raised
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_the_bot_and_fires_halted(tmp_path: Path) -> None:
    prometheus = _prometheus()
    bot_port, prom_port = _free_port(), _free_port()
    rules = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    rules, count = re.subn(r"(alert: PerpsBotHalted\n\s+expr: [^\n]+\n\s+)for: 1m", r"\1for: 0s", rules)
    assert count == 1
    (tmp_path / "alerts.yml").write_text(rules)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        f"scrape_configs:\n  - job_name: perps-bot\n    static_configs: [{{targets: ['127.0.0.1:{bot_port}']}}]\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_", "REDIS_"))
    }
    env.pop("DATABASE_URL", None)
    env |= {
        "PERPS_DATA_DIR": str(tmp_path / "data"),
        "PERPS_LOG_DIR": str(tmp_path / "logs"),
        "METRICS_PORT": str(bot_port),
        "RISK_KILL_SWITCH_ENABLED": "1",
        "SIM_TICK_SECONDS": "0.05",
    }
    bot = subprocess.Popen(
        [sys.executable, "-m", "bot_v2.cli", "--profile", "dev", "--interval", "0.5"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def firing() -> dict[str, object]:
            url = f"http://127.0.0.1:{prom_port}/api/v1/alerts"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    alerts = json.loads(response.read())["data"]["alerts"]
            except OSError as exc:  # Prometheus still starting
                raise AssertionError(str(exc)) from exc
            found = [
                a for a in alerts if a["labels"]["alertname"] == "PerpsBotHalted" and a["state"] == "firing"
            ]
            assert found, alerts
            return dict(found[0])

        alert = eventually(firing, timeout=60, interval=0.5)
        assert alert["labels"]["severity"] == "critical"  # type: ignore[index]
        assert bot.poll() is None  # HALTED, still running and scraped

        # the series operators asked for, as Prometheus stored them (>= 0 drops NaN: an answer was seen)
        [holder] = _query(prom_port, 'perps_bot_lease_holder{role="primary"}')
        assert holder["metric"]["bot_id"] == "perps-dev" and holder["value"][1] == "1"
        assert _query(prom_port, "perps_bot_rate_limit_headroom_ratio >= 0")
        assert _query(prom_port, "perps_bot_quote_age_seconds >= 0")
        dashboard = json.loads((ROOT / "deploy" / "grafana" / "perps-bot.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                _query(prom_port, target["expr"].replace("$bot_id", ".*"))
    finally:
        for proc in (prom, bot):
            proc.send_signal(signal.SIGTERM)
        for proc in (prom, bot):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
