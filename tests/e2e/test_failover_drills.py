"""Smoke test of the failover drills (scripts/benchmarks/*_failover_drill.py, engine_crash_drill.py).

Each drill runs as a subprocess with one round and tiny settings: it must exit 0, print its RESULT line and
write its JSON. Timings are NOT asserted here (benchmarks measure, tests do not); only the verdicts are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import DRILLS, DrillRun

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "benchmarks"


@pytest.mark.parametrize("name", list(DRILLS))
def test_drill_runs_and_reports(name: str, drill_run: Callable[[str], DrillRun]) -> None:
    run = drill_run(name)
    proc, result = run.proc, run.result
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert result.get("drill") == name and result.get("rounds") == "1", proc.stdout[-2000:]
    assert result["coherent"] == "true", result
    assert run.json_path.exists()
    payload = json.loads(run.json_path.read_text())
    assert payload["drill"] == name and len(payload["rounds"]) >= 1
    if name == "redis_failover_drill":
        assert result["errors"] == "0" and int(result["keys_moved"]) > 0
    if name == "postgres_failover_drill":
        assert result["retryable"] == "true"
        # with the WARM journal the cycles trade on in the outage mode (reduce-only orders)
        assert result["orders_while_down"] == "0" or result["journaled"] == "true"
        assert result["records_lost"] == "0"
    if name == "s3_failover_drill":
        assert int(result["cycles_down"]) > 0  # trading continues while S3 is down
        assert result["checkpoints_failed"] == "0" and result["checkpoint_failed_events"] == "0"
    if name == "engine_crash_drill":
        assert result["duplicates"] == "0" and result["fills_once"] == "true"
        assert result["positions_equal"] == "true"


def test_drill_refuses_a_tier_it_cannot_break() -> None:
    env = dict(os.environ, REDIS_URL="redis://127.0.0.1:1/0")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "redis_failover_drill.py"), "--rounds", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "REDIS_URL is set" in proc.stdout


def test_drills_have_help_with_examples() -> None:
    def show_help(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(BENCH / f"{name}.py"), "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    with ThreadPoolExecutor(len(DRILLS)) as pool:  # independent start-ups, together
        shown = dict(zip(DRILLS, pool.map(show_help, DRILLS), strict=True))
    for name, proc in shown.items():
        assert proc.returncode == 0 and "--rounds" in proc.stdout and f"{name}.py --rounds" in proc.stdout, (
            name
        )
