"""Smoke test of scripts/benchmarks/state_recovery_bench.py: tiny parameters, as a subprocess.

It must exit 0, print its RESULT line and write its JSON. Timings are NOT asserted (benchmarks measure,
tests do not).
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
SCRIPT = ROOT / "scripts" / "benchmarks" / "state_recovery_bench.py"
RESULT = re.compile(
    r"^RESULT keys=200 repair_ms=[\d.]+ repair_ratio=[\d.]+ repair_pass_ms=-?[\d.]+ repair_floor_ms=[\d.]+ "
    r"repair_vs_floor=-?[\d.]+ hot_restore_ms=[\d.]+ hot_recover_ms=[\d.]+ "
    r"hot_floor_ms=[\d.]+ hot_ratio=[\d.]+ hot_recover_ratio=[\d.]+ "
    r"cold_sync_ms_per_object=[\d.]+ cold_floor_ms_per_object=[\d.]+$",
    re.MULTILINE,
)
COLD_RESULT = re.compile(
    r"^RESULT bench=state_recovery_cold objects=5 sync_ms=[\d.]+ bytes=\d+ sync_ms_per_object=[\d.]+ "
    r"floor_ms_per_object=[\d.]+ ratio=[\d.]+ floor_default_ms_per_object=[\d.]+ "
    r"floor_concurrent_ms_per_object=[\d.]+ drain_ms_per_object=[\d.]+ cold_probe_interval_ms=\d+$",
    re.MULTILINE,
)


def test_state_recovery_bench_smoke(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or find_postgres_bin() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server / PostgreSQL needed by the benchmark", pytrace=False)
        pytest.skip("redis-server / PostgreSQL not installed")
    output = tmp_path / "state_recovery.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--keys",
            "200",
            "--objects",
            "5",
            "--repeat",
            "1",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert RESULT.search(proc.stdout), proc.stdout[-3000:]
    assert COLD_RESULT.search(proc.stdout), proc.stdout[-3000:]
    data = json.loads(output.read_text())
    assert {"meta", "repair", "hot", "cold"} <= data.keys()
    repair, hot, cold = data["repair"][0], data["hot"][0], data["cold"][0]
    assert repair["keys"] == 200 and repair["repaired"] == [repair["stale_keys"]] and repair["stale_keys"] > 0
    assert hot["moved"][0]["keys_restored"] == 200
    assert cold["objects_synced"] == [5] and cold["bytes_synced"][0] > 0
