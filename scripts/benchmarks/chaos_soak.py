#!/usr/bin/env python3
"""Chaos soak: a primary and a hot standby of one bot id trade for --minutes while their servers, the exchange
and the primary itself fail at random (seeded) moments; the invariants are checked after every fault and at
the end.

    .venv/bin/python scripts/benchmarks/chaos_soak.py --minutes 30 --fault-every 20 --seed 1
    .venv/bin/python scripts/benchmarks/chaos_soak.py --minutes 2.5 --fault-every 6 --seed 7
    .venv/bin/python scripts/benchmarks/chaos_soak.py --minutes 5 --fault-every 10 --kinds redis_kill,bot_stop
    .venv/bin/python scripts/benchmarks/chaos_soak.py --ha --minutes 5 --fault-every 20 --seed 3

What runs (all on this host, all thrown away at the end): redis-server, a durable PostgreSQL and moto's S3
server, each a process of its own the soak can SIGKILL and SIGSTOP (moto records what it is sent and a
restarted one replays the writes: the objects survive, as on a real endpoint); the simulated exchange, run in
this process (``run_simulator_in_thread``) so its fault switches are at hand; and two ``perps-bot`` processes
of one bot id (the dev profile pointed at that exchange and those stores, BTC-USD, the drill strategy
``drill_flipper`` of standby_takeover_drill.py: 0.001 every cycle, buy when flat, sell when long), each with a
data dir of its own (events.jsonl, health.json, log): the primary, and a ``--standby``. When a bot process
exits (killed, fenced, or anything else), a new ``--standby`` is started from its data dir (``restarts``).

Faults (``--kinds``, default all; the last two only with --ha), one at a time, at random moments (a gap of
0.5-1.5 x --fault-every from the previous fault's start, or at once when settling took longer), the kinds dealt
from a seeded shuffled deck so every kind comes once per round of the deck:

  redis_kill / postgres_kill / s3_kill   SIGKILL the server, restart it on the same port 0.5-3 s later
  redis_stop / postgres_stop / s3_stop   SIGSTOP the server (PostgreSQL: every process), SIGCONT 1.5-6 s later
  bot_kill                               SIGKILL the lease holder: the standby takes over
  bot_stop                               SIGSTOP the holder 2-5 s: the standby takes over, the woken one must
                                         exit 1 fenced having sent nothing
  exchange_5xx / exchange_429            every request answered 500/502/503 (or 429) for 0.5-3 s
  exchange_latency                       0.3-1.5 s added to every request for 2-6 s
  exchange_lost_ack                      the next create-order is executed but never answered (it lands
                                         0.2-1 s after the connection closed)
  exchange_ws_close                      every WebSocket closed (1011) and new ones refused for 0.5-3 s:
                                         the bots quote from REST meanwhile;
                                         detect = ws_disconnected, recover = fault end -> ws_connected
  exchange_malformed                     the next 1-5 answers of the exchange, within 1-3 s, damaged
                                         (broken JSON, missing fields, nulls, wrong types: the simulator's
                                         malformed_next): each is a one-line error of that call; a
                                         create-order whose answer is damaged is an unknown intent,
                                         resolved by reconciliation
  redis_failover (--ha)                  SIGKILL the Redis master; once a sentinel names the promoted
                                         replica (the fault's end), the old node is started again, empty,
                                         as a replica of the new master (promoted_ms, rejoined_ms)
  postgres_promote (--ha)                SIGKILL the PostgreSQL primary, ``pg_ctl promote`` the replica (the
                                         fault's end), then a new streaming replica of the new primary
                                         (pg_basebackup -R) where the old one was (promote_ms, rebuilt_ms)

--ha runs the stores in the HA topology of tests/fixtures/ha.py (the drills' redis_sentinel_drill.py and
postgres_promotion_drill.py start theirs the same way): a Redis master + replica + 3 Sentinels (quorum 2,
down-after 500 ms; the bots on REDIS_SENTINELS / REDIS_SENTINEL_MASTER) and a durable PostgreSQL primary +
streaming replica; the bots' DATABASE_URL names both servers with target_session_attrs=read-write. The
primary's synchronous_standby_names is '*' whenever its replica streams (a commit waits for the replica's
flush: the zero-loss setting of RUNBOOK, so "lost" stays a fair invariant after a promotion; asynchronous
replication loses acknowledged writes, postgres_promotion_drill.py counts them); before each promotion the
soak waits until the replica has flushed all the primary wrote (``replica=sync`` in the progress line;
anything else is an error). --ha-sync says what a promoted server does until its new replica streams:
commit alone (available, the default) or make every commit wait (strict: the setting on every server). The
*_kill / *_stop kinds break the current master / primary (``node``), and after every Redis or PostgreSQL
fault the soak heals the topology before settling (``healed_ms``: every sentinel names one running master,
the other node is its replica in sync -- made one if Sentinel has not yet --; the primary has its
synchronous standby streaming), so the next failover or promotion has a replica. With Sentinel down-after
500 ms a redis_kill or redis_stop of more than ~2 s is a failover too. What a Redis failover loses
(asynchronous by design) the bots restore from WARM: "incoherent" checks that. Output: chaos_ha.json / .log
/ .bots/.

After a fault the soak waits until the system settled (bounded by --settle-timeout): the holder completed two
cycles after the fault ended, a degraded tier reported its recovery, a lost ack was resolved, a dead or fenced
bot was replaced by a standby that follows the lease. Then it checks, against the exchange (CoinbaseBroker,
every page, the orders of the bot's client order id prefix) and the state (opened read-only, ``reader_settings``):

  duplicates        a client order id on two exchange orders; one placed by two processes (order_placed
                    events); a fill stored both live and archived
  lost              an exchange fill not stored; a stored fill the exchange does not have; an exchange order
                    without its intent in state
  incoherent        a key whose HOT copy disagrees with WARM (``verify_coherence()``); at the end, keys of
                    WARM's hot set that HOT lacks (the hot-tier count against the keys both list); the stored
                    position unequal to the one derived from the exchange's fills
  guard_violations  an order_placed by a process before it held the lease, after its loop halted (a cycle
                    error with policy halt) or while the last state_transition (of any process) said HALTED;
                    an intent written while the writer's own last state_transition said HALTED, or said
                    REDUCE_ONLY for an order that did not reduce the exchange's position just before it was
                    created (the flipper's buy from flat); the exchange's position, order by order, above
                    RISK_MAX_POSITION_SIZE (set to the flipper's 0.001: a second buy while long breaks it);
                    an order the exchange created, with a client id a process wrote an intent for, after a
                    newer holder took that process's lease (an order_placed written after the process's
                    ``fenced`` event is judged by that: created before the takeover, it was sent while the
                    process held the lease and only its answer came late -- a ``late_acks`` note)

and, after an S3 fault, from the bots' events:

  checkpoints_failed  a checkpoint_failed event (but for a fenced writer's) from the fault's start to the end
                    of its check: a checkpoint never needs S3 (its COLD reads are local, its COLD write is
                    spooled)

While the bots run, a check reads the exchange, waits for a whole cycle, reads the state, then the exchange
again: every order and fill of the first read must be in the state, every stored fill in the second read. The
state is read from another process between two of the writer's batches, so a fill not booked yet or a HOT copy
read just before its refresh is looked at again a cycle later (until --check-timeout); what is lost or
incoherent counts when the last two attempts both found it. At the end both bots are stopped (SIGTERM) and
the check is exact (one attempt).

Timings, per fault, from the bots' events and health.json (wall clock, one host; cycle events carry the start
time of their cycle, so the resolution is about one --interval): ``detect`` = fault start -> the first sign a
bot noticed (tier_degraded of that tier; a lease renew_failed / watchdog / fenced / takeover; a failed cycle;
for the exchange faults also order_failed / intent_unknown / cycle_error and, for latency, a cycle slower than
the added latency); ``recover`` = fault end -> the tier's ``recovery`` event (Redis, S3); the new holder's first
completed cycle, counted from the signal (bot faults: the standby does not wait for the old process); the
``recovery`` intent_resolved event of the order, counted from its intent_unknown (lost ack); otherwise the
first completed cycle that ended after the fault ended.

Writes var/benchmarks/chaos.json, the soak's own log var/benchmarks/chaos.log, every bot's events, log and
output under var/benchmarks/chaos.bots/, prints a progress line per fault, a table by fault kind and, last,
``RESULT minutes=... faults=... restarts=... orders=... fills=... duplicates=0 lost=0 incoherent=0
guard_violations=0 checkpoints_failed=0``. Exit 1 when an invariant failed, a fault did not settle within
--settle-timeout or a check could not run; 2 when refused (REDIS_URL / DATABASE_URL / S3_ENDPOINT_URL set:
the soak kills its servers, so it must own them). Bounded in time (--minutes of faults + the last fault's
settling + the final check); every process it started is stopped at the end, also on SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import _chaos as c
import _drill as d
import standby_takeover_drill as std
from tests.fixtures.ha import SENTINEL_MASTER, PostgresReplicaPair, RedisSentinelSet
from tests.fixtures.services import S3_TEST_CREDENTIALS, PostgresServer, RedisServer, ServiceError

from bot_v2.brokerages.simulated import RunningSimulator, SimulatorConfig, run_simulator_in_thread
from bot_v2.config import load_settings
from bot_v2.domain import Fill, Order
from bot_v2.monitoring.events import EventType
from bot_v2.orchestration import keys
from bot_v2.orchestration.ledger import derive_positions
from bot_v2.orchestration.wiring import open_state, reader_settings

NAME = "chaos"
BTC = std.BTC
HOMES = ("a", "b")
#: kind -> (what breaks, how)
KINDS: dict[str, tuple[str, str]] = {
    "redis_kill": ("redis", "kill"),
    "redis_stop": ("redis", "stop"),
    "postgres_kill": ("postgres", "kill"),
    "postgres_stop": ("postgres", "stop"),
    "s3_kill": ("s3", "kill"),
    "s3_stop": ("s3", "stop"),
    "bot_kill": ("bot", "kill"),
    "bot_stop": ("bot", "stop"),
    "exchange_5xx": ("exchange", "5xx"),
    "exchange_429": ("exchange", "429"),
    "exchange_latency": ("exchange", "latency"),
    "exchange_lost_ack": ("exchange", "lost_ack"),
    "exchange_ws_close": ("exchange", "ws_close"),
    "exchange_malformed": ("exchange", "malformed"),
    "redis_failover": ("redis", "failover"),  # --ha only
    "postgres_promote": ("postgres", "promote"),  # --ha only
}
#: Fault kinds that need the HA topology (--ha): a replica to promote.
HA_KINDS = ("redis_failover", "postgres_promote")
#: --ha: the PostgreSQL pair's settings (copied to every replica it builds): a replica whose primary restarted
#: reconnects within 0.5 s, not 5. Its commits wait for the synchronous standby (--ha-sync).
HA_POSTGRES_SETTINGS = {"wal_retrieve_retry_interval": "500ms"}
TIER_OF = {"redis": "hot", "s3": "cold"}
HOLDING = ("acquired", "takeover")
CATEGORIES = ("duplicates", "lost", "incoherent", "guard_violations")
#: Judged from the bots' events after an S3 fault, not by ``check()``: see the module doc.
CHECKPOINTS_FAILED = "checkpoints_failed"
ALL_CATEGORIES = (*CATEGORIES, CHECKPOINTS_FAILED)
UNEXPECTED = ("halted", "crashed")
RESPAWN_GAP_SECONDS = 2.0
#: The bots' RISK_MAX_POSITION_SIZE: the flipper's size, so one buy too many at the exchange is past the guard.
MAX_POSITION = Decimal("0.001")


def now() -> datetime:
    return datetime.now(UTC)


def ms_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds() * 1000), 1)


def ts_of(event: dict[str, Any], field_name: str = "ts") -> datetime | None:
    value = event.get(field_name)
    if not value:
        return None
    try:
        return c.parse_ts(value)
    except ValueError:
        return None


# --- the bot processes ------------------------------------------------------------------------------------


@dataclass
class Bot(std.BotProcess):
    """A ``perps-bot`` process of the soak; its events and log are the part of its data dir's files it wrote."""

    events_part: c.FileSegment | None = None
    log_part: c.FileSegment | None = None
    out_part: c.FileSegment | None = None
    killed_by_soak: bool = False
    stopped_by_soak: bool = False
    exit_recorded: bool = False

    @property
    def name(self) -> str:
        return self.role

    def start(self) -> Bot:
        self.events_part = c.FileSegment.at_end_of(self.data_dir / "events.jsonl")
        self.log_part = c.FileSegment.at_end_of(self.log_path)
        self.out_part = c.FileSegment.at_end_of(self.out_path)
        super().start()
        return self

    def events(self, kind: EventType | str | None = None) -> list[dict[str, Any]]:
        found = self.events_part.events() if self.events_part is not None else []
        return found if kind is None else [e for e in found if e.get("type") == str(kind)]

    def log_text(self) -> str:
        return self.log_part.text() if self.log_part is not None else ""

    def close_parts(self) -> None:
        for part in (self.events_part, self.log_part, self.out_part):
            if part is not None and part.end is None:
                part.close()

    def lease(self) -> tuple[int | None, bool]:
        """(epoch this process took, whether it lost or gave it up since)."""
        epoch: int | None = None
        gone = False
        for event in self.events(EventType.LEASE):
            kind = event.get("kind")
            if kind in HOLDING:
                epoch, gone = event.get("epoch"), False
            elif kind in ("fenced", "released"):
                gone = True
        return epoch, gone

    def ok_cycles_after(self, moment: datetime) -> list[std.Cycle]:
        return [cy for n, cy in sorted(self.health.items()) if cy.ok and cy.at > moment]

    def following(self) -> bool:
        return "following the lease" in self.log_text()


# --- faults -----------------------------------------------------------------------------------------------


@dataclass
class Fault:
    n: int
    kind: str
    params: dict[str, Any]
    t0: datetime | None = None  # injected
    t1: datetime | None = None  # cleared (service back, switch off, SIGCONT; the signal for a SIGKILL)
    offsets: dict[str, int] = field(default_factory=dict)  # each bot's events file size at t0
    settled: bool = True
    notes: list[str] = field(default_factory=list)
    detect_ms: float | None = None
    recover_ms: float | None = None
    check: dict[str, Any] = field(default_factory=dict)
    exits: list[dict[str, Any]] = field(default_factory=list)
    at_seconds: float | None = None  # since the soak's start
    seconds: float | None = None

    @property
    def target(self) -> str:
        return KINDS[self.kind][0]

    @property
    def how(self) -> str:
        return KINDS[self.kind][1]

    def row(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "kind": self.kind,
            "params": self.params,
            "start": self.t0,
            "end": self.t1,
            "detect_ms": self.detect_ms,
            "recover_ms": self.recover_ms,
            "settled": self.settled,
            "notes": self.notes,
            "check": self.check,
            "exits": self.exits,
            "at_seconds": self.at_seconds,
            "seconds": self.seconds,
        }


def draw(rng: random.Random, kind: str) -> dict[str, Any]:
    """The fault's parameters, drawn when it is dealt (the n-th fault of a seed is always the same)."""
    target, how = KINDS[kind]
    if how in ("failover", "promote"):
        return {}
    if target in ("redis", "postgres", "s3"):
        if how == "kill":
            return {"down_seconds": round(rng.uniform(0.5, 3.0), 2)}
        return {"paused_seconds": round(rng.uniform(1.5, 6.0), 2)}
    if target == "bot":
        return {} if how == "kill" else {"paused_seconds": round(rng.uniform(2.0, 5.0), 2)}
    if how == "5xx":
        return {"status": rng.choice((500, 502, 503)), "seconds": round(rng.uniform(0.5, 3.0), 2)}
    if how == "429":
        return {"status": 429, "seconds": round(rng.uniform(0.5, 3.0), 2)}
    if how == "latency":
        return {
            "latency_seconds": round(rng.uniform(0.3, 1.5), 2),
            "seconds": round(rng.uniform(2.0, 6.0), 2),
        }
    if how == "ws_close":
        return {"down_seconds": round(rng.uniform(0.5, 3.0), 2)}
    if how == "malformed":
        return {
            "answers": rng.randint(1, 5),
            "seconds": round(rng.uniform(1.0, 3.0), 2),
            "seed": rng.randrange(1 << 30),
        }
    return {"land_after_seconds": round(rng.uniform(0.2, 1.0), 2)}


# --- the soak ---------------------------------------------------------------------------------------------


class SoakError(RuntimeError):
    """The soak cannot go on (no bot trades any more): it stops injecting and checks what it has."""


class Soak:
    def __init__(
        self,
        args: argparse.Namespace,
        root: Path,
        services: dict[str, Any],
        sim: RunningSimulator,
        env: dict[str, str],
        prefix: str,
    ) -> None:
        self.args = args
        self.root = root
        self.services = services
        self.sim = sim
        self.env = env
        self.prefix = prefix
        self.rng = random.Random(args.seed)
        self.deck: list[str] = []
        self.bots: list[Bot] = []
        self.generation: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self.exits: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.found: dict[str, dict[str, str]] = {k: {} for k in ALL_CATEGORIES}  # violation -> first seen
        self.paused: list[Any] = []  # servers and bots under SIGSTOP right now
        self.started = time.monotonic()
        self.poll = args.poll_ms / 1000
        self.supervisor: asyncio.Task[None] | None = None
        self.late_acks: dict[str, str] = {}  # client order id -> why it is not a violation
        self.name = output_name(args)

    # --- processes -------------------------------------------------------------------------------------

    def spawn(self, home: str, *, standby: bool) -> Bot:
        self.generation[home] += 1
        name = f"{home}{self.generation[home]}"
        args = ("--standby",) if standby else ()
        bot = Bot(name, self.env, self.root / "bots" / home, self.poll, args)
        self.bots.append(bot)
        bot.start()
        return bot

    @property
    def restarts(self) -> int:
        return max(0, len(self.bots) - len(HOMES))

    def live(self) -> list[Bot]:
        return [b for b in self.bots if b.alive()]

    def holder(self) -> Bot | None:
        holding = [(epoch, b) for b in self.live() for epoch, gone in [b.lease()] if epoch and not gone]
        return max(holding, key=lambda pair: pair[0])[1] if holding else None

    async def collect_exits(self) -> list[dict[str, Any]]:
        """Record every bot process that ended since the last call, and why."""
        new = []
        for bot in self.bots:
            if bot.exit_recorded or bot.proc is None or bot.proc.poll() is None:
                continue
            bot.exit_recorded = True
            await bot.stop_watch()
            bot.close_parts()
            code = bot.proc.returncode
            halts = [e for e in bot.events(EventType.CYCLE_ERROR) if e.get("policy") == "halt"]
            if bot.killed_by_soak and code == -signal.SIGKILL:
                cause = "killed"
            elif bot.lease_events("fenced") and code == 1:
                cause = "fenced"
            elif bot.stopped_by_soak and code in (0, -signal.SIGTERM):
                cause = "stopped"  # -15: a standby that was only following has no SIGTERM handler yet
            elif halts:
                cause = "halted"
            else:
                cause = "crashed"
            entry: dict[str, Any] = {"bot": bot.name, "code": code, "cause": cause, "at": now()}
            if cause in UNEXPECTED:
                output = bot.out_part.lines() if bot.out_part is not None else []
                entry["reason"] = next(
                    (line for line in reversed(output) if line.startswith("error:")),
                    halts[0]["error"] if halts else "see its output",
                )
                entry["output_tail"] = output[-12:]
            self.exits.append(entry)
            new.append(entry)
        return new

    async def supervise(self) -> None:
        """Replace every bot process that ended by a ``--standby`` from its data dir (at most one start per
        data dir every ``RESPAWN_GAP_SECONDS``: a bot that cannot start while a server is down is retried)."""
        last: dict[str, float] = {}
        while True:
            await self.collect_exits()
            for home in HOMES:
                busy = any(b.alive() and b.home.name == home for b in self.bots)
                if not busy and time.monotonic() - last.get(home, -math.inf) >= RESPAWN_GAP_SECONDS:
                    last[home] = time.monotonic()
                    self.spawn(home, standby=True)
            await asyncio.sleep(self.poll)

    async def wait(self, check: Any, within: float, what: str) -> None:
        await d.wait_until(check, within, self.poll, what)

    async def wait_cycles_after(self, moment: datetime, count: int, within: float) -> None:
        """Until the live bots completed ``count`` ok cycles that ended after ``moment``."""
        await self.wait(
            lambda: sum(len(b.ok_cycles_after(moment)) for b in self.live()) >= count,
            within,
            f"{count} completed cycle(s) after {moment.time()}",
        )

    async def ready(self, within: float) -> None:
        """Until a holder completes cycles and, in the other data dir, a standby follows the lease."""
        deadline = time.monotonic() + within
        while True:
            holder = self.holder()
            standbys = [b for b in self.live() if b is not holder]
            recent = now().timestamp() - max(3 * self.args.interval, 2.0)
            if (
                holder is not None
                and any(
                    cy.at.timestamp() > recent for cy in holder.ok_cycles_after(holder.spawned_at or now())
                )
                and len(standbys) == len(HOMES) - 1
                and all(b.following() for b in standbys)
            ):
                return
            if time.monotonic() > deadline:
                live = (
                    ", ".join(f"{b.name}{' (holder)' if b is holder else ''}" for b in self.live()) or "none"
                )
                raise SoakError(
                    f"no holder completing cycles with a following standby within {within:.0f}s: {live}"
                )
            await asyncio.sleep(self.poll)

    # --- faults ----------------------------------------------------------------------------------------

    def server(self, target: str) -> Any:
        """The server a fault of ``target`` breaks: with --ha the Redis master / PostgreSQL primary of now."""
        service = self.services[target]
        if isinstance(service, RedisSentinelSet):
            return service.master_node()
        if isinstance(service, PostgresReplicaPair):
            return service.primary
        return service

    def heal(self, target: str, within: float) -> None:
        """--ha: the set back to a master (primary) with a replica in sync, before the next fault (blocking)."""
        service = self.services[target]
        if isinstance(service, RedisSentinelSet):
            service.heal(within)
        elif isinstance(service, PostgresReplicaPair):
            service.wait_streaming()

    async def fail_over(self, fault: Fault) -> None:
        """--ha: ``redis_failover`` / ``postgres_promote`` (module doc). ``t1`` = the promotion (the first
        sentinel naming the new master; ``pg_ctl promote -w`` returned); the old server's return as a replica
        of the new one (``rejoined_ms``, ``rebuilt_ms``) comes after it."""
        p = fault.params
        if fault.how == "failover":
            cluster: RedisSentinelSet = self.services["redis"]
            old = await asyncio.to_thread(cluster.master_node)
            p["old_master"] = old.port
            self.mark(fault)
            start = time.monotonic()
            await asyncio.to_thread(old.kill)
            await asyncio.to_thread(cluster.wait_for_promotion, old.port, 30.0, every=False)
            fault.t1 = now()
            p["promoted_ms"] = d.ms(time.monotonic() - start)
            start = time.monotonic()
            # the old master started again (empty) and made a replica of the new one
            await asyncio.to_thread(cluster.heal, self.args.settle_timeout)
            p["rejoined_ms"] = d.ms(time.monotonic() - start)
            p["new_master"] = cluster.master.port
            return
        pair: PostgresReplicaPair = self.services["postgres"]
        old = pair.primary
        p["old_primary"] = old.port
        # the premise of "lost=0" after a promotion: the replica is the primary's synchronous standby and has
        # flushed what the primary wrote, also any commit acknowledged before it was synchronous (--ha-sync)
        try:
            sync = await asyncio.to_thread(pair.wait_caught_up)
        except ServiceError as exc:
            sync = f"not caught up ({exc})"
        p["replica"] = sync
        if sync != "sync":
            self.errors.append(
                f"fault {fault.n} {fault.kind}: the replica was {sync}, not a synchronous standby"
            )
        self.mark(fault)
        start = time.monotonic()
        await asyncio.to_thread(old.kill)
        await asyncio.to_thread(pair.promote)
        fault.t1 = now()
        p["promote_ms"] = d.ms(time.monotonic() - start)
        start = time.monotonic()
        await asyncio.to_thread(pair.rebuild_replica)  # pg_basebackup of the new primary, the old one's port
        p["rebuilt_ms"] = d.ms(time.monotonic() - start)
        p["new_primary"] = pair.primary.port

    def deal(self) -> Fault:
        if not self.deck:
            self.deck = list(self.args.kinds)
            self.rng.shuffle(self.deck)
        kind = self.deck.pop()
        return Fault(len(self.faults) + 1, kind, draw(self.rng, kind))

    def mark(self, fault: Fault) -> None:
        fault.t0 = now()
        fault.offsets = {b.name: b.events_part.position() for b in self.bots if b.events_part is not None}

    async def inject(self, fault: Fault) -> None:
        target, how, p = fault.target, fault.how, fault.params
        if how in ("failover", "promote"):
            await self.fail_over(fault)
        elif target in ("redis", "postgres", "s3"):
            server = await asyncio.to_thread(self.server, target)
            service = self.services[target]
            if server is not service:  # --ha: which node was the master / primary
                p["node"] = server.port
            if how == "kill":
                before = await asyncio.to_thread(server.objects, d.S3_DRILL_BUCKET) if target == "s3" else {}
                self.mark(fault)
                await asyncio.to_thread(server.kill)
                await asyncio.sleep(p["down_seconds"])
                if isinstance(service, RedisSentinelSet):  # empty, a master until healed (settle)
                    await asyncio.to_thread(service.start_node, server)
                else:
                    await asyncio.to_thread(server.start)
                if target == "s3":  # the endpoint must come back with its objects (see _chaos.MotoProcess)
                    after = await asyncio.to_thread(server.objects, d.S3_DRILL_BUCKET)
                    p["objects_kept"] = f"{len(set(before.items()) & set(after.items()))}/{len(before)}"
                    missing = sorted(k for k, etag in before.items() if after.get(k) != etag)
                    if missing:  # a retention delete between the listing and the kill shows here too
                        fault.notes.append(
                            f"after the restart S3 lacks {', '.join(missing)} (listed before the kill)"
                        )
            else:
                self.mark(fault)
                server.send_signal(signal.SIGSTOP)
                self.paused.append(server)
                try:
                    await asyncio.sleep(p["paused_seconds"])
                finally:
                    server.send_signal(signal.SIGCONT)
                    self.paused.remove(server)
            fault.t1 = now()
        elif target == "bot":
            victim = self.holder()
            if victim is None:
                raise SoakError("no lease holder to break")
            p["victim"] = victim.name
            self.mark(fault)
            if how == "kill":
                victim.killed_by_soak = True
                victim.signal(signal.SIGKILL)
            else:
                victim.signal(signal.SIGSTOP)
                self.paused.append(victim)
                try:
                    await asyncio.sleep(p["paused_seconds"])
                finally:
                    victim.signal(signal.SIGCONT)
                    self.paused.remove(victim)
            fault.t1 = now()
        else:
            control = self.sim.control
            if how == "ws_close":
                self.mark(fault)
                await asyncio.to_thread(control.refuse_websockets, True)
                await asyncio.to_thread(control.close_websockets, 1011)
                try:
                    await asyncio.sleep(p["down_seconds"])
                finally:
                    await asyncio.to_thread(control.refuse_websockets, False)
                fault.t1 = now()
            elif how == "malformed":
                self.mark(fault)
                await asyncio.to_thread(control.malformed_next, p["answers"], "random", p["seed"])
                try:
                    await asyncio.sleep(p["seconds"])
                finally:  # answers not damaged by then are left alone: the soak's own checks come next
                    await asyncio.to_thread(control.malformed_next, 0)
                fault.t1 = now()
            elif how in ("5xx", "429", "latency"):
                self.mark(fault)
                if how == "latency":
                    await asyncio.to_thread(control.set_latency, p["latency_seconds"])
                else:
                    await asyncio.to_thread(control.fail_next, 10**9, p["status"])
                try:
                    await asyncio.sleep(p["seconds"])
                finally:
                    if how == "latency":
                        await asyncio.to_thread(control.set_latency, 0.0)
                    else:
                        await asyncio.to_thread(control.fail_next, 0, p["status"])
                fault.t1 = now()
            else:
                self.mark(fault)
                await asyncio.to_thread(control.lose_acks_next, 1, p["land_after_seconds"])
                try:
                    await self.wait(
                        lambda: bool(self.unknown_after(fault)), 15, "the next order (its ack lost)"
                    )
                except TimeoutError:
                    fault.notes.append("no order was sent within 15 s: the switch was cleared")
                finally:
                    await asyncio.to_thread(control.lose_acks_next, 0, 0.0)
                fault.t1 = fault.t0
                unknown = self.unknown_after(fault)
                if unknown:
                    p["client_order_id"] = unknown[0][1].get("client_order_id")

    def since(self, fault: Fault) -> list[tuple[Bot, dict[str, Any]]]:
        """Every event written after the fault started, by any bot."""
        out = []
        for bot in self.bots:
            if bot.events_part is None:
                continue
            part = bot.events_part
            start = fault.offsets.get(bot.name, part.start)
            tail = c.FileSegment(part.path, start, part.end)
            out += [(bot, e) for e in tail.events()]
        return out

    def checkpoints_failed(self, fault: Fault) -> list[str]:
        """checkpoint_failed events of any bot from the S3 fault's start to the end of its check, but for a
        fenced writer's: a checkpoint never needs S3 (docs/STATE.md "Degraded COLD")."""
        return [
            f"{bot.name} {event.get('ts')} {event.get('reason')}: {event.get('error')}"
            for bot, event in self.since(fault)
            if event.get("type") == EventType.CHECKPOINT_FAILED and not event.get("fenced")
        ]

    def unknown_after(self, fault: Fault) -> list[tuple[Bot, dict[str, Any]]]:
        """intent_unknown events of orders whose intent was written after the fault started (not the lookups
        of an older unknown intent)."""
        events = self.since(fault)
        new = {e.get("client_order_id") for _, e in events if e.get("type") == EventType.ORDER_INTENT}
        return [
            (b, e)
            for b, e in events
            if e.get("type") == EventType.INTENT_UNKNOWN and e.get("client_order_id") in new
        ]

    async def settle(self, fault: Fault) -> None:
        """Wait (bounded) until the fault's consequences are over; a timeout is noted, not raised."""
        assert fault.t1 is not None
        deadline = time.monotonic() + self.args.settle_timeout

        def left() -> float:
            return max(0.5, deadline - time.monotonic())

        if self.args.ha and fault.target in ("redis", "postgres"):
            start = time.monotonic()
            try:
                await asyncio.to_thread(self.heal, fault.target, left())
            except ServiceError as exc:
                fault.settled = False
                fault.notes.append(f"not healed: {exc}")
                self.errors.append(f"fault {fault.n} {fault.kind}: not healed: {exc}")
            fault.params["healed_ms"] = d.ms(time.monotonic() - start)
        try:
            if fault.target == "bot":
                victim = next(b for b in self.bots if b.name == fault.params["victim"])
                try:
                    await self.wait(lambda: not victim.alive(), min(30.0, left()), f"{victim.name} to exit")
                except TimeoutError:
                    fault.notes.append(f"{victim.name} still running 30 s after the fault")
            await self.wait_cycles_after(fault.t1, 2, left())
            tier = TIER_OF.get(fault.target)
            if tier is not None and self.first(fault, lambda e: self.is_degraded(e, tier)):
                await self.wait(
                    lambda: self.first(fault, lambda e: self.is_recovery(e, tier)) is not None,
                    left(),
                    f"the {tier} tier's recovery event",
                )
            coid = fault.params.get("client_order_id")
            if coid:
                await self.wait(lambda: self.resolved(fault, coid) is not None, left(), f"{coid} resolved")
        except TimeoutError as exc:
            fault.settled = False
            fault.notes.append(f"not settled: {exc}")
            self.errors.append(f"fault {fault.n} {fault.kind}: not settled: {exc}")

    # --- what the bots reported ------------------------------------------------------------------------

    def first(self, fault: Fault, match: Any) -> tuple[Bot, dict[str, Any]] | None:
        for bot, event in self.since(fault):
            if match(event):
                return bot, event
        return None

    @staticmethod
    def is_degraded(event: dict[str, Any], tier: str) -> bool:
        return event.get("type") == EventType.TIER_DEGRADED and event.get("tier") == tier

    @staticmethod
    def is_recovery(event: dict[str, Any], tier: str) -> bool:
        return event.get("type") == EventType.RECOVERY and event.get("kind") == f"{tier}_tier"

    def resolved(self, fault: Fault, coid: str) -> tuple[Bot, dict[str, Any]] | None:
        """The event that resolved the intent ``coid`` (adopted: ``recovery``; or ``intent_failed``)."""
        for bot, event in self.since(fault):
            if event.get("client_order_id") != coid:
                continue
            if event.get("type") == EventType.INTENT_FAILED or (
                event.get("type") == EventType.RECOVERY and event.get("kind") == "intent_resolved"
            ):
                return bot, event
        return None

    def cycles_after(self, moment: datetime, *, ok: bool | None = None) -> list[std.Cycle]:
        found = [cy for b in self.bots for cy in b.health.values() if cy.at > moment]
        return sorted((cy for cy in found if ok is None or cy.ok is ok), key=lambda cy: cy.at)

    def measure(self, fault: Fault) -> None:
        """``detect_ms`` and ``recover_ms`` of the fault (module doc)."""
        assert fault.t0 is not None and fault.t1 is not None
        t0, t1 = fault.t0, fault.t1
        signs: list[datetime] = []

        def at(event: dict[str, Any], name: str = "ts") -> datetime:
            """A wall-clock field of the event (lease, tier and recovery times are real ones)."""
            return max(ts_of(event, name) or ts_of(event) or t0, t0)

        def noticed(bot: Bot, event: dict[str, Any]) -> datetime:
            """A cycle's event carries the cycle's START: it was noticed by the end of that cycle."""
            start = ts_of(event) or t0
            cycle = bot.health.get(int(event.get("cycle") or 0))
            if cycle is None:
                cycle = next((cy for _, cy in sorted(bot.health.items()) if cy.at >= start), None)
            return max(cycle.at if cycle is not None else start, t0)

        end: datetime | None = None
        tier = TIER_OF.get(fault.target)
        events = self.since(fault)
        if tier is not None:
            degraded = [e for _, e in events if self.is_degraded(e, tier)]
            signs += [at(e, "since") for e in degraded]
            if degraded:
                recovered = [at(e, "recovered_at") for _, e in events if self.is_recovery(e, tier)]
                end = min(recovered) if recovered else None
        elif fault.target == "bot":
            victim = fault.params.get("victim")
            takeovers = [
                (b, e)
                for b, e in events
                if b.name != victim and e.get("type") == EventType.LEASE and e.get("kind") in HOLDING
            ]
            if takeovers:
                new, event = min(takeovers, key=lambda pair: at(pair[1]))
                signs.append(at(event))
                first = new.ok_cycles_after(at(event))
                if first:
                    fault.recover_ms = ms_between(t0, first[0].at)
        else:
            lease_signs = ("renew_failed", "watchdog", "fenced", "takeover")
            signs += [
                at(e) for _, e in events if e.get("type") == EventType.LEASE and e.get("kind") in lease_signs
            ]
            signs += [cy.at for cy in self.cycles_after(t0, ok=False)[:1]]
            if fault.target in ("exchange", "postgres"):
                cycle_signs = (EventType.ORDER_FAILED, EventType.INTENT_UNKNOWN, EventType.CYCLE_ERROR)
                signs += [noticed(b, e) for b, e in events if e.get("type") in cycle_signs]
            if fault.how == "ws_close":
                signs += [at(e) for _, e in events if e.get("type") == EventType.WS_DISCONNECTED]
                back = [at(e) for _, e in events if e.get("type") == EventType.WS_CONNECTED and at(e) >= t1]
                end = min(back) if back else None
            if fault.how == "latency":
                slow = fault.params["latency_seconds"] * 1000
                signs += [cy.at for cy in self.cycles_after(t0) if cy.ms is not None and cy.ms >= slow][:1]
            if fault.how == "lost_ack":
                coid = fault.params.get("client_order_id")
                unknown = [(b, e) for b, e in self.unknown_after(fault) if e.get("client_order_id") == coid]
                resolved = self.resolved(fault, coid) if coid else None
                if unknown and resolved is not None:
                    fault.recover_ms = ms_between(noticed(*unknown[0]), noticed(*resolved))
        fault.detect_ms = ms_between(t0, min(signs)) if signs else None
        if fault.recover_ms is None and fault.how != "lost_ack" and fault.target != "bot":
            if end is None:
                after = self.cycles_after(t1, ok=True)
                end = after[0].at if after else None
            fault.recover_ms = ms_between(t1, end)

    # --- invariants ------------------------------------------------------------------------------------

    async def exchange(self) -> tuple[list[Order], list[Fill]]:
        """The exchange view, retried a few times (a fault switch may still answer the first request)."""
        for attempt in range(5):
            try:
                return await c.exchange_view(
                    self.sim.base_url, self.sim.key_file, self.sim.ca_path, self.prefix
                )
            except Exception:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def state_view(self, *, with_intents: bool = False) -> dict[str, Any]:
        env = self.env | {"PERPS_DATA_DIR": str(self.root / "reader")}
        settings = reader_settings(load_settings("dev", env, root=self.root))
        async with open_state(settings) as state:
            live = await state.get_keys_by_pattern(keys.FILL_PREFIX + "*")
            archived = await state.get_keys_by_pattern(f"archive:{keys.FILL_PREFIX}*")
            intent_keys = await state.get_keys_by_pattern(keys.INTENT_PREFIX + "*")
            intent_keys += await state.get_keys_by_pattern(f"archive:{keys.INTENT_PREFIX}*")
            position = await state.get_state(keys.position_key(BTC))
            archive = await state.get_state("metadata:archive")
            intents = dict(await state.batch_get_state(intent_keys)) if with_intents else {}
            coherence = await state.verify_coherence()
            missing_in_hot = hot_set = 0
            if with_intents:  # the final check, nothing writing: HOT holds every key WARM puts in the hot set
                by_tier = (await state.get_storage_stats()).warm_records_by_tier
                in_both = set(await state.get_keys_by_pattern("*")) & set(
                    await state.get_keys_by_pattern("*", hot_only=True)
                )
                hot_set = by_tier.get("hot", 0)
                missing_in_hot = hot_set - len(in_both)
        pending = set((archive or {}).get("pending_keys") or [])
        return {
            "live_fills": {k.removeprefix(keys.FILL_PREFIX) for k in live},
            "archived_fills": {
                k.removeprefix(f"archive:{keys.FILL_PREFIX}")
                for k in archived
                if k.removeprefix("archive:") not in pending
            },
            "intents": {k.removeprefix("archive:").removeprefix(keys.INTENT_PREFIX) for k in intent_keys},
            "pending_intents": sorted(
                k
                for k, v in intents.items()
                if isinstance(v, dict) and v.get("status") not in ("DONE", "FAILED")
            ),
            "position": Decimal(str((position or {}).get("quantity", 0))),
            "coherence_checked": coherence.checked,
            "coherence_mismatches": [f"{m.key}:{m.kind}" for m in coherence.mismatches],
            "missing_in_hot": missing_in_hot,
            "hot_set": hot_set,
        }

    def guard_violations(self, orders: list[Order], fills: list[Fill]) -> list[str]:
        """Orders sent by a fenced writer, without the lease, after a halt, while HALTED or past a risk guard
        (REDUCE_ONLY, RISK_MAX_POSITION_SIZE; module doc).

        Whether a fenced writer SENT an order is decided by the exchange: an order_placed event written after
        the process's ``fenced`` event may be the late answer to a request it sent while it still held the
        lease (a SIGSTOP between send and answer); it is a violation when the exchange created the order after
        a newer holder took the lease, and a note (``late_acks``) otherwise."""
        found: list[str] = []
        transitions: list[tuple[datetime, str]] = []
        placed: list[tuple[datetime, str, str]] = []
        after_fence: list[tuple[str, str]] = []
        took: dict[str, tuple[int, datetime]] = {}  # bot -> (epoch, when)
        intents: dict[str, set[str]] = {}
        reduce_only: dict[str, str] = {}  # client order id -> the process that wrote its intent REDUCE_ONLY
        for bot in self.bots:
            holding = fenced = halted = False
            own: list[tuple[datetime, str]] = []  # this process's trading states (risk engine), by cycle time
            written: list[tuple[datetime, str]] = []  # its intents, by cycle time
            for event in bot.events():
                kind = event.get("type")
                if kind == EventType.CYCLE_ERROR and event.get("policy") == "halt":
                    halted = True
                elif kind == EventType.LEASE:
                    if event.get("kind") in HOLDING:
                        holding = True
                        took[bot.name] = (int(event.get("epoch") or 0), ts_of(event) or now())
                    elif event.get("kind") == "fenced":
                        holding, fenced = False, True
                    elif event.get("kind") == "released":
                        holding = False
                elif kind == EventType.STATE_TRANSITION:
                    moment = ts_of(event, "at") or ts_of(event) or now()
                    transitions.append((moment, str(event.get("to_state"))))
                    own.append((moment, str(event.get("to_state"))))
                elif kind == EventType.ORDER_INTENT:
                    intents.setdefault(bot.name, set()).add(str(event.get("client_order_id")))
                    written.append((ts_of(event) or now(), str(event.get("client_order_id"))))
                elif kind == EventType.ORDER_PLACED:
                    coid = str(event.get("client_order_id"))
                    if fenced:
                        after_fence.append((bot.name, coid))
                    elif halted:
                        found.append(f"{bot.name} placed {coid} after its loop halted")
                    elif not holding:
                        found.append(f"{bot.name} placed {coid} without holding the lease")
                    placed.append((ts_of(event) or now(), bot.name, coid))
            # A cycle's transitions are recorded after its orders but carry the cycle's time, and the engine
            # judged the orders with them: the state an intent was written in is the last one at or before it.
            own.sort(key=lambda pair: pair[0])
            for at, coid in written:
                states = [state for when, state in own if when <= at]
                if states and states[-1] == "HALTED":
                    found.append(f"{bot.name} wrote the intent of {coid} while HALTED")
                elif states and states[-1] == "REDUCE_ONLY":
                    reduce_only[coid] = bot.name
        found += self.past_risk_guards(orders, fills, reduce_only)
        transitions.sort()
        for at, name, coid in placed:
            before = [state for when, state in transitions if when < at]
            if before and before[-1] == "HALTED":
                found.append(f"{name} placed {coid} while HALTED")
        created = {o.client_order_id: o.created_at for o in orders if o.created_at is not None}
        lost_at: dict[str, datetime] = {}
        for name, (epoch, _) in took.items():
            newer = [when for other, (e, when) in took.items() if other != name and e > epoch]
            if newer:
                lost_at[name] = min(newer)

        def sent_late(name: str, coid: str) -> str | None:
            at, lost = created.get(coid), lost_at.get(name)
            if at is None or lost is None or at < lost:
                return None
            return (
                f"{coid}: sent by {name} after a newer holder took the lease (created at the exchange "
                f"{at.time()}, lease taken over {lost.time()})"
            )

        for name, coid in after_fence:
            late = sent_late(name, coid)
            if late is not None:
                found.append(late)
            elif coid not in created:
                found.append(f"{name} placed {coid} after its lease was fenced (not at the exchange)")
            else:
                self.late_acks[coid] = (
                    f"{name}: order_placed written after its fence, but the exchange created the order at "
                    f"{created[coid].time()}, before the takeover at {lost_at[name].time() if name in lost_at else '-'}"
                    ": sent while it held the lease, answered after its pause"
                )
        for name, ids in intents.items():
            found += [late for coid in ids if (late := sent_late(name, coid)) is not None]
        return sorted(set(found))

    @staticmethod
    def past_risk_guards(orders: list[Order], fills: list[Fill], reduce_only: dict[str, str]) -> list[str]:
        """Judged by the exchange, order by order (creation time): an order whose intent was written in
        REDUCE_ONLY that did not reduce the position the exchange held just before it (opposite side, at most
        that size); the position after an order's fills above RISK_MAX_POSITION_SIZE."""
        found: list[str] = []
        filled: dict[str, Decimal] = {}
        for fill in fills:
            filled[fill.order_id] = filled.get(fill.order_id, Decimal(0)) + fill.side.sign * fill.quantity
        position = Decimal(0)
        dated = [o for o in orders if o.created_at is not None]
        for order in sorted(dated, key=lambda o: (o.created_at, o.order_id)):
            coid = order.client_order_id
            if coid in reduce_only:
                reduces = position != 0 and order.side.sign * position < 0 and order.quantity <= abs(position)
                if not reduces:
                    found.append(
                        f"{reduce_only[coid]} sent {coid} ({order.side} {order.quantity}) in REDUCE_ONLY "
                        f"with the exchange's position at {position}: not reducing"
                    )
            above = abs(position) > MAX_POSITION
            position += filled.get(order.order_id, Decimal(0))
            if abs(position) > MAX_POSITION and not above:  # each time it goes above, not every order after
                found.append(
                    f"the exchange's position {position} after {coid} is above RISK_MAX_POSITION_SIZE "
                    f"{MAX_POSITION}"
                )
        return found

    def double_submits(self) -> list[str]:
        by: dict[str, set[str]] = {}
        for bot in self.bots:
            for event in bot.placed():
                by.setdefault(str(event["client_order_id"]), set()).add(bot.name)
        return [
            f"{coid} placed by {', '.join(sorted(names))}" for coid, names in by.items() if len(names) > 1
        ]

    def evaluate(
        self,
        first: tuple[list[Order], list[Fill]],
        state: dict[str, Any],
        second: tuple[list[Order], list[Fill]],
    ) -> dict[str, list[str]]:
        orders1, fills1 = first
        orders2, fills2 = second
        stored = state["live_fills"] | state["archived_fills"]
        by_coid: dict[str, list[str]] = {}
        for order in orders2:  # one entry per exchange order id (exchange_view)
            by_coid.setdefault(order.client_order_id, []).append(order.order_id)
        at_exchange2 = {f.trade_id for f in fills2}
        expected = derive_positions([f for f in fills2 if f.trade_id in stored]).get(BTC)
        expected_qty = expected.quantity if expected else Decimal(0)
        found = {
            "duplicates": [
                f"{coid} at the exchange as {len(ids)} orders ({', '.join(ids)})"
                for coid, ids in by_coid.items()
                if len(ids) > 1
            ]
            + self.double_submits()
            + [
                f"fill {t} stored live and archived"
                for t in sorted(state["live_fills"] & state["archived_fills"])
            ],
            "lost": [
                f"exchange fill {f.trade_id} (order {f.order_id}) not stored"
                for f in fills1
                if f.trade_id not in stored
            ]
            + [f"stored fill {t} unknown to the exchange" for t in sorted(stored - at_exchange2)]
            + [
                f"exchange order {o.client_order_id} without its intent in state"
                for o in orders1
                if o.client_order_id not in state["intents"]
            ],
            "incoherent": [f"{m} (HOT vs WARM)" for m in state["coherence_mismatches"]]
            + (
                [f"{state['missing_in_hot']} key(s) of WARM's hot set missing from HOT"]
                if state.get("missing_in_hot", 0) > 0
                else []
            ),
            "guard_violations": self.guard_violations(orders2, fills2),
        }
        if state["position"] != expected_qty:
            # by the difference, which a lasting gap keeps from one attempt to the next
            found["incoherent"].append(
                f"position {BTC}: stored minus derived from the exchange's fills = "
                f"{state['position'] - expected_qty}"
            )
        return found

    async def check(self, label: str, *, final: bool = False) -> dict[str, Any]:
        """Check the invariants (see the module doc); record what was found under ``label``.

        While the bots run, the state is read from another process between two of the writer's batches: a fill
        not booked yet, or a HOT copy read just before the writer refreshed it, is looked at again a cycle
        later, until --check-timeout. What is lost or incoherent is recorded only when the last two attempts
        both found it (a gap that stays); duplicates and guard violations never heal and count at once. The
        final check runs on stopped bots: one attempt, exact."""
        started = time.monotonic()
        deadline = started + self.args.check_timeout
        attempts = 0
        error: str | None = None
        found: dict[str, list[str]] = {k: [] for k in CATEGORIES}
        before: dict[str, list[str]] = {}
        state: dict[str, Any] = {}
        first: tuple[list[Order], list[Fill]] = ([], [])
        while True:
            attempts += 1
            try:
                moment = now()
                first = await self.exchange()
                if not final:
                    await self.wait_cycles_after(moment, 2, max(1.0, deadline - time.monotonic()))
                state = await self.state_view(with_intents=final)
                second = first if final else await self.exchange()
                before, found = found, self.evaluate(first, state, second)
                error = None
            except Exception as exc:  # a check that could not run is reported, and retried until the bound
                error = f"{type(exc).__name__}: {exc}"
            settled = error is None and not found["lost"] and not found["incoherent"]
            if final or settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(self.args.interval)
        if not final and attempts > 1:
            for category in ("lost", "incoherent"):
                found[category] = [item for item in found[category] if item in before.get(category, [])]
        if error is not None:
            self.errors.append(f"check {label}: could not run: {error}")
        for category, items in found.items():
            for item in items:
                self.found[category].setdefault(item, label)
        result = {
            "label": label,
            "attempts": attempts,
            "ms": round((time.monotonic() - started) * 1000),
            "orders": len(first[0]),
            "fills": len(first[1]),
            "error": error,
            "coherence_checked": state.get("coherence_checked"),
            "pending_intents": state.get("pending_intents"),
            "hot_set": state.get("hot_set"),  # the end: keys WARM puts in the hot set, all checked in HOT
            **{category: items for category, items in found.items()},
        }
        self.checks.append(result)
        return result

    # --- the run ---------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def progress(self, fault: Fault) -> str:
        check = fault.check
        holder = self.holder()
        broken = {k: len(check.get(k) or []) for k in ALL_CATEGORIES}
        verdict = "ok" if fault.settled and not any(broken.values()) and not check.get("error") else "FAILED"
        details = [f"{k} {v}" for k, v in broken.items() if v]
        if check.get("error"):
            details.append(f"check: {check['error']}")
        if not fault.settled:
            details.append("not settled")
        gone = ", ".join(f"{e['bot']} {e['cause']}({e['code']})" for e in fault.exits) or "-"
        params = " ".join(f"{k}={v}" for k, v in fault.params.items() if k != "client_order_id")
        return (
            f"fault {fault.n:>3} +{fault.at_seconds or 0:6.0f}s {fault.kind:<17} {params:<32} "
            f"detect {d.fmt(fault.detect_ms):>7} ms  recover {d.fmt(fault.recover_ms):>7} ms  exits {gone}  "
            f"holder {holder.name if holder else '-'}  orders {check.get('orders')} fills {check.get('fills')}"
            f" -> {verdict}{': ' + '; '.join(details) if details else ''}"
        )

    async def one_fault(self, fault: Fault) -> None:
        started = time.monotonic()
        fault.at_seconds = round(self.elapsed(), 1)
        first_exit = len(self.exits)
        try:
            await self.inject(fault)
            await self.settle(fault)
            try:
                await self.ready(self.args.settle_timeout)
            except SoakError as exc:
                fault.settled = False
                fault.notes.append(str(exc))
                raise
            finally:
                self.measure(fault)
            fault.check = await self.check(f"fault {fault.n} {fault.kind}")
            if fault.target == "s3":
                failed = self.checkpoints_failed(fault)
                fault.check[CHECKPOINTS_FAILED] = failed
                for item in failed:
                    self.found[CHECKPOINTS_FAILED].setdefault(item, f"fault {fault.n} {fault.kind}")
        finally:
            await self.collect_exits()
            fault.exits = self.exits[first_exit:]  # every exit from the fault's start to the end of its check
            fault.seconds = round(time.monotonic() - started, 1)
            self.faults.append(fault)
        d.console.print(self.progress(fault))

    async def run(self) -> None:
        primary = self.spawn(HOMES[0], standby=False)
        try:
            await primary.wait_cycles(2, within=120)
        except (RuntimeError, TimeoutError) as exc:
            output = primary.out_part.lines() if primary.out_part is not None else []
            raise SoakError(f"the primary did not start ({exc}): {' | '.join(output[-3:])}") from None
        self.spawn(HOMES[1], standby=True)
        self.supervisor = asyncio.create_task(self.supervise(), name="chaos-supervisor")
        await self.ready(120)
        self.started = time.monotonic()
        end = self.started + self.args.minutes * 60
        d.console.print(
            f"chaos soak: {self.args.minutes:g} min, a fault every ~{self.args.fault_every:g} s, seed "
            f"{self.args.seed}, kinds {','.join(self.args.kinds)}; interval {self.args.interval}s; bots "
            f"{', '.join(b.name for b in self.live())}; their files -> {d.BENCH_DIR / (self.name + '.bots')}"
            + (
                f"; HA: Redis master + replica + 3 Sentinels, PostgreSQL primary + synchronous replica "
                f"(--ha-sync {self.args.ha_sync})"
                if self.args.ha
                else ""
            )
        )
        baseline = await self.check("start")
        if any(baseline[k] for k in CATEGORIES):
            d.console.print(
                f"start: {', '.join(f'{k} {len(baseline[k])}' for k in CATEGORIES if baseline[k])}"
            )
        next_at = self.started + self.rng.uniform(0.5, 1.5) * self.args.fault_every
        while True:
            wait = next_at - time.monotonic()
            if time.monotonic() + max(wait, 0) >= end:
                break
            if wait > 0:
                await asyncio.sleep(wait)
            fault = self.deal()
            gap = self.rng.uniform(0.5, 1.5) * self.args.fault_every
            start = time.monotonic()
            try:
                await self.one_fault(fault)
            except (
                Exception
            ) as exc:  # SoakError, or a harness error: no more faults, the end is still checked
                self.errors.append(f"fault {fault.n} {fault.kind}: {type(exc).__name__}: {exc}")
                d.console.print(
                    f"fault {fault.n:>3} {fault.kind}: {type(exc).__name__}: {exc}; no more faults"
                )
                break
            next_at = start + gap

    async def stop_supervisor(self) -> None:
        if self.supervisor is not None:
            self.supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.supervisor
            self.supervisor = None

    async def finish(self) -> dict[str, Any]:
        """Stop the bots (the standbys first, so nobody takes over), then the exact check."""
        await self.stop_supervisor()
        await self.collect_exits()
        holder = self.holder()
        for bot in sorted(self.live(), key=lambda b: b is holder):
            bot.stopped_by_soak = True
            await bot.terminate(60)
        await self.collect_exits()
        return await self.check("end", final=True)

    def reap(self) -> None:
        if self.supervisor is not None:
            self.supervisor.cancel()
        for server in list(self.paused):
            with contextlib.suppress(Exception):
                server.send_signal(signal.SIGCONT)
        for bot in self.bots:
            bot.reap()

    def keep_files(self) -> None:
        """Copy every bot's events, log and output out of the temp dir (var/benchmarks/chaos.bots/; --ha:
        chaos_ha.bots/)."""
        bots_dir = d.BENCH_DIR / f"{self.name}.bots"
        shutil.rmtree(bots_dir, ignore_errors=True)
        bots_dir.mkdir(parents=True, exist_ok=True)
        for home in HOMES:
            base = self.root / "bots" / home
            for source, name in (
                (base / "data" / "events.jsonl", "events.jsonl"),
                (base / "logs" / "perps_bot.log", "perps_bot.log"),
                (base / "output.txt", "output.txt"),
            ):
                if source.exists():
                    shutil.copyfile(source, bots_dir / f"{home}.{name}")


# --- report -----------------------------------------------------------------------------------------------


def by_kind(faults: list[Fault], kinds: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        rows = [f for f in faults if f.kind == kind]
        detect = [f.detect_ms for f in rows]
        recover = [f.recover_ms for f in rows]
        out[kind] = {
            "count": len(rows),
            "detected": sum(v is not None for v in detect),
            "detect_ms_p50": d.med(detect),
            "detect_ms_max": d.top(detect),
            "recover_ms_p50": d.med(recover),
            "recover_ms_max": d.top(recover),
            "not_settled": sum(not f.settled for f in rows),
            "violations": sum(sum(len(f.check.get(k) or []) for k in ALL_CATEGORIES) for f in rows),
        }
    return out


def report(soak: Soak, final: dict[str, Any], args: argparse.Namespace) -> int:
    kinds = list(args.kinds)
    table = by_kind(soak.faults, kinds)
    d.console.print(
        d.table(
            f"By fault kind (ms; detect from the fault's start, recover from its end -- see --help; seed {args.seed})",
            ["kind", "count", "detected", "detect p50", "detect max", "recover p50", "recover max",
             "not settled", "violations"],
            [
                [k, v["count"], v["detected"], v["detect_ms_p50"], v["detect_ms_max"], v["recover_ms_p50"],
                 v["recover_ms_max"], v["not_settled"], v["violations"]]
                for k, v in table.items()
            ],
        )
    )  # fmt: skip
    causes = Counter(e["cause"] for e in soak.exits)
    totals = {
        "minutes": args.minutes,
        "faults": len(soak.faults),
        "restarts": soak.restarts,
        "orders": final.get("orders"),
        "fills": final.get("fills"),
        **{k: len(v) for k, v in soak.found.items()},
        "exits": dict(causes),
        "errors": len(soak.errors),
    }
    d.console.print(
        f"bot exits: {', '.join(f'{k} {v}' for k, v in causes.items()) or 'none'}; pending intents at the end: "
        f"{len(final.get('pending_intents') or [])}; checks: {len(soak.checks)}; late acks of a paused holder "
        f"(sent with the lease, answered after its fence): {len(soak.late_acks)}"
    )
    for category, items in soak.found.items():
        for item, where in list(items.items())[:20]:
            d.console.print(f"[bold red]{category}[/]: {item} (first seen: {where})")
    for error in soak.errors[:20]:
        d.console.print(f"[bold red]error[/]: {error}")
    for entry in soak.exits:
        if entry["cause"] in UNEXPECTED:
            d.console.print(
                f"[yellow]{entry['cause']}[/]: {entry['bot']} exit {entry['code']}: {entry.get('reason')}"
            )
    path = d.write_json(
        NAME,
        {
            "settings": {k: v for k, v in vars(args).items()},
            "command": " ".join(["scripts/benchmarks/chaos_soak.py", *sys.argv[1:]]),
            "totals": totals,
            "by_kind": table,
            "faults": [f.row() for f in soak.faults],
            "exits": soak.exits,
            "checks": soak.checks,
            "violations": {
                k: [{"what": i, "first_seen": w} for i, w in v.items()] for k, v in soak.found.items()
            },
            "errors": soak.errors,
            "late_acks": soak.late_acks,
        },
        d.BENCH_DIR / f"{soak.name}.json",
    )
    d.console.print(f"wrote {path}")
    failed = sum(len(v) for v in soak.found.values()) + len(soak.errors)
    print(
        f"RESULT minutes={args.minutes:g} faults={len(soak.faults)} restarts={soak.restarts} "
        f"orders={final.get('orders')} fills={final.get('fills')} duplicates={len(soak.found['duplicates'])} "
        f"lost={len(soak.found['lost'])} incoherent={len(soak.found['incoherent'])} "
        f"guard_violations={len(soak.found['guard_violations'])} "
        f"checkpoints_failed={len(soak.found[CHECKPOINTS_FAILED])}",
        flush=True,
    )
    return 1 if failed else 0


# --- setup ------------------------------------------------------------------------------------------------


def output_name(args: argparse.Namespace) -> str:
    """chaos (var/benchmarks/chaos.json, .log, .bots/) or, with --ha, chaos_ha."""
    return f"{NAME}_ha" if getattr(args, "ha", False) else NAME


def bot_env(
    services: dict[str, Any], sim: RunningSimulator, args: argparse.Namespace, tag: str
) -> dict[str, str]:
    redis, postgres = services["redis"], services["postgres"]
    if isinstance(redis, RedisSentinelSet):  # --ha: the master is the one the sentinels name
        hot = {"REDIS_SENTINELS": redis.env_value, "REDIS_SENTINEL_MASTER": SENTINEL_MASTER}
    else:
        hot = {"REDIS_URL": redis.url}
    return {
        "COINBASE_BASE_URL": sim.base_url,
        "COINBASE_KEY_FILE": str(sim.key_file),
        "COINBASE_CA_FILE": str(sim.ca_path),
        "COINBASE_WS_URL": str(sim.ws_url),  # the bots quote from the feed, REST while it is down
        **hot,
        # --ha: both servers, target_session_attrs=read-write (the client connects to whichever is primary)
        "DATABASE_URL": postgres.multi_host_url()
        if isinstance(postgres, PostgresReplicaPair)
        else postgres.url,
        "S3_ENDPOINT_URL": services["s3"].url,
        "S3_BUCKET": d.S3_DRILL_BUCKET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": S3_TEST_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": S3_TEST_CREDENTIALS["aws_secret_access_key"],
        "PERPS_BOT_ID": f"chaos-{tag}",
        "PERPS_CLIENT_ID_PREFIX": f"{tag}-",
        "PERPS_SYMBOLS": "BTC-USD",
        "PERPS_INTERVAL_SECONDS": str(args.interval),
        "PERPS_STRATEGY": std.FLIPPER,
        "CHECKPOINT_INTERVAL_SECONDS": str(args.checkpoint_interval),
        "RISK_MAX_ORDERS_PER_MINUTE": "none",
        "RISK_MAX_POSITION_SIZE": str(MAX_POSITION),
        **d.QUIET_RISK_ENV,
    }


async def soak(args: argparse.Namespace) -> int:
    for var in ("REDIS_URL", "DATABASE_URL", "S3_ENDPOINT_URL"):
        if os.environ.get(var):
            raise d.DrillRefused(
                f"{var} is set: the chaos soak kills and pauses its Redis, PostgreSQL and S3 servers, and a server "
                f"given by URL is not ours to break. Unset {var} (the soak starts throwaway ones)."
            )
    std.register_flipper()  # the soak loads the bots' settings (its state reader): the name must be known
    d.configure_logging(output_name(args))
    services: dict[str, Any] = {}
    sim: RunningSimulator | None = None
    runner: Soak | None = None
    with tempfile.TemporaryDirectory(prefix="perps-chaos-") as tmp:
        root = Path(tmp)
        # Restarted bots start with their bytecode (as a deployed bot does), not compiling every module.
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        try:
            if args.ha:
                services["redis"] = RedisSentinelSet(3)
                services["postgres"] = PostgresReplicaPair(
                    durable=True,
                    synchronous=True,
                    strict=args.ha_sync == "strict",
                    settings=HA_POSTGRES_SETTINGS,
                )
            else:
                services["redis"] = RedisServer()
                services["postgres"] = PostgresServer(durable=True)
            services["s3"] = c.MotoProcess(root / "s3")
            # side by side (a few seconds less), every start finished before any error is raised: none still
            # starting when the finally below stops them
            started = await asyncio.gather(
                *(asyncio.to_thread(services[name].start) for name in ("redis", "postgres", "s3")),
                return_exceptions=True,
            )
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            await asyncio.to_thread(services["s3"].create_bucket, d.S3_DRILL_BUCKET)
            sim = run_simulator_in_thread(
                SimulatorConfig(state_dir=root / "sim", rate_limit_per_second=None, tick_seconds=0.25)
            )
            tag = uuid.uuid4().hex[:6]
            runner = Soak(args, root, services, sim, bot_env(services, sim, args, tag), f"{tag}-")
            final: dict[str, Any] = {}
            try:
                async with asyncio.timeout(args.minutes * 60 + 600):
                    try:
                        await runner.run()
                    except (SoakError, TimeoutError) as exc:
                        runner.errors.append(f"{type(exc).__name__}: {exc}")
                        d.console.print(f"[bold red]soak stopped[/]: {exc}")
                    final = await runner.finish()
            except TimeoutError:
                runner.errors.append(f"the soak exceeded its bound of {args.minutes * 60 + 600:.0f}s")
            return report(runner, final, args)
        finally:
            if runner is not None:
                runner.reap()
                with contextlib.suppress(Exception):
                    runner.keep_files()
            if sim is not None:
                sim.stop()
            for name in ("s3", "postgres", "redis"):
                if name in services:
                    stop_service(services[name])


def stop_service(service: Any) -> None:
    """Stop a server of the soak (woken first: it may be SIGSTOPped); a PostgreSQL cluster is also removed."""
    servers = [service.primary, service.replica] if isinstance(service, PostgresReplicaPair) else [service]
    for server in servers:
        with contextlib.suppress(Exception):
            server.send_signal(signal.SIGCONT)
    with contextlib.suppress(Exception):
        if isinstance(service, PostgresServer | PostgresReplicaPair):
            service.cleanup()
        else:
            service.stop()  # a RedisSentinelSet wakes its nodes itself


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = d.arg_parser(__doc__)
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="how long faults are injected (default 30)"
    )
    parser.add_argument(
        "--fault-every", type=float, default=20.0, help="mean seconds between fault starts (default 20)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seeds the moments, kinds and parameters (default 1)"
    )
    parser.add_argument(
        "--kinds",
        type=lambda s: [k.strip() for k in s.split(",") if k.strip()],
        default=None,
        help=f"comma-separated fault kinds (default all: {','.join(k for k in KINDS if k not in HA_KINDS)}; "
        f"with --ha also {','.join(HA_KINDS)})",
    )
    parser.add_argument(
        "--ha",
        action="store_true",
        help="the stores in the HA topology: Redis master + replica + 3 Sentinels (the bots on REDIS_SENTINELS), "
        "PostgreSQL primary + synchronous streaming replica (a multi-host DATABASE_URL); adds the kinds "
        f"{' and '.join(HA_KINDS)}; writes {NAME}_ha.json",
    )
    parser.add_argument(
        "--ha-sync",
        choices=("available", "strict"),
        default="available",
        help="--ha: synchronous_standby_names '*' on the primary whenever its replica streams; a promoted "
        "server commits without a synchronous standby until its new replica streams (available, the default: "
        "Patroni's synchronous_mode) or waits for it, every commit stalling meanwhile (strict: the setting on "
        "every server, Patroni's synchronous_mode_strict)",
    )
    parser.add_argument(
        "--interval", type=float, default=0.5, help="the bots' cycle interval in s (default 0.5)"
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=int,
        default=10,
        help="the bots' CHECKPOINT_INTERVAL_SECONDS: COLD traffic the S3 faults can hit (default 10)",
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=60.0, help="bound of settling after a fault, s (default 60)"
    )
    parser.add_argument(
        "--check-timeout", type=float, default=30.0, help="bound of one invariant check, s (default 30)"
    )
    parser.add_argument(
        "--poll-ms", type=float, default=50.0, help="health.json polling interval (default 50)"
    )
    args = parser.parse_args(argv)
    if args.kinds is None:
        args.kinds = [k for k in KINDS if args.ha or k not in HA_KINDS]
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        parser.error(f"--kinds: unknown {', '.join(unknown)} (choose from {', '.join(KINDS)})")
    if not args.ha and (need := [k for k in args.kinds if k in HA_KINDS]):
        parser.error(f"--kinds: {', '.join(need)} need --ha (a replica to promote)")
    if args.minutes <= 0 or args.fault_every <= 0:
        parser.error("--minutes and --fault-every must be positive")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    d.run_main(lambda: soak(arguments), "chaos soak")
