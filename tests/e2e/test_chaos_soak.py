"""CI run of the chaos soak (scripts/benchmarks/chaos_soak.py): a fixed seed, one minute of faults.

With ``--seed 76`` (the default deck: all 14 kinds) the first four faults break each process kind once
(bot_kill, postgres_stop, s3_kill, redis_kill), then come damaged answers, WebSocket closes, a lost ack,
postgres_kill, ...; a fault every 5 s gives about nine in the minute, the whole run about 1.5-2 minutes on two
cores. Timings are NOT asserted (benchmarks measure, tests do not); the invariants are: no duplicate, nothing
lost, coherent, no guard violation, every fault settled, the RESULT line and the JSON written. The 30-minute
soak is in docs/BENCHMARKS.md "Chaos soak".

``--ha`` (the stores as Redis master + replica + 3 Sentinels and PostgreSQL primary + synchronous replica):
``--seed 14`` with the two HA kinds and two of the others deals postgres_promote, postgres_kill (of the promoted
primary), redis_stop, redis_failover, redis_failover (the second needs the replica the first brought back),
postgres_promote (needs the rebuilt replica), ...: about twelve faults in the minute, ~80 s in all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures.services import find_postgres_bin

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "scripts" / "benchmarks" / "chaos_soak.py"
CI_RUN = ["--minutes", "1", "--fault-every", "5", "--seed", "76"]
HA_RUN = ["--ha", "--minutes", "1", "--fault-every", "5", "--seed", "14"]
HA_RUN += ["--kinds", "redis_failover,postgres_promote,redis_stop,postgres_kill"]
PROCESS_KINDS = {"redis", "postgres", "s3", "bot"}
RESULT_ZEROS = (
    r"RESULT minutes=1 faults=\d+ restarts=\d+ orders=\d+ fills=\d+ duplicates=0 lost=0 incoherent=0 "
    r"guard_violations=0 checkpoints_failed=0"
)
SERVER_URLS = ("REDIS_URL", "DATABASE_URL", "S3_ENDPOINT_URL")


def moto_server_importable() -> bool:
    try:
        import moto.server  # noqa: F401  (the S3 server the soak runs as a process: moto[server])
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module", autouse=True)
def _services_available() -> None:
    missing = [
        name
        for name, found in (
            ("redis-server", shutil.which("redis-server") is not None),
            ("PostgreSQL", find_postgres_bin() is not None),
            ("moto[server]", moto_server_importable()),
        )
        if not found
    ]
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{', '.join(missing)} needed by the chaos soak", pytrace=False)
        pytest.skip(f"{', '.join(missing)} not installed")


def run_soak(
    *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SERVER_URLS}
    return subprocess.run(
        [sys.executable, str(SOAK), *args],
        cwd=ROOT,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(420)
def test_chaos_soak_keeps_every_invariant() -> None:
    json_path = ROOT / "var" / "benchmarks" / "chaos.json"
    json_path.unlink(missing_ok=True)
    proc = run_soak(*CI_RUN, timeout=400)
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(RESULT_ZEROS, last), output
    result = dict(re.findall(r"(\w+)=(\S+)", last))
    assert int(result["orders"]) > 0 and int(result["fills"]) > 0
    payload = json.loads(json_path.read_text())
    assert payload["drill"] == "chaos"
    faults = payload["faults"]
    targets = {f["kind"].split("_")[0] for f in faults}
    assert targets >= PROCESS_KINDS, f"process kinds broken: {sorted(targets)}"
    assert all(f["settled"] for f in faults), [f for f in faults if not f["settled"]]
    assert payload["errors"] == []
    assert payload["totals"]["restarts"] >= 1  # the killed / fenced holder was replaced by a new standby
    assert all(len(f["check"]) and f["check"]["error"] is None for f in faults)


@pytest.mark.timeout(420)
def test_chaos_soak_ha_keeps_every_invariant_through_promotions(tmp_path: Path) -> None:
    """--ha: Sentinel failovers and PostgreSQL promotions, each repeated on the topology the previous one left
    (the old node back as a replica), and the kill / stop kinds aimed at whichever server is master / primary
    then; the same zeros."""
    proc = run_soak(*HA_RUN, timeout=400, env={"DRILL_OUT_DIR": str(tmp_path)})
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(RESULT_ZEROS, last), output
    result = dict(re.findall(r"(\w+)=(\S+)", last))
    assert int(result["orders"]) > 0 and int(result["fills"]) > 0
    payload = json.loads((tmp_path / "chaos_ha.json").read_text())
    assert payload["settings"]["ha"] is True and payload["errors"] == []
    faults = payload["faults"]
    assert all(f["settled"] for f in faults), [f for f in faults if not f["settled"]]
    assert all(len(f["check"]) and f["check"]["error"] is None for f in faults)
    kinds = Counter(f["kind"] for f in faults)
    assert kinds["redis_failover"] >= 2 and kinds["postgres_promote"] >= 2, kinds
    primary: int | None = None  # the PostgreSQL primary after the last promotion
    master: int | None = None  # the Redis master after the last failover (unknown after a kill / stop)
    for fault in faults:
        p = fault["params"]
        if fault["kind"] == "postgres_promote":
            assert p["replica"] == "sync", fault  # the zero-loss premise: a caught-up synchronous standby
            assert p["new_primary"] != p["old_primary"] and p["old_primary"] == (primary or p["old_primary"])
            primary = p["new_primary"]
        elif fault["kind"] == "redis_failover":
            assert p["new_master"] != p["old_master"] and p["old_master"] == (master or p["old_master"])
            master = p["new_master"]
        elif fault["kind"].startswith("postgres_"):
            assert p["node"] == (primary or p["node"]), fault  # the primary of now, not the first one
        else:
            assert p["node"] == (master or p["node"]), fault
            master = None  # a stop of the master may end in a failover


def test_chaos_soak_help_has_examples() -> None:
    proc = run_soak("--help", timeout=60)
    assert proc.returncode == 0
    assert "chaos_soak.py --minutes 30 --fault-every 20 --seed" in proc.stdout
    assert "--kinds" in proc.stdout and "guard_violations" in proc.stdout


def test_chaos_soak_rejects_an_unknown_kind() -> None:
    proc = run_soak("--kinds", "redis_kill,disk_full", timeout=60)
    assert proc.returncode == 2 and "unknown disk_full" in proc.stderr


def test_chaos_soak_ha_kinds_need_ha() -> None:
    proc = run_soak("--kinds", "redis_kill,postgres_promote", timeout=60)
    assert proc.returncode == 2 and "postgres_promote need --ha" in proc.stderr


def test_chaos_soak_refuses_a_server_it_does_not_own() -> None:
    proc = run_soak("--minutes", "1", env={"REDIS_URL": "redis://127.0.0.1:1/0"}, timeout=60)
    assert proc.returncode == 2 and "REDIS_URL is set" in proc.stdout
