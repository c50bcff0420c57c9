"""deploy/: Prometheus rules (promtool), the Grafana dashboard, the systemd units.

promtool comes with the Debian package ``prometheus``, amtool with ``prometheus-alertmanager``
(scripts/bootstrap.sh installs both for the tests); ``systemd-analyze`` with systemd. promtool or amtool
missing in CI (CI=true) is a failure, elsewhere a skip; ``systemd-analyze`` is used where available (containers
often lack it), and the units are also checked statically.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bot_v2.config.strict import known_variables
from bot_v2.monitoring.metrics import BotMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = ["perps-bot@.service", "perps-bot-standby@.service"]
#: what the issue asks operators can see without reading logs
OPERATOR_SERIES = (
    "perps_bot_rate_limit_headroom_ratio",
    "perps_bot_quote_age_seconds",
    "perps_bot_lease_holder",
    "perps_bot_trading_state",
)
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


def test_prometheus_config_checks() -> None:
    promtool = _tool("promtool")
    proc = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "job_name: perps-bot" in (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    )  # PerpsBotDown's job


def test_alertmanager_config_checks_and_pages_criticals_to_people() -> None:
    """Critical alerts reach the on-call pager and the desk channel, warnings the channel only."""
    amtool = _tool("amtool")
    config = DEPLOY / "alertmanager" / "alertmanager.yml"
    check = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for labels, receivers in (
        (["severity=critical", "alertname=PerpsBotHalted"], "on-call-pager,desk-channel"),
        (["severity=warning", "alertname=PerpsBotReduceOnly"], "desk-channel"),
    ):
        route = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={config}", *labels],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert route.returncode == 0 and route.stdout.strip() == receivers, route.stdout + route.stderr
    severities = set(
        re.findall(r"labels: \{severity: (\w+)\}", (DEPLOY / "prometheus" / "alerts.yml").read_text())
    )
    assert severities == {"critical", "warning"}  # each routed above


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
        for expr in exprs:  # one dashboard, many bots: every series is filtered by the bot picker
            assert expr.count("perps_bot_") == expr.count('{bot_id=~"$bot_id"'), (panel["title"], expr)
    on_dashboard = {
        name for p in dashboard["panels"] for t in p["targets"] for name in _metric_names(t["expr"])
    }
    assert set(OPERATOR_SERIES) <= on_dashboard


def test_the_operator_series_have_alerts() -> None:
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    for name in ("perps_bot_rate_limit_headroom_ratio", "perps_bot_lease_holder", "perps_bot_trading_state"):
        assert f"expr: {name}" in text or f"({name})" in text, name


def _service_settings(text: str) -> dict[str, list[str]]:
    """The [Service] section's assignments (a key may repeat: Environment=)."""
    section, settings = "", dict[str, list[str]]()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture(scope="module")
def cli_help() -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "bot_v2.cli", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_unit_statically(unit: str, cli_help: str) -> None:
    """What ``systemd-analyze verify`` cannot know: the command is this project's console script with flags
    its CLI has, the variables are ones the bot reads, the writable directories are the ones it writes."""
    service = _service_settings((DEPLOY / "systemd" / unit).read_text())
    [exec_start] = service["ExecStart"]
    argv = shlex.split(exec_start)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] == "/opt/perps-bot/.venv/bin/perps-bot" and Path(argv[0]).name in scripts
    assert scripts["perps-bot"] == "bot_v2.cli:main"
    for flag in argv[1:]:
        assert re.search(rf"^\s+{re.escape(flag)}\b", cli_help, re.M), (
            f"{unit}: {flag} is not a perps-bot flag"
        )
    assert ("--standby" in argv) == ("standby" in unit)
    env = dict(pair.split("=", 1) for line in service["Environment"] for pair in shlex.split(line))
    known = known_variables() | {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
    assert set(env) <= known, sorted(set(env) - known)
    assert env["PERPS_PROFILE"] == "%i"  # instance = profile, unless the env file names one (bot-id instance)
    # ProtectSystem=strict: the bot may write only its StateDirectory / LogsDirectory, which the env points at
    assert env["PERPS_DATA_DIR"] == "/var/lib/" + service["StateDirectory"][0]
    assert env["PERPS_LOG_DIR"] == "/var/log/" + service["LogsDirectory"][0]
    assert service["WorkingDirectory"] == [env["PERPS_DATA_DIR"]]
    assert service["EnvironmentFile"] == ["/etc/perps-bot/%i.env"]
    assert service["Restart"] == ["on-failure"] and service["RestartPreventExitStatus"] == ["2"]
    assert service["KillSignal"] == ["SIGTERM"]
    for option in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectHome", "RestrictSUIDSGID"):
        assert service[option] == ["yes"], option
    assert service["ProtectSystem"] == ["strict"] and service["CapabilityBoundingSet"] == [""]
    assert service["User"] == ["perps-bot"]


def test_a_bot_id_instance_without_a_profile_exits_2_so_systemd_does_not_restart_it(tmp_path: Path) -> None:
    """RestartPreventExitStatus=2 relies on configuration errors exiting 2: an instance named after a bot id
    whose env file forgot PERPS_PROFILE must stop at once, not restart every 5 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    env |= {"PERPS_PROFILE": "desk1", "PERPS_DATA_DIR": str(tmp_path), "PERPS_LOG_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bot_v2.cli"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown profile 'desk1'" in proc.stderr


@pytest.mark.parametrize("unit", UNITS)
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
