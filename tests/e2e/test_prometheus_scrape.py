"""Alerts that reach people, end to end: a running bot -> a real Prometheus -> a real Alertmanager -> a webhook.

The bot runs with the kill switch on (HALTED). Prometheus (the Debian package ``prometheus``) runs the shipped
deploy/prometheus/prometheus.yml and alerts.yml, with its intervals at 1 s, the bot's and Alertmanager's
addresses swapped in and ``PerpsBotHalted``'s ``for: 1m`` shortened to 0s. Alertmanager (``prometheus-alertmanager``)
runs the shipped deploy/alertmanager/alertmanager.yml with its webhook URLs pointed at this test and its group
waits at 0 s: the page must arrive at the on-call receiver and the desk channel. Then the same Prometheus answers
the series operators asked for (rate-limit headroom, quote age, the lease holder) and runs every expression of
the Grafana dashboard without an error. Both binaries are required in CI, skipped elsewhere when missing.
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
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is required in CI (scripts/bootstrap.sh installs {package})", pytrace=False)
        pytest.skip(f"{name} not installed (Debian package {package})")
    return path


def _query(prom_port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:  # a bad expression: HTTP 400, raised
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def webhook() -> Iterator[tuple[int, list[tuple[str, dict[str, Any]]]]]:
    """A receiver standing in for the pager and the chat relay: (port, [(path, Alertmanager payload)])."""
    received: list[tuple[str, dict[str, Any]]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), received
    finally:
        server.shutdown()
        server.server_close()


def _configs(tmp_path: Path, bot_port: int, am_port: int, hook_port: int) -> None:
    """The shipped configuration files with this test's addresses and short intervals."""
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    rules, count = re.subn(r"(alert: PerpsBotHalted\n\s+expr: [^\n]+\n\s+)for: 1m", r"\1for: 0s", rules)
    assert count == 1
    (tmp_path / "alerts.yml").write_text(rules)
    prom = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    for pattern, new in (
        (r"(scrape_interval|evaluation_interval): 15s", r"\1: 1s"),
        (r'"127\.0\.0\.1:9093"', f'"127.0.0.1:{am_port}"'),
        (r'"127\.0\.0\.1:9102"', f'"127.0.0.1:{bot_port}"'),
    ):
        prom, count = re.subn(pattern, new, prom)
        assert count >= 1, pattern
    (tmp_path / "prometheus.yml").write_text(prom)
    am = (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    for pattern, new in (
        (r'url: "http://[^/"]+/', f'url: "http://127.0.0.1:{hook_port}/'),
        (r"group_wait: \d+s", "group_wait: 0s"),
    ):
        am, count = re.subn(pattern, new, am)
        assert count >= 1, pattern
    (tmp_path / "alertmanager.yml").write_text(am)


def _start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_halted_bot_pages_through_prometheus_and_alertmanager(
    tmp_path: Path, webhook: tuple[int, list[tuple[str, dict[str, Any]]]]
) -> None:
    prometheus = _binary("prometheus", "prometheus")
    alertmanager = _binary("prometheus-alertmanager", "prometheus-alertmanager")
    hook_port, received = webhook
    bot_port, prom_port, am_port = _free_port(), _free_port(), _free_port()
    _configs(tmp_path, bot_port, am_port, hook_port)
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
    procs = [
        _start([sys.executable, "-m", "bot_v2.cli", "--profile", "dev", "--interval", "0.5"], tmp_path, env),
        _start(
            [
                alertmanager,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",  # no gossip port: one Alertmanager
            ],
            tmp_path,
        ),
        _start(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path,
        ),
    ]
    bot = procs[0]
    try:

        def paged() -> set[str]:
            paths = {
                path
                for path, payload in received
                if payload["status"] == "firing"
                and any(a["labels"]["alertname"] == "PerpsBotHalted" for a in payload["alerts"])
            }
            assert paths == {"/perps-bot/page", "/perps-bot/channel"}, received
            return paths

        eventually(paged, timeout=60, interval=0.5)
        page = next(p for path, p in received if path == "/perps-bot/page")
        [alert] = [a for a in page["alerts"] if a["labels"]["alertname"] == "PerpsBotHalted"]
        assert alert["labels"]["severity"] == "critical" and alert["labels"]["bot_id"] == "perps-dev"
        assert alert["annotations"]["summary"] == f"trading HALTED on 127.0.0.1:{bot_port}"
        assert bot.poll() is None  # HALTED, still running and scraped

        # the series operators asked for, as Prometheus stored them (>= 0 drops NaN: an answer was seen)
        [holder] = _query(prom_port, 'perps_bot_lease_holder{role="primary"}')
        assert holder["metric"]["bot_id"] == "perps-dev" and holder["value"][1] == "1"
        assert _query(prom_port, "perps_bot_rate_limit_headroom_ratio >= 0")
        assert _query(prom_port, "perps_bot_quote_age_seconds >= 0")
        dashboard = json.loads((DEPLOY / "grafana" / "perps-bot.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                _query(prom_port, target["expr"].replace("$bot_id", ".*"))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
