"""Secrets gate: run the bot, a Redis failover, the operator tools and a drill with recognisable fake secrets,
then search EVERYTHING they wrote for those secrets in the clear.

The secrets: the CDP key name and its private key (the simulator trusts that key), the Redis password (in
REDIS_URL and REDIS_PASSWORD), REDIS_SENTINEL_PASSWORD, the PostgreSQL password in DATABASE_URL (the throwaway
cluster trusts local connections, so any password is accepted), and the S3 access and secret keys (moto
accepts any). The drill (s3_failover_drill.py, one round, its own S3) gets the Redis and PostgreSQL URLs with
their passwords. Searched: every command's stdout and stderr (including one-line errors from unreachable
tiers), perps_bot.log, events.jsonl, health.json, every file under the data and log directories (the COLD
spool, checkpoints), the drill's JSON and log, every S3 object, every Redis value, every PostgreSQL state row,
the Prometheus scrape and the dashboard frame. Masked form (``****ABCD``, the last four characters) is
allowed; anything longer is a leak. One bot, short runs, one drill round (beside the operator tools): ~15-20 s
on a quiet machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
import redis
import requests

from bot_v2.brokerages.simulated import RunningSimulator, run_simulator_in_thread
from bot_v2.brokerages.simulated.auth import new_private_pem
from tests.e2e.conftest import DRILLS, PREVIEW_MARKET_BUY, sim_env
from tests.fixtures.services import S3_TEST_BUCKET, RedisServer, ServiceError, free_port, unavailable
from tests.fixtures.simulator import simulator_config

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

KEY_NAME = "organizations/sg-org-5f1e/apiKeys/SGKEYNAME-9d41c7e2b5"
REDIS_PW = "SGredisPW-7c1e55aa90"
SENTINEL_PW = "SGsentinelPW-55e0a1c3"
PG_PW = "SGpgPW-41d9be03f7"
S3_ACCESS = "AKIASGACCESS3F9E21"
S3_SECRET = "SGs3SECRET-b8e2d6f1a4c09e77"


def _leaks(secret: str) -> list[str]:
    """Needles that betray ``secret``: itself and its unmasked part (all but the last four characters)."""
    return [secret, secret[:-4]]


@pytest.fixture
def private_key() -> str:
    return new_private_pem()


@pytest.fixture
def sim(tmp_path: Path, private_key: str) -> Iterator[RunningSimulator]:
    """The simulator, trusting a key with a recognisable name (the key file is read, not generated)."""
    state_dir = tmp_path / "sim"
    state_dir.mkdir()
    key_file = state_dir / "key.json"
    key_file.write_text(json.dumps({"name": KEY_NAME, "privateKey": private_key}))
    key_file.chmod(0o600)
    running = run_simulator_in_thread(simulator_config(state_dir))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    """A redis-server of its own that requires ``REDIS_PW`` (SIGSTOPped by the test: not the shared one)."""
    try:
        server = RedisServer()
        server.start()
    except ServiceError as exc:
        unavailable("redis-server", exc)
    redis.Redis(port=server.port).config_set("requirepass", REDIS_PW)
    try:
        yield server
    finally:
        server.stop()


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user = rest.split("@", 1)[0] if "@" in rest else "postgres"
    host = rest.split("@", 1)[1] if "@" in rest else rest
    return f"{scheme}://{user.split(':')[0]}:{password}@{host}"


def _run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_", "AWS_"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_no_secret_appears_unmasked(
    tmp_path: Path,
    sim: RunningSimulator,
    private_key: str,
    locked_redis: RedisServer,
    postgres_server: Any,
    s3_server: Any,
) -> None:
    if postgres_server.external or s3_server.external:
        pytest.skip("the gate plants its own passwords: needs the throwaway PostgreSQL and moto")
    data_dir, log_dir, metrics_port = tmp_path / "data", tmp_path / "logs", free_port()
    redis_url = f"redis://:{REDIS_PW}@127.0.0.1:{locked_redis.port}/0"
    env = sim_env(
        sim.base_url,
        sim.key_file,
        sim.ca_path,
        data_dir,
        PERPS_LOG_DIR=str(log_dir),
        PERPS_BOT_ID="secretgate",
        PERPS_INTERVAL_SECONDS="0.2",
        METRICS_PORT=str(metrics_port),
        REDIS_URL=redis_url,
        REDIS_PASSWORD=REDIS_PW,
        REDIS_SENTINEL_PASSWORD=SENTINEL_PW,
        DATABASE_URL=_with_password(postgres_server.url, PG_PW),
        S3_ENDPOINT_URL=s3_server.url,
        S3_BUCKET=S3_TEST_BUCKET,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID=S3_ACCESS,
        AWS_SECRET_ACCESS_KEY=S3_SECRET,
        STATE_HOT_COMMAND_TIMEOUT_SECONDS="0.3",
    )
    outputs: dict[str, str] = {}
    cli = ["-c", "from bot_v2.cli import main; main()", "--profile", "dev"]

    # 1. the bot trades a few cycles; Redis is frozen under it (a failover of HOT) and comes back; the scrape
    #    and the dashboard read it while it runs
    bot = subprocess.Popen(
        [sys.executable, *cli, "--log-level", "DEBUG"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))},
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metrics = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _cycles(metrics) < 3:
            time.sleep(0.3)
            try:
                metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
            except requests.ConnectionError:
                assert bot.poll() is None, bot.communicate()[1][-3000:]
        outputs["metrics"] = metrics
        locked_redis.send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        locked_redis.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        assert bot.poll() is None, "the bot died in the Redis outage: " + bot.communicate()[1][-3000:]
        outputs["metrics after failover"] = requests.get(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=5
        ).text
        dash = _run(
            env, "scripts/perps_dashboard.py", "--profile", "dev", "--once", "--env-file", "/dev/null"
        )
        outputs["dashboard"] = dash.stdout + dash.stderr
        scrape = _run(
            env,
            "scripts/monitoring/export_metrics.py",
            "--profile",
            "dev",
            "--env-file",
            "/dev/null",
            "--metrics-file",
            str(tmp_path / "scrape.prom"),
        )
        outputs["export_metrics"] = scrape.stdout + scrape.stderr
    finally:
        bot.send_signal(signal.SIGTERM)
        out, err = bot.communicate(timeout=60)
        outputs["bot"] = out + err
    assert metrics, outputs["bot"][-3000:]

    # 3. a drill on the same Redis and PostgreSQL (given by URL, passwords included): the S3 failover drill,
    #    one round on its own S3 endpoint and bot id; its output, JSON and log are searched with the rest. It
    #    runs while the operator tools of step 2 and the dead-tier command of step 4 run (nothing of theirs is
    #    shared: its own bot id, its own S3), which saves its ~5 s of wall time
    drill_out = tmp_path / "drill"
    drill_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PERPS_", "COINBASE_", "RISK_", "AWS_", "REDIS_", "DATABASE_", "S3_"))
    }
    drill_env |= {
        "REDIS_URL": redis_url,
        "DATABASE_URL": env["DATABASE_URL"],
        "DRILL_OUT_DIR": str(drill_out),
    }
    with ThreadPoolExecutor(1) as drill_pool:  # on a failure below, the drill is waited for, not left behind
        drill_future = drill_pool.submit(
            subprocess.run,
            [
                sys.executable,
                "scripts/benchmarks/s3_failover_drill.py",
                "--rounds",
                "1",
                *DRILLS["s3_failover_drill"],
            ],
            cwd=ROOT,
            env=drill_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        # 2. the operator tools against the same stores and exchange
        for name, args in {
            "checkpoint": [*cli, "--checkpoint"],
            "list-checkpoints": [*cli, "--list-checkpoints", "--json"],
            "account-snapshot": [*cli, "--account-snapshot"],
            "preview-order": [*cli, *PREVIEW_MARKET_BUY],
            "preflight": ["scripts/production_preflight.py", "--profile", "dev", "--env-file", "/dev/null"],
            "dev-fast": [*cli, "--dev-fast"],
        }.items():
            proc = _run(env, *args)
            outputs[name] = proc.stdout + proc.stderr
            # preflight may FAIL a check on this machine (disk, clock): it must still run to its table
            assert proc.returncode == 0 or (name == "preflight" and proc.returncode == 1), (
                name,
                outputs[name][-2000:],
            )

        # 4. exception messages: every tier unreachable, the URLs still carry their passwords
        dead = {
            **env,
            "REDIS_URL": f"redis://:{REDIS_PW}@127.0.0.1:{free_port()}/0",
            "DATABASE_URL": f"postgresql://bot:{PG_PW}@127.0.0.1:{free_port()}/db",
        }
        proc = _run(dead, *cli, "--account-snapshot", timeout=90)
        outputs["dead tiers"] = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "error:" in proc.stderr, outputs["dead tiers"][-2000:]

        drill = drill_future.result()  # its own timeout (120 s) bounds it
    outputs["s3 failover drill"] = drill.stdout + drill.stderr
    assert drill.returncode == 0, outputs["s3 failover drill"][-3000:]
    drill_log = "".join(path.read_text(errors="replace") for path in drill_out.glob("*.log"))
    assert any(drill_out.glob("*.json")), sorted(drill_out.iterdir())
    # the drill's bot was given the secrets: its log names both stores, masked
    assert f"****{REDIS_PW[-4:]}@" in drill_log and f"****{PG_PW[-4:]}@" in drill_log, drill_log[-2000:]

    # 5. everything the runs left behind
    stored: dict[str, bytes] = {}
    for path in [*data_dir.rglob("*"), *log_dir.rglob("*"), *drill_out.rglob("*"), tmp_path / "scrape.prom"]:
        if path.is_file():
            stored[str(path)] = path.read_bytes()
    client = redis.Redis(port=locked_redis.port, password=REDIS_PW)
    for name in client.scan_iter(count=1000):
        value = client.dump(name) or b""
        stored[f"redis {name!r}"] = value
    stored.update(asyncio.run(_database_text(postgres_server.url)))
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.url,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS,
        aws_secret_access_key=S3_SECRET,
    )
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=S3_TEST_BUCKET):
        for obj in page.get("Contents", []):
            stored[f"s3 {obj['Key']}"] = s3.get_object(Bucket=S3_TEST_BUCKET, Key=obj["Key"])["Body"].read()
    assert any("checkpoint" in name for name in stored), sorted(stored)[:50]  # the checkpoint tiers were read
    for tier in ("redis ", "postgres state_records", "s3 "):  # every tier's bytes were searched
        assert any(name.startswith(tier) and data for name, data in stored.items()), tier
    assert any(name.endswith("health.json") for name in stored) and any("events" in name for name in stored)

    pem_lines = [line for line in private_key.splitlines() if line and not line.startswith("-----")]
    needles = {
        "API key name": _leaks(KEY_NAME),
        "private key": [line[:40] for line in pem_lines],
        "Redis password": _leaks(REDIS_PW),
        "Redis sentinel password": _leaks(SENTINEL_PW),
        "PostgreSQL password": _leaks(PG_PW),
        "S3 access key": _leaks(S3_ACCESS),
        "S3 secret key": _leaks(S3_SECRET),
    }
    found = []
    for what, variants in needles.items():
        for needle in variants:
            for where, text in outputs.items():
                if needle in text:
                    found.append(f"{what} in the output of {where}: ...{_around(text, needle)}...")
            for where, data in stored.items():
                if needle.encode() in data:
                    found.append(
                        f"{what} in {where}: ...{_around(data.decode('utf-8', 'replace'), needle)}..."
                    )
    assert not found, "\n".join(found[:20])
    assert "****" in outputs["dead tiers"] + outputs["bot"], "the masked form is what the messages show"


def _cycles(scrape: str) -> float:
    """perps_bot_cycles_total summed over its label sets (0 before the first cycle)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in scrape.splitlines()
        if line.startswith("perps_bot_cycles_total") and not line.startswith("#")
    )


def _around(text: str, needle: str) -> str:
    at = text.find(needle)
    return text[max(0, at - 80) : at + len(needle) + 40].replace("\n", " ")


async def _database_text(url: str) -> dict[str, bytes]:
    """Every row of every table in the public schema, as text."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        out: dict[str, bytes] = {}
        for row in tables:
            name = row["table_name"]
            rows = await conn.fetch(f'SELECT t::text AS r FROM "{name}" t')  # names from the catalog
            out[f"postgres {name}"] = "\n".join(r["r"] for r in rows).encode()
            values = await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = $1 AND data_type = 'bytea'",
                name,
            )
            for column in values:
                blobs = await conn.fetch(f'SELECT "{column["column_name"]}" AS b FROM "{name}"')
                out[f"postgres {name}.{column['column_name']}"] = b"\n".join(r["b"] or b"" for r in blobs)
        return out
    finally:
        await conn.close()
