"""Smoke test of scripts/benchmarks/state_load.py: tiny parameters, as a subprocess.

It must exit 0 (no leak, no refused write), print its RESULT line and write its JSON with the ladder and the
soak's memory samples. Timings are NOT asserted (benchmarks measure, tests do not).
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
SCRIPT = ROOT / "scripts" / "benchmarks" / "state_load.py"
RESULT = re.compile(
    r"^RESULT bench=state_load batch=5 p99_bound_ms=\d+ held_batches_per_s=\d+ held_records_per_s=\d+ "
    r"floor_held_batches_per_s=\d+ ratio_vs_floor=\S+ soak_minutes=[\d.]+ soak_batches_per_s=\d+ "
    r"soak_p99_ms=[\d.]+ rss_growth_mb=-?[\d.]+ overhead_growth_mb=-?[\d.]+ traced_growth_mb=-?[\d.]+ "
    r"errors=0 leak=no load=[\d. ]+$",
    re.MULTILINE,
)


def test_state_load_bench_smoke(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or find_postgres_bin() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server / PostgreSQL needed by the benchmark", pytrace=False)
        pytest.skip("redis-server / PostgreSQL not installed")
    output = tmp_path / "state_load.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--minutes",
            "0.1",
            "--rates",
            "10,20",
            "--step-seconds",
            "1",
            "--batch",
            "5",
            "--keys",
            "50",
            "--p99-ms",
            "1000",
            "--warmup-seconds",
            "2",
            "--leak-mb",
            "50",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert RESULT.search(proc.stdout), proc.stdout[-2000:]
    result = json.loads(output.read_text())["results"][0]
    assert {s["path"] for s in result["ladder"]} == {"state_manager", "floor"}
    soak = result["soak"]
    assert soak["batches"] > 0 and soak["samples"] and soak["warm_rows_end"] == 50
