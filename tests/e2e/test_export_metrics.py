"""scripts/monitoring/export_metrics.py, the previous runbook's exporter command: it checks the bot's own
endpoint. A real HTTP endpoint serving a bot's registry (with its bot_id label) on an ephemeral port stands in
for the running bot; the script runs as the operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from bot_v2.monitoring.labels import bot_registry
from bot_v2.monitoring.metrics import BotMetrics
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e
SCRIPT = ROOT / "scripts" / "monitoring" / "export_metrics.py"


@pytest.fixture
def bot_endpoint() -> Iterator[tuple[int, BotMetrics]]:
    metrics = BotMetrics(CollectorRegistry())
    metrics.set_trading_state("REDUCE_ONLY")
    server, thread = start_http_server(
        0, addr="127.0.0.1", registry=bot_registry("perps-dev", metrics.registry)
    )
    try:
        yield int(server.server_address[1]), metrics
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _run(tmp_path: Path, port: int | str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    env |= {"METRICS_PORT": str(port), "PERPS_DATA_DIR": str(tmp_path), "PERPS_LOG_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--profile", "dev", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_answering_and_fresh_then_stale_then_gone(
    tmp_path: Path, bot_endpoint: tuple[int, BotMetrics]
) -> None:
    port, metrics = bot_endpoint
    metrics.last_cycle_timestamp.set(time.time() - 1)
    out = tmp_path / "perps.prom"
    proc = _run(tmp_path, port, "--metrics-file", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"http://127.0.0.1:{port}/metrics answering: bot perps-dev, REDUCE_ONLY, last cycle" in proc.stdout
    assert "-- fresh; wrote" in proc.stdout
    assert 'perps_bot_trading_state{bot_id="perps-dev"} 1.0' in out.read_text()  # the scrape, as served

    metrics.last_cycle_timestamp.set(time.time() - 120)  # dev interval 5 s: stale after 15 s
    proc = _run(tmp_path, port, "--json")
    assert proc.returncode == 1
    verdict = json.loads(proc.stdout)
    assert verdict["answering"] and not verdict["fresh"] and verdict["last_cycle_age_seconds"] >= 120
    assert "STALE" in verdict["message"]


def test_not_answering_names_the_bot_not_an_exporter(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    proc = _run(tmp_path, port)
    assert proc.returncode == 1
    assert "not answering" in proc.stdout and "there is no exporter process to restart" in proc.stdout


def test_metrics_off_or_bad_arguments_exit_2(tmp_path: Path) -> None:
    off = _run(tmp_path, 0)
    assert off.returncode == 2 and "metrics are off for bot 'perps-dev' (METRICS_PORT=0)" in off.stderr
    bad = _run(tmp_path, 9105, "--timeout", "-1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: argument --timeout")
