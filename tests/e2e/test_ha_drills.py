"""Smoke test of the HA drills (redis_sentinel_drill, postgres_promotion_drill, multi_bot_drill).

Each runs as a subprocess with one round and tiny settings into a private output directory: it must exit 0,
print its RESULT line and write its JSON. Only the verdicts are asserted, never timings.
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
BENCH = ROOT / "scripts" / "benchmarks"

HA_DRILLS: dict[str, list[str]] = {  # one round, tiny sizes; the promotion drill in sync mode only (~15 s)
    "redis_sentinel_drill": ["--rounds", "1", "--keys", "100", "--missed", "10", "--baseline-cycles", "2"],
    "postgres_promotion_drill": [
        "--rounds",
        "1",
        "--modes",
        "sync",
        "--keys",
        "20",
        "--baseline-cycles",
        "2",
        "--lag-ms",
        "200",
    ],
    "multi_bot_drill": [
        "--bots",
        "2",
        "--rounds",
        "1",
        "--keys",
        "50",
        "--baseline-cycles",
        "2",
        "--down-cycles",
        "2",
    ],
}


@pytest.mark.parametrize("name", list(HA_DRILLS))
def test_ha_drill_runs_and_meets_its_targets(name: str, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or find_postgres_bin() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server / PostgreSQL needed by the drills", pytrace=False)
        pytest.skip("redis-server / PostgreSQL not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "S3_ENDPOINT_URL")}
    env["DRILL_OUT_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *HA_DRILLS[name]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = dict(re.findall(r"(\w+)=(\S+)", lines[-1]))
    assert result["drill"] == name and result["ok"] == "true", result
    payload = json.loads((tmp_path / f"{name}.json").read_text())
    assert payload["drill"] == name and payload["rounds"]
    if name == "redis_sentinel_drill":
        assert (
            result["stale_served"] == "0" and result["records_lost"] == "0" and result["coherent"] == "true"
        )
        assert int(result["keys_repaired"]) >= 10  # the promoted replica really held older copies
    if name == "postgres_promotion_drill":
        assert result["sync_writes_lost"] == "0"
    if name == "multi_bot_drill":
        assert result["foreign"] == "0" and result["stray"] == "0" and result["coherent"] == "true"
