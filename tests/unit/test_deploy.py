"""deploy/: Prometheus rules (promtool), the Grafana dashboard, the systemd units.

promtool comes with the Debian package ``prometheus`` (scripts/bootstrap.sh installs it for the tests);
``systemd-analyze`` with systemd. promtool missing in CI (CI=true) is a failure, elsewhere a skip;
``systemd-analyze`` is used where available (containers often lack it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bot_v2.monitoring.metrics import BotMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _tool(name: str, required_in_ci: bool = True) -> str:
    path = shutil.which(name)
    if path is None:
        if required_in_ci and os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is required in CI (scripts/bootstrap.sh installs it)", pytrace=False)
        pytest.skip(f"{name} not installed")
    return path


def exported_series() -> set[str]:
    """Every series name the bot's registry exports (counters with _total, histograms with _bucket, ...)."""
    names = set()
    for family in BotMetrics(CollectorRegistry()).registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bperps_bot_[a-z0-9_]+", expr))


def test_alert_rules_check_and_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        proc = subprocess.run(
            [promtool, *args],
            cwd=DEPLOY / "prometheus",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rules_name_exported_metrics_and_the_runbook_thresholds() -> None:
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text()  # its syntax is promtool's to check
    rules = re.findall(r"- alert: (\w+)\n\s+expr: (.+)", text)
    exported = exported_series()
    assert len(rules) == text.count("- alert:")
    for alert, expr in rules:
        assert _metric_names(expr) <= exported, (alert, expr)
    alerts = {alert for alert, _ in rules}
    for name in ("DailyLoss", "ErrorRate", "PositionCount", "WebSocketDown"):  # the runbook's table
        assert {f"PerpsBot{name}Warning", f"PerpsBot{name}Critical"} <= alerts


def test_every_grafana_panel_names_an_exported_metric() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "perps-bot.json").read_text())
    exported = exported_series()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        names = set().union(*(_metric_names(e) for e in exprs))
        assert names, panel["title"]
        assert names <= exported, (panel["title"], sorted(names - exported))


@pytest.mark.parametrize("unit", ["perps-bot@.service", "perps-bot-standby@.service"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze", required_in_ci=False)  # "where available"
    text = (DEPLOY / "systemd" / unit).read_text()
    # verify needs an instance and an ExecStart that exists on this machine; nothing else is changed
    instance = tmp_path / unit.replace("@.", "@prod.")
    instance.write_text(
        text.replace("/opt/perps-bot/.venv/bin/perps-bot", str(Path(sys.executable).parent / "perps-bot"))
    )
    proc = subprocess.run(
        [analyze, "verify", f"./{instance.name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    for option in ("Restart=on-failure", "EnvironmentFile=", "NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert option in text
