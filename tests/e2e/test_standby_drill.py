"""Smoke test of the standby takeover drill (scripts/benchmarks/standby_takeover_drill.py).

One round of every mode (kill, pause, step-down) and the cold-restart baseline, with a short interval: the drill
must exit 0, print its RESULT line and write its JSON. Timings are NOT asserted (benchmarks measure, tests do
not); only the invariants are: no duplicate, no zombie order, the zombie fenced, positions equal, coherent.
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

from tests.fixtures.services import find_postgres_bin

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DRILL = ROOT / "scripts" / "benchmarks" / "standby_takeover_drill.py"
SMALL = ["--rounds", "1", "--interval", "0.3", "--cycles-before", "2", "--cycles-after", "1"]


@pytest.fixture(scope="module", autouse=True)
def _services_available() -> None:
    if shutil.which("redis-server") is None or find_postgres_bin() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server / PostgreSQL needed by the drill", pytrace=False)
        pytest.skip("redis-server / PostgreSQL not installed")


@pytest.mark.timeout(240)
def test_standby_drill_runs_and_reports() -> None:
    json_path = ROOT / "var" / "benchmarks" / "standby_takeover.json"
    json_path.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "S3_ENDPOINT_URL")}
    proc = subprocess.run(
        [sys.executable, str(DRILL), *SMALL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    output = proc.stdout[-4000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT drill=standby_takeover rounds=1 takeover_ms="), output
    result = dict(re.findall(r"(\w+)=(\S+)", last))
    assert result["duplicates"] == "0" and result["zombie_orders"] == "0", result
    assert int(result["zombie_writes_rejected"]) >= 1  # at least the fence itself
    assert result["positions_equal"] == "true" and result["coherent"] == "true", result
    assert result["errors"] == "0"
    payload = json.loads(json_path.read_text())
    assert payload["drill"] == "standby_takeover"
    assert sorted(r["mode"] for r in payload["rounds"]) == ["cold", "kill", "pause", "step-down"]
    pause = next(r for r in payload["rounds"] if r["mode"] == "pause")
    assert pause["exit_codes"]["primary"] == 1 and pause["zombie_fenced"]


def test_standby_drill_help_has_examples() -> None:
    proc = subprocess.run(
        [sys.executable, str(DRILL), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert "standby_takeover_drill.py --rounds" in proc.stdout and "--mode" in proc.stdout


def test_standby_drill_rejects_an_unknown_mode() -> None:
    proc = subprocess.run(
        [sys.executable, str(DRILL), "--mode", "kill,reboot"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "unknown reboot" in proc.stderr
