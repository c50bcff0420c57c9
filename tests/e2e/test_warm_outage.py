"""PostgreSQL down under a running, leased bot process (tests/e2e/bot_driver.py --lease): it keeps cycling on HOT
and its local journal, sends only orders that reduce the position, and replays the journal when PostgreSQL is
back -- every order's intent and every fill end up in PostgreSQL (DESIGN.md "Recovery"; state/outage.py).

A private PostgreSQL (killed, or SIGSTOPped: a hung server), the session's Redis, a standalone simulator. The
test steers the strategy through a file (``buy`` / ``sell`` / ``hold``). The lost-database case (restore the
checkpoint, replay on top, ``data_loss_estimate``) runs in-process: tests/integration/state/test_warm_journal.py
and ``postgres_journal_drill.py --mode empty`` (test_postgres_journal_drill below)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot_v2.config import load_settings
from bot_v2.monitoring.events import EventType, read_events
from tests.e2e.conftest import ROOT, StandaloneSimulator, sim_env
from tests.fixtures.services import PostgresServer, private
from tests.helpers import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A durable PostgreSQL of this test alone (killing or stopping it disturbs nobody)."""
    with private(PostgresServer(durable=True), "postgres") as server:
        yield server


def _driver(env: dict[str, str], mode_file: Path) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    full.update(env)
    script = str(ROOT / "tests" / "e2e" / "bot_driver.py")
    args = [sys.executable, script, "--cycles", "0", "--lease", "--mode-file", str(mode_file), "--log"]
    return subprocess.Popen(
        args, cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _health(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


async def _warm_keys(url: str, bot_id: str) -> set[str]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        rows = await conn.fetch("SELECT key FROM state_records WHERE bot_id = $1", bot_id)
    finally:
        await conn.close()
    return {r["key"] for r in rows}


@pytest.mark.parametrize("outage", ["kill", "stop"])
def test_a_postgres_outage_is_ridden_out_reduce_only_and_the_journal_replayed(
    outage: str,
    standalone_simulator: StandaloneSimulator,
    redis_server: Any,
    private_postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    sim, pg = standalone_simulator, private_postgres
    bot_id = f"e2e-warm-{uuid.uuid4().hex[:8]}"
    env = sim_env(
        sim.base_url,
        sim.key_file,
        sim.ca_file,
        tmp_path / "data",
        REDIS_URL=redis_server.url,
        DATABASE_URL=pg.url,
        PERPS_BOT_ID=bot_id,
        PERPS_LOG_DIR=str(tmp_path / "logs"),
    )
    settings = load_settings("dev", env, root=tmp_path)
    journal = settings.state.journal_dir / bot_id / "warm.journal"
    mode = tmp_path / "mode"
    mode.write_text("buy")

    def fills(side: str) -> list[dict[str, Any]]:
        return [e for e in read_events(settings.events_path, EventType.FILL) if e.get("side") == side]

    def denied() -> int:
        return len(read_events(settings.events_path, EventType.ORDER_DENIED))

    proc = _driver(env, mode)
    try:
        eventually(lambda: len(fills("BUY")) >= 3, timeout=60, interval=0.05)
        mode.write_text("hold")
        sells_before, denied_before = len(fills("SELL")), denied()
        if outage == "kill":
            pg.kill()
        else:
            pg.send_signal(signal.SIGSTOP)
        mode.write_text("buy")  # grows the position: refused while PostgreSQL is down
        eventually(lambda: denied() > denied_before, timeout=30, interval=0.05)
        eventually(lambda: _health(settings.health_path).get("trading_state") == "REDUCE_ONLY", timeout=10)
        mode.write_text("sell")  # reduces it: sent
        eventually(lambda: len(fills("SELL")) >= sells_before + 2, timeout=30, interval=0.05)
        mode.write_text("hold")
        assert journal.exists() and journal.stat().st_size > 0
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        if outage == "kill":
            pg.start()
        else:
            pg.send_signal(signal.SIGCONT)
        eventually(lambda: not journal.exists(), timeout=30, interval=0.05)
        eventually(lambda: _health(settings.health_path).get("trading_state") == "ACTIVE", timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(re.search(r"DRIVER DONE (.*)", out)[1])  # type: ignore[index]
    assert not summary["fenced"] and summary["trading_state"] == "ACTIVE"
    stored = asyncio.run(_warm_keys(pg.url, bot_id))
    placed = read_events(settings.events_path, EventType.ORDER_PLACED)
    missing = [e["client_order_id"] for e in placed if f"intents:{e['client_order_id']}" not in stored]
    assert not missing, f"intents of orders placed but not in PostgreSQL: {missing}"
    booked = {e["trade_id"] for e in read_events(settings.events_path, EventType.FILL)}
    assert {t for t in booked if f"fills:{t}" not in stored} == set()
    text = (settings.log_dir / "perps_bot.log").read_text()  # the RUNBOOK's grep "PostgreSQL recovery"
    assert "PostgreSQL recovery: WARM unreachable" in text and "PostgreSQL recovery completed" in text
    assert "WARM outage: reduce-only until it answers" in text, text[-3000:]


DRILL_ARGS = ("--rounds", "1", "--mode", "empty", "--down-cycles", "5", "--journal-keys", "50")


def test_postgres_journal_drill_database_lost(tmp_path: Path) -> None:
    """The drill's lost-database mode: checkpoint restored, journal on top, data_loss_estimate reported."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["DRILL_OUT_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmarks" / "postgres_journal_drill.py"), *DRILL_ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), "")
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    wanted = {"database_lost": "true", "failed_cycles": "0", "coherent": "true"}
    assert {k: fields.get(k) for k in wanted} == wanted, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert fields.get("data_loss_estimate_s") not in (None, "na"), line
