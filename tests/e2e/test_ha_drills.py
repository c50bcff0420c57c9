"""Smoke test of the HA drills (redis_sentinel_drill, postgres_promotion_drill, multi_bot_drill).

Each runs as a subprocess with one round and tiny settings into a private output directory: it must exit 0,
print its RESULT line and write its JSON. Only the verdicts are asserted, never timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, require_drill_servers, run_drill_script

pytestmark = pytest.mark.e2e

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
    require_drill_servers()
    proc, result = run_drill_script(name, HA_DRILLS[name], tmp_path)
    assert proc.returncode == 0 and result, proc.stdout[-3000:] + proc.stderr[-3000:]
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


def test_the_promotion_drill_answers_to_the_name_issue_9_gave_it() -> None:
    """``postgres_promote_drill.py`` (the issue's name) is the promotion drill: same arguments and refusals."""
    script = ROOT / "scripts" / "benchmarks" / "postgres_promote_drill.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--modes", "neither"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "--modes a comma list of async / sync" in proc.stderr, proc.stderr
