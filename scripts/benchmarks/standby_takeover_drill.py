#!/usr/bin/env python3
"""Standby takeover drill: a primary and a hot standby of one bot id, the primary killed, paused or asked to step
down; takeover time against a cold restart measured in the same run, and the invariants checked after each.

    .venv/bin/python scripts/benchmarks/standby_takeover_drill.py --rounds 3
    .venv/bin/python scripts/benchmarks/standby_takeover_drill.py --rounds 1 --mode kill,pause
    .venv/bin/python scripts/benchmarks/standby_takeover_drill.py --rounds 1 --interval 0.3 --cycles-after 2

Everything is a real process: a standalone simulator (``python -m bot_v2.brokerages.simulated``), throwaway
redis-server, PostgreSQL (durable) and moto S3 servers (``tests/fixtures/services.py``; ``REDIS_URL`` /
``DATABASE_URL`` / ``S3_ENDPOINT_URL`` may name external ones), and every bot is the ``perps-bot`` CLI
(``bot_v2.cli``, dev profile pointed at the simulator, BTC-USD, ``--interval`` s) started through this script
only to register the drill strategy ``drill_flipper`` (0.001 every cycle: buy when flat, sell when long), so
every cycle writes intents, orders and fills. Primary and standby share the bot id and the stores; each has
its own PERPS_DATA_DIR (events.jsonl, health.json) and log dir. Each round runs every ``--mode`` and then the
baseline, each with a fresh bot id and client order id prefix:

* ``kill``      -- SIGKILL the primary; ``takeover_ms`` = kill -> the standby's first completed cycle;
* ``pause``     -- SIGSTOP the primary until the standby has placed an order, then SIGCONT: the zombie must
  exit 1, fenced, having placed nothing after its SIGSTOP (``zombie_orders``: its order_placed events and its
  client ids at the exchange created after that moment); ``zombie_writes_rejected`` counts the refusals it
  reported (the fence itself, WARM writes and exchange calls refused by the lease gate);
* ``step-down`` -- ``perps-bot --step-down``; ``gap`` = the primary's last completed cycle -> the standby's
  first, in ms and in cycles (gap / interval: 1.0 is an unbroken cadence);
* ``cold``      -- the baseline, always run: SIGKILL the primary (no standby) and start a new one at once (it
  waits for the dead holder's lease to expire); ``cold_restart_ms`` = kill -> its first completed cycle.

Timestamps are wall-clock ones written by the processes (health.json ``timestamp`` after each cycle, the log
line of each cycle, ``lease`` events) and the drill's own clock at the signal; all on one host. After every
mode the surviving bot is stopped (SIGTERM) and the drill checks, against the exchange (CoinbaseBroker, all pages) and
the state (opened read-only): duplicates (a client order id twice at the exchange, an exchange order with no
intent in state, or one client id placed by two processes), every exchange fill stored once, the stored
position equal to the one derived from the exchange fills, and ``verify_coherence()`` (every HOT key equal to
WARM version + checksum). Targets (issue 7): takeover <= lease TTL + 300 ms and < 1000 ms; step-down gap <= 2
cycles. The bots start with a bytecode cache of their own (PYTHONPYCACHEPREFIX in the temp dir), as a
deployed bot has its .pyc; ``--no-bytecode-cache`` keeps the environment's PYTHONDONTWRITEBYTECODE (every start
then compiles every module: the cold restart roughly doubles). Writes var/benchmarks/standby_takeover.json,
the bots' output in var/benchmarks/standby_takeover.bots.log, and ends with a RESULT line; exit 1 when an
invariant failed (a missed target is reported, not an error).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from decimal import Decimal
from typing import ClassVar

CHILD_FLAG = "--child-cli"
FLIPPER = "drill_flipper"


def register_flipper() -> None:
    """Register ``drill_flipper`` (the strategy of ``_drill.Flipper``) through the strategy plug-in point."""
    from bot_v2.domain import Position
    from bot_v2.strategies import Decision, MarketView, register_strategy

    class DrillFlipper:
        name: ClassVar[str] = FLIPPER
        required_history: ClassVar[int] = 0

        def __init__(self, quantity: Decimal) -> None:
            self.quantity = quantity

        def decide(self, view: MarketView, position: Position | None) -> Decision:
            if position is not None and position.quantity > 0:
                return Decision.sell(view.symbol, min(position.quantity, self.quantity), "drill flip")
            return Decision.buy(view.symbol, self.quantity, "drill flip")

    def build(params: Mapping[str, object]) -> DrillFlipper:
        return DrillFlipper(Decimal(str(params.get("quantity", "0.001"))))

    register_strategy(FLIPPER, build)


def child_cli(argv: list[str]) -> None:
    """``perps-bot ARGV`` with the drill strategy registered (nothing else of the drill is imported, so the
    cold restart pays the CLI's own start-up, not the drill's)."""
    register_flipper()
    from bot_v2.cli import cli

    cli.main(args=argv, prog_name="perps-bot")


if __name__ == "__main__" and sys.argv[1:2] == [CHILD_FLAG]:
    child_cli(sys.argv[2:])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import _chaos as c  # noqa: E402
import _drill as d  # noqa: E402
from rich.progress import Progress  # noqa: E402
from tests.fixtures.services import S3_TEST_CREDENTIALS  # noqa: E402

from bot_v2.config import load_settings  # noqa: E402
from bot_v2.domain import Symbol  # noqa: E402
from bot_v2.monitoring.events import EventType, read_events  # noqa: E402
from bot_v2.orchestration import keys  # noqa: E402
from bot_v2.orchestration.ledger import derive_positions  # noqa: E402
from bot_v2.orchestration.wiring import open_state, reader_settings  # noqa: E402

NAME = "standby_takeover"
BTC = Symbol("BTC-USD")
MODES = ("kill", "pause", "step-down")
BASELINE = "cold"
SCRIPT = Path(__file__).resolve()
BOTS_LOG = d.BENCH_DIR / f"{NAME}.bots.log"
DEFAULT_TTL_SECONDS = 0.6  # PERPS_LEASE_TTL_SECONDS' default (config/settings.py)

#: A line of the bot's log for a completed cycle (UTC, ms): ``2026-12-01 10:00:00,123 INFO ...: cycle 7: ...``.
CYCLE_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO\s+bot_v2\.orchestration\.bot: cycle (\d+): .*\| ([\d.]+) ms$"
)
#: What the fenced zombie reports as refused (its log): a WARM write, a renewal, an exchange call.
REFUSALS = {
    "warm_write": re.compile(r"rejected: this writer holds epoch"),
    "renewal": re.compile(r"lease of bot '[^']+' epoch \d+ was taken over"),
    "exchange_call": re.compile(r"not sent: the lease of bot|this process lost its lease; no exchange call"),
}


def now() -> datetime:
    return datetime.now(UTC)


parse_ts = c.parse_ts


def ms_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 1)


# --- the bot processes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cycle:
    number: int
    ok: bool
    at: datetime  # when the process finished it (health.json timestamp, else its log line)
    ms: float | None = None  # its own latency (health.json last_cycle_ms)


@dataclass
class BotProcess:
    """One ``perps-bot`` process with its own data dir and log dir; health.json polled every ``poll`` s."""

    role: str
    env: dict[str, str]
    home: Path
    poll: float
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    spawned_at: datetime | None = None
    exit_code: int | None = None
    health: dict[int, Cycle] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_path(self) -> Path:
        return self.home / "logs" / "perps_bot.log"

    @property
    def out_path(self) -> Path:
        return self.home / "output.txt"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> BotProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        env = c.child_environ(
            self.env | {"PERPS_DATA_DIR": str(self.data_dir), "PERPS_LOG_DIR": str(self.home / "logs")}
        )
        with self.out_path.open("ab") as out:
            self.spawned_at = now()
            self.proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), CHILD_FLAG, "--profile", "dev", *self.args],
                cwd=d.ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._task = asyncio.create_task(self._watch())
        return self

    async def _watch(self) -> None:
        path = self.data_dir / "health.json"
        while True:
            health = d.read_health(path)
            number = int(health.get("last_cycle") or 0)
            if number and health.get("pid") == self.pid and number not in self.health:
                latency = health.get("last_cycle_ms")
                self.health[number] = Cycle(
                    number,
                    bool(health.get("ok")),
                    parse_ts(health["timestamp"]),
                    float(latency) if latency is not None else None,
                )
            if self.proc is not None and self.proc.poll() is not None:
                return
            await asyncio.sleep(self.poll)

    # --- what the process reported ---

    def events(self, kind: EventType | str | None = None) -> list[dict[str, Any]]:
        return read_events(self.data_dir / "events.jsonl", kind)

    def lease_events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events(EventType.LEASE) if e.get("kind") == kind]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def completed(self) -> list[Cycle]:
        """Completed (ok) cycles: health.json samples, and the log's cycle lines for the ones polling missed."""
        cycles = {n: c for n, c in self.health.items() if c.ok}
        for line in self.log_text().splitlines():
            match = CYCLE_LINE.match(line)
            if match and int(match[2]) not in cycles:
                at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
                if self.spawned_at is None or at >= self.spawned_at.replace(microsecond=0):
                    cycles[int(match[2])] = Cycle(int(match[2]), True, at, float(match[3]))
        return [cycles[n] for n in sorted(cycles)]

    def placed(self, after: datetime | None = None) -> list[dict[str, Any]]:
        placed = self.events(EventType.ORDER_PLACED)
        return placed if after is None else [e for e in placed if parse_ts(e["ts"]) >= after]

    # --- waiting and signals ---

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_for(self, check: Any, within: float, what: str) -> None:
        def done() -> bool:
            if not self.alive() and not check():
                raise RuntimeError(f"{self.role} exited ({self.proc.poll() if self.proc else None}) {what}")
            return bool(check())

        # Waits only decide when the drill moves on (timings come from the processes): poll them gently.
        await d.wait_until(done, within, max(self.poll, 0.02), f"{self.role}: {what}")

    async def wait_cycles(self, count: int, within: float = 60) -> list[Cycle]:
        await self.wait_for(lambda: len(self.completed()) >= count, within, f"{count} completed cycles")
        return self.completed()

    async def wait_following(self, within: float = 60) -> None:
        await self.wait_for(lambda: "following the lease" in self.log_text(), within, "following the lease")

    def signal(self, sig: signal.Signals) -> datetime:
        at = now()
        assert self.proc is not None
        self.proc.send_signal(sig)
        return at

    async def wait_exit(self, within: float = 30) -> int:
        assert self.proc is not None
        try:
            code = await asyncio.to_thread(self.proc.wait, within)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.role} did not exit within {within:.0f}s") from None
        self.exit_code = code
        await self.stop_watch()
        return code

    async def stop_watch(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def terminate(self, within: float = 30) -> int:
        """SIGTERM (a clean stop) and wait; SIGKILL after ``within``."""
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
        try:
            return await self.wait_exit(within)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait_exit(10)

    def reap(self) -> None:
        """Last-resort cleanup (the drill failed or was interrupted): resume, kill, wait."""
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if self._task is not None:
            self._task.cancel()


# --- one mode of one round --------------------------------------------------------------------------------


@dataclass
class ModeRun:
    """The processes of one (round, mode): one bot id, one client id prefix."""

    mode: str
    n: int
    env: dict[str, str]
    home: Path
    args: argparse.Namespace
    prefix: str
    bots: list[BotProcess] = field(default_factory=list)
    paused_at: datetime | None = None  # pause mode: the zombie's SIGSTOP

    def spawn(self, role: str, *cli_args: str) -> BotProcess:
        bot = BotProcess(role, self.env, self.home / role, self.args.poll_ms / 1000, cli_args)
        self.bots.append(bot)
        return bot.start()

    async def primary(self) -> BotProcess:
        bot = self.spawn("primary")
        await bot.wait_cycles(self.args.cycles_before)
        return bot

    async def standby(self, primary: BotProcess) -> BotProcess:
        bot = self.spawn("standby", "--standby")
        await bot.wait_following()
        before = len(primary.completed())
        await primary.wait_cycles(before + 1)  # the standby connected while the primary kept trading
        return bot

    def reap(self) -> None:
        for bot in self.bots:
            bot.reap()


def event_ts(events: list[dict[str, Any]]) -> datetime | None:
    return parse_ts(events[0]["ts"]) if events else None


def takeover_fields(new: BotProcess, moment: datetime) -> dict[str, Any]:
    """From ``moment`` (kill / pause / the primary seeing a step-down) to the new holder's first completed
    cycle, and where that time went: the lease (its ``lease`` event: the wait for expiry, or the process start
    of a cold restart), taking ownership (-> ``bot_started``, stamped when ``run_bot`` starts), the start-up
    reconciliation (its own ``duration_ms``), the rest of the start-up (products, loading the state, warm-up,
    checkpoint scheduler) and the first cycle itself (its own ``last_cycle_ms``)."""
    cycles = new.completed()
    first = cycles[0] if cycles else None
    lease = (new.lease_events("takeover") or new.lease_events("acquired") or [{}])[0]
    lease_at = parse_ts(lease["ts"]) if "ts" in lease else None
    started = event_ts(new.events(EventType.BOT_STARTED))
    startup = [e for e in new.events(EventType.RECONCILIATION) if e.get("trigger") == "startup"]
    reconcile = (
        float(startup[0]["duration_ms"]) if startup and startup[0].get("duration_ms") is not None else None
    )
    first_at = first.at if first else None
    to_cycle = ms_between(started, first_at)
    other = None
    if to_cycle is not None and reconcile is not None and first is not None and first.ms is not None:
        other = round(to_cycle - reconcile - first.ms, 1)
    return {
        "takeover_ms": ms_between(moment, first_at),
        "lease_ms": ms_between(moment, lease_at),
        "lease_to_first_cycle_ms": ms_between(lease_at, first_at),
        "breakdown_ms": {
            "lease": ms_between(moment, lease_at),
            "ownership": ms_between(lease_at, started),
            "reconcile": reconcile,
            "startup_other": other,
            "first_cycle": first.ms if first else None,
        },
        "reconcile_ms": reconcile,
        "epoch": lease.get("epoch"),
        "previous_epoch": (lease.get("previous") or {}).get("epoch"),
        "previous_remaining_s": (lease.get("previous") or {}).get("remaining_seconds"),
        # the new holder took the lease only after the event (not because the primary was already failing)
        "took_over_after": lease_at is not None and lease_at >= moment,
    }


async def run_kill(run: ModeRun) -> dict[str, Any]:
    primary = await run.primary()
    standby = await run.standby(primary)
    killed = primary.signal(signal.SIGKILL)
    code = await primary.wait_exit(10)
    await standby.wait_cycles(1, within=30)
    row = takeover_fields(standby, killed)
    await standby.wait_cycles(1 + run.args.cycles_after)
    row["exit_codes"] = {"primary": code, "standby": await standby.terminate()}
    row["exits_ok"] = code == -signal.SIGKILL and row["exit_codes"]["standby"] == 0
    return row


async def run_pause(run: ModeRun) -> dict[str, Any]:
    primary = await run.primary()
    standby = await run.standby(primary)
    paused = run.paused_at = primary.signal(signal.SIGSTOP)
    await standby.wait_cycles(1, within=30)
    await standby.wait_for(lambda: standby.placed(), 30, "an order after the takeover")
    resumed = primary.signal(signal.SIGCONT)
    code = await primary.wait_exit(30)
    row = takeover_fields(standby, paused)
    fenced = primary.lease_events("fenced")
    log = primary.log_text()
    refusals = {kind: len(pattern.findall(log)) for kind, pattern in REFUSALS.items()}
    after_pause = [e for e in primary.events() if parse_ts(e["ts"]) >= paused]
    refused_calls = [e for e in after_pause if e.get("type") == EventType.CYCLE_ERROR]
    row.update(
        paused_ms=ms_between(paused, resumed),
        fence_ms=ms_between(resumed, event_ts(fenced)),
        zombie_fenced=len(fenced) == 1,
        zombie_fence_reason=fenced[0].get("reason") if fenced else None,
        zombie_placed_after_pause=len(primary.placed(after=paused)),
        zombie_intents_after_pause=len([e for e in after_pause if e.get("type") == EventType.ORDER_INTENT]),
        zombie_refusals=refusals,
        zombie_cycle_errors_after_pause=len(refused_calls),
        # The fence itself, plus every other refusal it reported (the fence's own line is one of the log hits).
        zombie_writes_rejected=max(1 if fenced else 0, sum(refusals.values())),
        zombie_stopped_fenced=any(e.get("fenced") for e in primary.events(EventType.BOT_STOPPED)),
    )
    await standby.wait_cycles(len(standby.completed()) + run.args.cycles_after)
    row["exit_codes"] = {"primary": code, "standby": await standby.terminate()}
    row["exits_ok"] = code == 1 and row["exit_codes"]["standby"] == 0
    return row


async def run_step_down(run: ModeRun) -> dict[str, Any]:
    primary = await run.primary()
    standby = await run.standby(primary)
    operator = BotProcess(
        "step-down", run.env, run.home / "operator", run.args.poll_ms / 1000, ("--step-down",)
    )
    run.bots.append(operator)
    operator.start()
    op_code = await operator.wait_exit(30)
    code = await primary.wait_exit(30)
    await standby.wait_cycles(1, within=30)
    # The request is timed from the moment the primary saw it (its step_down event): the operator command's
    # own process start (seconds) is not part of the handover.
    seen = event_ts(primary.lease_events("step_down"))
    last = primary.completed()[-1] if primary.completed() else None
    first = standby.completed()[0]
    row = takeover_fields(standby, seen) if seen else takeover_fields(standby, first.at)
    gap = ms_between(last.at if last else None, first.at)
    row.update(
        handover_ms=row.pop("takeover_ms"),
        operator_ms=ms_between(operator.spawned_at, event_ts(primary.lease_events("step_down"))),
        released_ms=ms_between(seen, event_ts(primary.lease_events("released"))),
        gap_ms=gap,
        gap_cycles=round(gap / (run.args.interval * 1000), 2) if gap is not None else None,
        primary_stopped_clean=any(e.get("clean") for e in primary.events(EventType.BOT_STOPPED)),
    )
    await standby.wait_cycles(1 + run.args.cycles_after)
    row["exit_codes"] = {"step_down": op_code, "primary": code, "standby": await standby.terminate()}
    row["exits_ok"] = op_code == 0 and code == 0 and row["exit_codes"]["standby"] == 0 and seen is not None
    return row


async def run_cold(run: ModeRun) -> dict[str, Any]:
    primary = await run.primary()
    killed = primary.signal(signal.SIGKILL)
    code = await primary.wait_exit(10)  # reaped: the new process sees the holder's pid gone
    restarted = run.spawn("restart")
    await restarted.wait_cycles(1, within=30)
    row = takeover_fields(restarted, killed)
    row["cold_restart_ms"] = row.pop("takeover_ms")
    row["spawn_ms"] = ms_between(killed, restarted.spawned_at)
    bot_started = event_ts(restarted.events(EventType.BOT_STARTED))
    row["process_start_ms"] = ms_between(restarted.spawned_at, event_ts(restarted.lease_events("takeover")))
    row["bot_started_ms"] = ms_between(killed, bot_started)
    await restarted.wait_cycles(1 + run.args.cycles_after)
    row["exit_codes"] = {"primary": code, "restart": await restarted.terminate()}
    row["exits_ok"] = code == -signal.SIGKILL and row["exit_codes"]["restart"] == 0
    return row


BREAKDOWN = ("lease", "ownership", "reconcile", "startup_other", "first_cycle")
SINCE = {"kill": "SIGKILL", "pause": "SIGSTOP", "step-down": "request seen", BASELINE: "SIGKILL"}
RUNNERS = {"kill": run_kill, "pause": run_pause, "step-down": run_step_down, BASELINE: run_cold}


# --- invariants -------------------------------------------------------------------------------------------


async def state_view(env: dict[str, str], root: Path) -> dict[str, Any]:
    """The bot's fills, intents and position, and the coherence verdict, from the state opened read-only."""
    settings = reader_settings(
        load_settings("dev", env | {"PERPS_DATA_DIR": str(root / "reader")}, root=root)
    )
    async with open_state(settings) as state:
        fills = await state.batch_get_state(await state.get_keys_by_pattern("fills:*"))
        intents = await state.batch_get_state(await state.get_keys_by_pattern("intents:*"))
        position = await state.get_state(keys.position_key(BTC))
        coherence = await state.verify_coherence()
    return {
        "fills": dict(fills),
        "intents": dict(intents),
        "position": dict(position or {}),
        "coherence_checked": coherence.checked,
        "coherence_mismatches": [f"{m.key}:{m.kind}" for m in coherence.mismatches],
        "coherent": coherence.ok,
    }


async def invariants(run: ModeRun, sim: c.Simulator, root: Path) -> dict[str, Any]:
    orders, exchange_fills = await c.exchange_view(sim.base_url, sim.key_file, sim.ca_file, run.prefix)
    state = await state_view(run.env, root)
    client_ids = [o.client_order_id for o in orders]
    intent_ids = {k.removeprefix("intents:") for k in state["intents"]}
    orphans = sorted(coid for coid in set(client_ids) if coid not in intent_ids)
    placed_by: dict[str, set[str]] = {}
    for bot in run.bots:
        for event in bot.placed():
            placed_by.setdefault(str(event["client_order_id"]), set()).add(bot.role)
    double_submits = sorted(coid for coid, roles in placed_by.items() if len(roles) > 1)
    pending = sorted(
        k
        for k, v in state["intents"].items()
        if isinstance(v, dict) and v.get("status") not in ("DONE", "FAILED")
    )
    stored = sorted(k.removeprefix("fills:") for k in state["fills"])
    at_exchange = sorted(f.trade_id for f in exchange_fills)
    expected = derive_positions(exchange_fills).get(BTC)
    expected_qty = expected.quantity if expected else Decimal(0)
    stored_qty = Decimal(str(state["position"].get("quantity", 0)))
    row: dict[str, Any] = {
        "exchange_orders": len(orders),
        "duplicates": len(client_ids) - len(set(client_ids)) + len(orphans) + len(double_submits),
        "orphan_orders": orphans,
        "double_submits": double_submits,
        "pending_intents": len(pending),
        "exchange_fills": len(at_exchange),
        "fills_exactly_once": stored == at_exchange and len(set(at_exchange)) == len(at_exchange),
        "position_stored": str(stored_qty),
        "position_exchange": str(expected_qty),
        "positions_equal": stored_qty == expected_qty,
        "coherent": state["coherent"],
        "coherence_checked": state["coherence_checked"],
        "coherence_mismatches": state["coherence_mismatches"],
    }
    if (
        run.paused_at is not None
    ):  # the zombie: its orders placed after its SIGSTOP, by its events and at the exchange
        zombie = run.bots[0]
        own = {str(e["client_order_id"]) for e in zombie.events() if e.get("client_order_id")}
        late = {str(e["client_order_id"]) for e in zombie.placed(after=run.paused_at)}
        late |= {
            o.client_order_id
            for o in orders
            if o.client_order_id in own and o.created_at is not None and o.created_at >= run.paused_at
        }
        row["zombie_orders"] = len(late)
    return row


def verdict(r: dict[str, Any]) -> bool:
    if r.get("error"):
        return False
    ok = bool(
        r["exits_ok"]
        and r["took_over_after"]
        and r["previous_epoch"] is not None
        and r["epoch"] == r["previous_epoch"] + 1
        and r["duplicates"] == 0
        and r["fills_exactly_once"]
        and r["positions_equal"]
        and r["coherent"]
        and r["exchange_orders"] > 0
    )
    if r["mode"] == "pause":
        ok = ok and r["zombie_orders"] == 0 and r["zombie_fenced"] and r["zombie_stopped_fenced"]
    return ok


# --- the drill --------------------------------------------------------------------------------------------


def mode_env(services: d.Services, sim: c.Simulator, args: argparse.Namespace, tag: str) -> dict[str, str]:
    env = {
        "COINBASE_BASE_URL": sim.base_url,
        "COINBASE_KEY_FILE": str(sim.key_file),
        "COINBASE_CA_FILE": str(sim.ca_file),
        "REDIS_URL": services.redis.url,
        "DATABASE_URL": services.postgres.url,
        "PERPS_BOT_ID": f"drill-{tag}",
        "PERPS_CLIENT_ID_PREFIX": f"{tag}-",
        "PERPS_SYMBOLS": "BTC-USD",
        "PERPS_INTERVAL_SECONDS": str(args.interval),
        "PERPS_STRATEGY": FLIPPER,
        "RISK_MAX_ORDERS_PER_MINUTE": "none",
        **d.QUIET_RISK_ENV,
    }
    if args.lease_ttl is not None:
        env["PERPS_LEASE_TTL_SECONDS"] = str(args.lease_ttl)
    if services.s3 is not None:
        env["S3_ENDPOINT_URL"] = services.s3.url
        env["S3_BUCKET"] = os.environ.get("S3_BUCKET", d.S3_DRILL_BUCKET)
        env["AWS_DEFAULT_REGION"] = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        if not services.s3.external:
            env["AWS_ACCESS_KEY_ID"] = S3_TEST_CREDENTIALS["aws_access_key_id"]
            env["AWS_SECRET_ACCESS_KEY"] = S3_TEST_CREDENTIALS["aws_secret_access_key"]
    return env


def keep_output(run: ModeRun) -> None:
    """Append every process's console output of this mode to the bots' log (the temp dir goes away)."""
    with BOTS_LOG.open("a") as out:
        for bot in run.bots:
            out.write(
                f"===== round {run.n} {run.mode}: {bot.role} (pid {bot.proc.pid if bot.proc else '-'}) =====\n"
            )
            with contextlib.suppress(FileNotFoundError):
                out.write(bot.out_path.read_text(errors="replace"))


async def one_mode(
    mode: str, n: int, services: d.Services, sim: c.Simulator, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    env = mode_env(services, sim, args, tag)
    run = ModeRun(mode, n, env, root / f"r{n}-{mode}", args, f"{tag}-")
    row: dict[str, Any] = {"round": n, "mode": mode, "bot_id": env["PERPS_BOT_ID"]}
    started = time.monotonic()
    try:
        async with asyncio.timeout(args.mode_timeout):
            row.update(await RUNNERS[mode](run))
        row.update(await invariants(run, sim, root))
    except Exception as exc:  # a timeout or a process that died: this mode failed, the drill goes on
        text = str(exc) or f"the mode took longer than --mode-timeout {args.mode_timeout:g}s"
        row["error"] = f"{type(exc).__name__}: {text}"
    finally:
        run.reap()
        for bot in run.bots:
            await bot.stop_watch()
        keep_output(run)
    row["seconds"] = round(time.monotonic() - started, 1)
    row["ok"] = verdict(row)
    return row


def progress_line(r: dict[str, Any]) -> str:
    head = f"round {r['round']} {r['mode']:<9}"
    if r.get("error"):
        return f"{head} FAILED: {r['error']}"
    if r["mode"] == "step-down":
        timing = f"gap {d.fmt(r.get('gap_ms'))} ms = {d.fmt(r.get('gap_cycles'))} cycles"
    elif r["mode"] == BASELINE:
        timing = f"cold restart {d.fmt(r.get('cold_restart_ms'))} ms"
    else:
        timing = f"takeover {d.fmt(r.get('takeover_ms'))} ms"
    extra = ""
    if r["mode"] == "pause":
        extra = f", zombie exit {r['exit_codes']['primary']}, orders {r.get('zombie_orders')}, "
        extra += f"refused {r.get('zombie_writes_rejected')}"
    return (
        f"{head} {timing} (lease {d.fmt(r.get('lease_ms'))}, reconcile {d.fmt(r.get('reconcile_ms'))} ms){extra}; "
        f"orders {r.get('exchange_orders')}, dups {r.get('duplicates')}, positions equal "
        f"{d.fmt(r.get('positions_equal'))}, coherent {d.fmt(r.get('coherent'))} -> {'ok' if r['ok'] else 'FAILED'}"
    )


async def drill(args: argparse.Namespace) -> int:
    register_flipper()  # the driver loads the bots' settings (state checks): the name must be known here too
    d.configure_logging(NAME)
    BOTS_LOG.write_text("")
    modes = [*args.mode, BASELINE]
    services = d.start_services("none", with_s3=True)
    results: list[dict[str, Any]] = []
    ttl = args.lease_ttl
    try:
        with tempfile.TemporaryDirectory(prefix="perps-drill-") as tmp:
            root = Path(tmp)
            if args.bytecode_cache:
                # This machine may set PYTHONDONTWRITEBYTECODE with no .pyc anywhere: every start would compile
                # every module (seconds). A deployed bot has its bytecode; give the drill's processes a cache
                # of their own (nothing is written into the tree or the venv).
                os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
                os.environ["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
            sim = c.Simulator(root / "sim")
            try:
                if ttl is None:
                    env = mode_env(services, sim, args, "ttl")
                    ttl = load_settings(
                        "dev", env | {"PERPS_DATA_DIR": str(root / "x")}, root=root
                    ).lease.ttl_seconds
                d.console.print(
                    f"standby takeover drill: {args.rounds} round(s) x {', '.join(modes)}; interval {args.interval}s, "
                    f"lease TTL {ttl}s, poll {args.poll_ms} ms; bots' output -> {BOTS_LOG}"
                )
                with Progress(console=d.console, transient=True) as progress:
                    task = progress.add_task("drill", total=args.rounds * len(modes))
                    for n in range(1, args.rounds + 1):
                        for mode in modes:
                            progress.update(task, description=f"round {n}: {mode}")
                            row = await one_mode(mode, n, services, sim, root, args)
                            results.append(row)
                            progress.console.print(progress_line(row))
                            progress.advance(task)
            finally:
                sim.close()
    finally:
        services.close()
    return report(results, args, modes, float(ttl))


def summarize(results: list[dict[str, Any]], modes: list[str], ttl: float, interval: float) -> dict[str, Any]:
    target_ms = min(ttl * 1000 + 300, 1000.0)
    per_mode: dict[str, Any] = {}
    for mode in modes:
        rs = [r for r in results if r["mode"] == mode]
        key = {"step-down": "gap_ms", BASELINE: "cold_restart_ms"}.get(mode, "takeover_ms")
        values = [r.get(key) for r in rs]
        entry: dict[str, Any] = {
            "rounds": len(rs),
            "measure": key,
            "p50_ms": d.med(values),
            "max_ms": d.top(values),
            "lease_ms_p50": d.med(r.get("lease_ms") for r in rs),
            "lease_to_first_cycle_ms_p50": d.med(r.get("lease_to_first_cycle_ms") for r in rs),
            "reconcile_ms_p50": d.med(r.get("reconcile_ms") for r in rs),
            "breakdown_ms_p50": {
                part: d.med((r.get("breakdown_ms") or {}).get(part) for r in rs) for part in BREAKDOWN
            },
            "ok": all(r["ok"] for r in rs),
        }
        present = [v for v in values if v is not None]
        if mode in ("kill", "pause"):
            entry["target"] = f"<= {target_ms:.0f} ms (TTL + 300, < 1000)"
            entry["target_met"] = bool(present) and len(present) == len(rs) and max(present) < target_ms
        elif mode == "step-down":
            cycles = [r.get("gap_cycles") for r in rs]
            entry.update(gap_cycles_p50=d.med(cycles), gap_cycles_max=d.top(cycles))
            entry["handover_ms_p50"] = d.med(r.get("handover_ms") for r in rs)
            entry["target"] = "<= 2 cycles"
            good = [c for c in cycles if c is not None]
            entry["target_met"] = bool(good) and len(good) == len(rs) and max(good) <= 2
        else:
            entry["target"] = "baseline"
            entry["target_met"] = None
        per_mode[mode] = entry
    done = [r for r in results if not r.get("error")]
    zombies = [r for r in done if r["mode"] == "pause"]
    return {
        "lease_ttl_seconds": ttl,
        "interval_seconds": interval,
        "takeover_target_ms": target_ms,
        "per_mode": per_mode,
        "duplicates": sum(r.get("duplicates", 0) for r in done),
        "zombie_orders": sum(r.get("zombie_orders", 0) for r in zombies),
        "zombie_writes_rejected": sum(r.get("zombie_writes_rejected", 0) for r in zombies),
        "positions_equal": bool(done) and all(r.get("positions_equal") for r in done),
        "fills_exactly_once": bool(done) and all(r.get("fills_exactly_once") for r in done),
        "coherent": bool(done) and all(r.get("coherent") for r in done),
        "targets_met": all(v["target_met"] is not False for v in per_mode.values()),
        "errors": sum(not r["ok"] for r in results),
    }


def report(results: list[dict[str, Any]], args: argparse.Namespace, modes: list[str], ttl: float) -> int:
    columns = [
        "round", "mode", "exits", "takeover / gap ms", "lease ms", "reconcile ms", "orders", "dups",
        "zombie orders", "refused", "pos equal", "coherent", "ok",
    ]  # fmt: skip
    rows = []
    for r in results:
        measure = r.get({"step-down": "gap_ms", BASELINE: "cold_restart_ms"}.get(r["mode"], "takeover_ms"))
        exits = "/".join(str(c) for c in (r.get("exit_codes") or {}).values()) or "-"
        rows.append([
            r["round"], r["mode"], exits, measure, r.get("lease_ms"), r.get("reconcile_ms"), r.get("exchange_orders"),
            r.get("duplicates"), r.get("zombie_orders"), r.get("zombie_writes_rejected"), r.get("positions_equal"),
            r.get("coherent"), r["ok"],
        ])  # fmt: skip
    d.console.print(
        d.table(
            "Per round and mode (ms from the signal / request, wall clock of the processes)", columns, rows
        )
    )
    summary = summarize(results, modes, ttl, args.interval)
    floor = summary["per_mode"][BASELINE]["p50_ms"]
    d.console.print(
        d.table(
            f"By mode (p50 / max over rounds; floor = the cold restart p50 of this run; TTL {ttl}s, "
            f"interval {args.interval}s)",
            ["mode", "rounds", "measured", "p50 ms", "max ms", "cycles p50 / max", "lease ms p50",
             "lease -> 1st cycle p50", "floor ms", "target", "met"],
            [
                [m, v["rounds"], v["measure"], v["p50_ms"], v["max_ms"],
                 f"{d.fmt(v['gap_cycles_p50'])} / {d.fmt(v['gap_cycles_max'])}" if m == "step-down" else "-",
                 v["lease_ms_p50"], v["lease_to_first_cycle_ms_p50"], floor, v["target"], v["target_met"]]
                for m, v in summary["per_mode"].items()
            ],
        )
    )  # fmt: skip
    parts = list(BREAKDOWN)
    d.console.print(
        d.table(
            "Where the time goes (p50 ms, from the new holder's events; cold: 'to lease' is the process start)",
            ["mode", "from", "to lease", "ownership", "reconcile", "other start-up", "first cycle", "total"],
            [
                [m, SINCE[m], *(summary["per_mode"][m]["breakdown_ms_p50"][p] for p in parts),
                 summary["per_mode"][m]["p50_ms"] if m != "step-down" else summary["per_mode"][m]["handover_ms_p50"]]
                for m in modes
            ],
        )
    )  # fmt: skip
    path = d.write_json(NAME, {"settings": vars(args), "modes": modes, "rounds": results, "summary": summary})
    d.console.print(f"wrote {path}")
    per_mode = summary["per_mode"]
    takeover = per_mode.get("kill") or per_mode.get("pause") or {}
    step = per_mode.get("step-down") or {}
    print(
        d.result_line(
            NAME,
            args.rounds,
            takeover_ms=takeover.get("p50_ms"),
            cold_restart_ms=floor,
            duplicates=summary["duplicates"],
            zombie_orders=summary["zombie_orders"] if "pause" in per_mode else None,
            zombie_writes_rejected=summary["zombie_writes_rejected"] if "pause" in per_mode else None,
            positions_equal=summary["positions_equal"],
            coherent=summary["coherent"],
            takeover_max_ms=takeover.get("max_ms"),
            step_down_gap_ms=step.get("p50_ms"),
            step_down_gap_cycles=step.get("gap_cycles_p50"),
            targets_met=summary["targets_met"],
            errors=summary["errors"],
        ),
        flush=True,
    )
    return 0 if summary["errors"] == 0 else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = d.arg_parser(__doc__)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds; each runs every mode + the cold baseline"
    )
    parser.add_argument(
        "--mode",
        "--modes",
        dest="mode",
        type=lambda s: [m.strip() for m in s.split(",") if m.strip()],
        default=list(MODES),
        help=f"comma-separated, of {','.join(MODES)} (default all; the cold restart baseline always runs)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="cycle interval in s (default 1.0)")
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=None,
        help="PERPS_LEASE_TTL_SECONDS for the bots (default: the bot's, 0.6)",
    )
    parser.add_argument(
        "--cycles-before", type=int, default=3, help="primary's cycles before the event (default 3)"
    )
    parser.add_argument(
        "--cycles-after", type=int, default=2, help="new holder's cycles after it (default 2)"
    )
    parser.add_argument("--poll-ms", type=float, default=5.0, help="health.json polling interval (default 5)")
    parser.add_argument(
        "--no-bytecode-cache",
        dest="bytecode_cache",
        action="store_false",
        help="start the bots as the environment says (with PYTHONDONTWRITEBYTECODE: every start compiles)",
    )
    parser.add_argument(
        "--mode-timeout", type=float, default=120.0, help="bound of one mode in s (default 120)"
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.mode if m not in MODES]
    if unknown:
        parser.error(f"--mode: unknown {', '.join(unknown)} (choose from {', '.join(MODES)})")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    d.run_main(lambda: drill(arguments), "standby takeover drill")
