#!/usr/bin/env python3
"""PostgreSQL promotion drill: SIGKILL the primary under a running bot, promote the streaming replica, measure
how long WARM takes to follow and how many acknowledged writes the promotion lost, asynchronous vs synchronous.

    .venv/bin/python scripts/benchmarks/postgres_promotion_drill.py --rounds 1          # async and sync
    .venv/bin/python scripts/benchmarks/postgres_promotion_drill.py --rounds 3 --modes sync --lag-ms 500

Each round starts a PostgreSQL primary + streaming replica (tests/fixtures/ha.py: initdb, pg_basebackup -R,
durable: fsync and synchronous_commit on) with ``synchronous_standby_names`` = '' (async) or '*' (sync), and a
dev-profile bot (in-process simulated exchange, ``Ladder``: buys 12 steps, then sells them back a step a cycle;
``PERPS_WARM_OUTAGE_MODE`` reduce_only, the default) on a throwaway Redis (HOT) and the multi-host
``DATABASE_URL=postgresql://...@primary,replica/...?target_session_attrs=read-write``. A writer writes one
record at a time through the bot (``set_state``) and keeps what was acknowledged. Once the bot is long and
selling down (>= 10 steps left: a position to reduce):

1. the replica falls behind for ``--lag-ms`` (default 300): it is SIGSTOPped and its WAL sender terminated on
   the primary (a stopped replica's kernel buffers would otherwise still deliver the WAL); in async mode the
   primary keeps acknowledging commits the replica never gets, in sync mode commits wait for the replica;
2. the primary is SIGKILLed (``t_kill``), the replica SIGCONTed and promoted with ``pg_ctl promote -w`` right
   away, as Patroni would (``promote_ms`` = kill -> promote returned);
3. the bot follows on its own: ``warm_up_ms`` = kill -> the first record the writer wrote after the kill is
   on the promoted replica (polled every 10 ms on a connection of the drill's own);
4. ``writes_lost`` = acknowledged writes that are not on the new primary once the bot settled (target: 0 in
   sync mode; async mode loses what the replica had not received), ``cycle_errors`` (failed cycles from the
   kill to two cycles after WARM is back), ``orders_while_down`` / ``refused_while_down`` (orders the bot
   placed / the risk engine refused while WARM was down as the bot saw it: from its first journaled write --
   in sync mode a commit already waits for the stopped replica during the lag -- or the kill, whichever came
   first, to ``warm_up``; target > 0 in each mode: the bot had a position to reduce), ``position_steps`` (the
   position then, in ladder steps), ``coherent`` (``verify_coherence``: HOT against the new WARM).

The journal's replay cost (<= 2x the same records written directly) is ``postgres_journal_drill.py``'s target.
REDIS_URL / DATABASE_URL are ignored: the drill owns every server. Writes
var/benchmarks/postgres_promotion_drill.json and ends with a RESULT line; exit 1 if sync mode lost a write or
a mode placed no order while WARM was down.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _drill as d
import asyncpg
from tests.fixtures.ha import PostgresReplicaPair
from tests.fixtures.services import RedisServer

from bot_v2.state import StateCategory

NAME = "postgres_promotion_drill"
ROUND_TIMEOUT_SECONDS = 240


class Writer:
    """One ``set_state`` at a time through the bot; keeps the indexes that were acknowledged."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.next = 0
        self.acked: list[int] = []
        self.failed = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def key(i: int) -> str:
        return f"drill:w:{i:08d}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Ask the loop to end after its current write (a flag, not a cancel: a write cancelled mid-way can
        leave the state layer's outage path guessing); bounded, so a hung write cannot hang the drill."""
        self._stopping = True
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=10)
        if not done:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)
            d.console.print("[yellow]the writer did not stop within 10 s: cancelled[/]")

    async def _run(self) -> None:
        while not self._stopping:
            i, self.next = self.next, self.next + 1
            try:
                await self.state.set_state(self.key(i), i, StateCategory.ORDERS)
            except Exception:  # WARM down and no journal to take it: not acknowledged
                self.failed += 1
                await asyncio.sleep(0.005)
            else:
                self.acked.append(i)
            await asyncio.sleep(0.002)


async def rows_on(url: str, bot_id: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT key FROM state_records WHERE bot_id = $1 AND key LIKE 'drill:w:%'", bot_id
        )
    finally:
        await conn.close()
    return {r["key"] for r in rows}


async def one_round(
    redis: RedisServer, args: argparse.Namespace, mode: str, n: int, root: Path
) -> dict[str, Any]:
    poll = args.poll_ms / 1000
    pair = PostgresReplicaPair(durable=True)
    await asyncio.to_thread(pair.start)
    try:
        await asyncio.to_thread(pair.set_synchronous, mode == "sync")
        bot_id = f"drill-{uuid.uuid4().hex[:8]}"
        services = d.Services(redis, pair.primary)
        # the ladder trades every cycle: the 30-per-minute order-rate guard would stop it before the outage
        env = d.drill_env(
            services, root / f"data-{mode}-{n}", bot_id, args.interval, RISK_MAX_ORDERS_PER_MINUTE="none"
        )
        env["DATABASE_URL"] = pair.multi_host_url()
        settings = d.drill_settings(env, root)
        replica_url = f"postgresql://postgres@127.0.0.1:{pair.replica.port}/postgres"
        ladder = d.Ladder()
        async with d.running_bot(settings, poll, ladder) as bot:
            state = bot.state
            if args.keys:
                await d.seed(state, args.keys)
            baseline = await bot.poller.wait_cycles(args.baseline_cycles, ok=True)
            writer = Writer(state)
            writer.start()
            try:
                await asyncio.sleep(0.2)
                await d.wait_until(d.unwinding(state, ladder), 60, 0.002, "a long position being sold down")
                await asyncio.to_thread(pair.replica.send_signal, signal.SIGSTOP)
                await asyncio.to_thread(
                    pair.psql, pair.primary, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication"
                )
                down: tuple[float, float] | None = None  # (orders, refused) when the bot saw WARM go down
                position_steps = None
                lag_ends = time.monotonic() + args.lag_ms / 1000
                while time.monotonic() < lag_ends:  # sync mode: commits wait for the stopped replica
                    if down is None and state.degraded_warm:
                        down = (bot.orders_placed(), d.counter_total(bot.metrics.orders, outcome="denied"))
                        position_steps = float(await d.position(state) / ladder.quantity)
                    await asyncio.sleep(poll)
                if down is None:
                    down = (bot.orders_placed(), d.counter_total(bot.metrics.orders, outcome="denied"))
                    position_steps = float(await d.position(state) / ladder.quantity)
                orders_before = bot.orders_placed()
                t_kill = time.monotonic()
                first_after_kill = writer.next
                await asyncio.to_thread(pair.primary.kill)
                await asyncio.to_thread(pair.replica.send_signal, signal.SIGCONT)
                await asyncio.to_thread(pair.promote)
                t_promoted = time.monotonic()
                watcher = await asyncpg.connect(replica_url)
                try:

                    async def landed() -> bool:
                        top = await watcher.fetchval(
                            "SELECT max(key) FROM state_records WHERE bot_id = $1 AND key LIKE 'drill:w:%'",
                            bot_id,
                        )
                        return top is not None and top >= Writer.key(first_after_kill)

                    t_up = await d.wait_until(landed, 60, poll, "a write on the promoted replica")
                    orders_down = bot.orders_placed() - down[0]
                    refused_down = int(d.counter_total(bot.metrics.orders, outcome="denied") - down[1])
                    orders_from_kill = bot.orders_placed() - orders_before
                finally:
                    await watcher.close()
                after = await bot.poller.wait_cycles(2, after=t_up)
            finally:
                await writer.stop()
            h = state.health
            await d.wait_until(  # a journal of the outage (if the state layer has one) is replayed first
                lambda: getattr(h(), "journal_records", 0) == 0, 60, poll, "the journal replayed"
            )
            present = await rows_on(replica_url, bot_id)
            lost = [i for i in writer.acked if Writer.key(i) not in present]
            coherence = await state.verify_coherence()
            errors = [s for s in bot.poller.since(t_kill) if not s.ok and s.seen <= after[-1].seen]
            return {
                "mode": mode,
                "round": n,
                "lag_ms": args.lag_ms,
                "promote_ms": d.ms(t_promoted - t_kill),
                "warm_up_ms": d.ms(t_up - t_kill),
                "promoted_to_up_ms": d.ms(t_up - t_promoted),
                "writes_acked": len(writer.acked),
                "writes_failed": writer.failed,
                "writes_lost": len(lost),
                "lost_sample": [Writer.key(i) for i in lost[:3]],
                "orders_while_down": orders_down,
                "refused_while_down": refused_down,
                "orders_kill_to_up": orders_from_kill,
                "position_steps": position_steps,
                "coherent": coherence.ok,
                "coherence_mismatches": coherence.mismatch_count,
                "cycle_errors": len(errors),
                "error_messages": sorted({s.message for s in errors})[:3],
                "healthy": d.latency(baseline),
            }
    finally:
        await asyncio.to_thread(pair.cleanup)


async def drill(args: argparse.Namespace) -> int:
    log = d.configure_logging(NAME)
    d.console.print(
        f"postgres promotion drill: modes {','.join(args.modes)}, {args.rounds} round(s) each, replica lag "
        f"{args.lag_ms} ms, interval {args.interval}s, bot log {log}"
    )
    redis = RedisServer()
    rounds: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(redis.start)
        with tempfile.TemporaryDirectory(prefix="perps-drill-") as tmp:
            for n in range(1, args.rounds + 1):
                for mode in args.modes:  # interleaved: the two modes see the same machine load
                    # bounded: a round that hangs ends the drill with its servers cleaned up, not forever
                    round_ = one_round(redis, args, mode, n, Path(tmp))
                    rounds.append(await asyncio.wait_for(round_, ROUND_TIMEOUT_SECONDS))
    finally:
        redis.stop()
    return report(rounds, args)


def report(rounds: list[dict[str, Any]], args: argparse.Namespace) -> int:
    columns = [
        "mode", "round", "promote ms", "WARM up ms", "promoted -> up ms", "acked", "failed", "lost",
        "position (steps)", "orders while down", "refused (grow)", "coherent", "cycle errors",
    ]  # fmt: skip
    rows = [
        [r["mode"], r["round"], r["promote_ms"], r["warm_up_ms"], r["promoted_to_up_ms"], r["writes_acked"],
         r["writes_failed"], r["writes_lost"], r["position_steps"], r["orders_while_down"],
         r["refused_while_down"], r["coherent"], r["cycle_errors"]]
        for r in rounds
    ]  # fmt: skip
    d.console.print(d.table("PostgreSQL primary SIGKILLed, replica promoted (per round)", columns, rows))
    summary: dict[str, Any] = {}
    for mode in args.modes:
        mine = [r for r in rounds if r["mode"] == mode]
        summary[mode] = {
            "warm_up_ms": {"median": d.med(r["warm_up_ms"] for r in mine), "max": d.top(r["warm_up_ms"] for r in mine)},
            "promote_ms": {"median": d.med(r["promote_ms"] for r in mine), "max": d.top(r["promote_ms"] for r in mine)},
            "writes_lost": sum(r["writes_lost"] for r in mine),
            "writes_acked": sum(r["writes_acked"] for r in mine),
            "orders_while_down": sum(r["orders_while_down"] for r in mine),
            "refused_while_down": sum(r["refused_while_down"] for r in mine),
            "cycle_errors": sum(r["cycle_errors"] for r in mine),
            "coherent": all(r["coherent"] for r in mine),
        }  # fmt: skip
    d.console.print(
        d.table(
            "Summary per mode",
            ["mode", "WARM up ms median", "max", "writes lost", "acked", "orders while down", "cycle errors"],
            [
                [
                    m,
                    s["warm_up_ms"]["median"],
                    s["warm_up_ms"]["max"],
                    s["writes_lost"],
                    s["writes_acked"],
                    s["orders_while_down"],
                    s["cycle_errors"],
                ]
                for m, s in summary.items()
            ],
        )
    )
    path = d.write_json(NAME, {"settings": vars(args), "rounds": rounds, "summary": summary})
    d.console.print(f"wrote {path}")
    ok = ("sync" not in summary or summary["sync"]["writes_lost"] == 0) and all(
        s["orders_while_down"] > 0 for s in summary.values()
    )
    fields: dict[str, Any] = {"lag_ms": args.lag_ms}
    for mode, s in summary.items():
        fields[f"{mode}_warm_up_ms"] = s["warm_up_ms"]["median"]
        fields[f"{mode}_warm_up_max_ms"] = s["warm_up_ms"]["max"]
        fields[f"{mode}_writes_lost"] = s["writes_lost"]
        fields[f"{mode}_orders_while_down"] = s["orders_while_down"]
        fields[f"{mode}_refused_while_down"] = s["refused_while_down"]
        fields[f"{mode}_cycle_errors"] = s["cycle_errors"]
    print(d.result_line(NAME, len(rounds), **fields, ok=ok), flush=True)
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = d.arg_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=1, help="rounds per mode (default 1)")
    parser.add_argument("--modes", default="async,sync", help="async, sync or both (default async,sync)")
    parser.add_argument(
        "--lag-ms", type=int, default=300, help="how long the replica falls behind (default 300)"
    )
    parser.add_argument("--keys", type=int, default=200, help="realistic records seeded first (default 200)")
    parser.add_argument("--interval", type=float, default=0.1, help="cycle interval in s (default 0.1)")
    parser.add_argument("--baseline-cycles", type=int, default=5, help="healthy cycles before the drill")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="polling interval (default 10)")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.rounds < 1 or not args.modes or set(args.modes) - {"async", "sync"}:
        parser.error("--rounds must be >= 1 and --modes a comma list of async / sync")
    return args


if __name__ == "__main__":
    raise SystemExit(asyncio.run(drill(parse_args())))
