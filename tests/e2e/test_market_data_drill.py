"""Smoke test of scripts/benchmarks/market_data_drill.py with tiny settings (about 20 s).

The drill runs the standalone simulator process and flips its feed switches over the control routes. It must
print its RESULT line and write its JSON; the verdicts that are not timings are asserted (no failed
cycle, the gap detected, fills booked from both sources). Timings are NOT asserted: the exit code is 1 when a
timing target is missed, which a loaded CI machine may do (benchmarks measure, tests do not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DRILL = ROOT / "scripts" / "benchmarks" / "market_data_drill.py"


def test_market_data_drill_runs_and_reports(tmp_path: Path) -> None:
    env = {**os.environ, "DRILL_OUT_DIR": str(tmp_path)}
    args = ["--interval", "0.5", "--quote-seconds", "2", "--fills", "1", "--down-seconds", "0.5"]
    proc = subprocess.run(
        [sys.executable, str(DRILL), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode in (0, 1) and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = dict(part.split("=", 1) for part in lines[-1].split()[1:])
    assert result["drill"] == "market_data"
    assert result["cycles_failed"] == "0" and result["gaps_detected"] == "1", lines[-1]
    assert result["fill_latency_ws_ms"] != "-" and result["fill_latency_rest_ms"] != "-", lines[-1]
    payload = json.loads((tmp_path / "market_data_drill.json").read_text())
    assert [f["kind"] for f in payload["faults"]] == ["drop", "stall", "gap"]
    assert payload["quote_age"]["ws"]["n"] > 0 and payload["quote_age"]["rest"]["n"] > 0
    # the exchange was the standalone process (not a thread of the drill), and it is gone
    simulator = payload["simulator"]
    assert simulator["mode"] == "standalone" and simulator["pid"] != simulator["drill_pid"], simulator
    with pytest.raises(ProcessLookupError):
        os.kill(simulator["pid"], 0)
    # its READY line's admin token went to the drill only: in no output or log
    for text in (proc.stdout, proc.stderr, *(p.read_text() for p in tmp_path.glob("market_data_drill*.log"))):
        assert "admin_token" not in text


def test_market_data_drill_refuses_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, str(DRILL), "--fills", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "--fills >= 1" in proc.stderr
