"""Smoke test of the drills' ``--mode hang`` (SIGSTOP the server for the outage, SIGCONT to end it).

The Redis and PostgreSQL drills run as subprocesses with one round, a small hot set and few cycles: each must
exit 0 with its RESULT line saying ``mode=hang``, the outage detected and the state coherent. Timings are NOT
asserted (benchmarks measure, tests do not); the bounds themselves are tested against a stopped server in
tests/integration/state/test_hung_servers.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import require_drill_servers, run_drill_script

pytestmark = pytest.mark.e2e
SMALL = ["--rounds", "1", "--mode", "hang", "--keys", "200", "--baseline-cycles", "3", "--down-cycles", "3"]


def run_drill(name: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    require_drill_servers()
    return run_drill_script(name, SMALL, tmp_path)


@pytest.mark.parametrize("name", ["redis_failover_drill", "postgres_failover_drill"])
def test_hang_mode_detects_rides_out_and_recovers(name: str, tmp_path: Path) -> None:
    proc, result = run_drill(name, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert result["mode"] == "hang" and result["keys"] == "200", result
    assert result["coherent"] == "true" and result["detect_ms"] != "na", result
    assert result["max_cycle_ms"] != "na", result
    if name == "redis_failover_drill":
        assert result["errors"] == "0" and int(float(result["keys_moved"])) > 0
    else:
        assert result["records_lost"] == "0" and result["retryable"] == "true"
