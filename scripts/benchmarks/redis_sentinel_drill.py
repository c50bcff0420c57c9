#!/usr/bin/env python3
"""Redis Sentinel drill: SIGKILL the master under a running bot; Sentinel promotes the replica; measure.

    .venv/bin/python scripts/benchmarks/redis_sentinel_drill.py --rounds 3
    .venv/bin/python scripts/benchmarks/redis_sentinel_drill.py --rounds 1 --keys 200 --missed 20
    .venv/bin/python scripts/benchmarks/redis_sentinel_drill.py --rounds 3 --mode hang    # SIGSTOP the master

Each round starts its own Redis master + replica + 3 Sentinels (tests/fixtures/ha.py: quorum 2,
``--down-after-ms``, default 500) and a dev-profile bot (in-process simulated exchange, a strategy that trades
every cycle) with ``REDIS_SENTINELS`` / ``REDIS_SENTINEL_MASTER`` on a throwaway durable PostgreSQL (WARM).
The bot's state gets ``--keys`` realistic records. Then:

1. the replica is SIGSTOPped, the master's link to it closed (``CLIENT KILL TYPE replica``) and the drill
   rewrites ``--missed`` of those records through the bot: the master acknowledges them, the replica never
   sees them (asynchronous replication's window, made wide enough to see);
2. the master is SIGKILLed (``t_kill``) and the replica SIGCONTed; before Sentinel promotes it, the drill reads
   what the replica holds and counts the bot's keys it has OLDER than WARM or not at all (``replica_stale``:
   what the bot must repair, never serve);
3. Sentinel promotes the replica (``promoted_ms`` = kill -> the first sentinel names it); the bot follows on its
   own (nothing in the drill asks it to): ``hot_up_ms`` = kill -> HOT ``up`` with a new recovery (the hot set
   restored from WARM and verified); ``followed_ms`` = promotion -> HOT up (target: <= down-after + 500 ms);
4. all along, a reader asks the bot for the ``--missed`` records every 10 ms: ``stale_served`` counts answers
   older than what the drill wrote (target 0); ``cycle_errors`` counts failed cycles from the kill to two
   cycles after HOT up, ``cycle_errors_after`` those of them seen more than one interval after HOT up
   (beyond the failover window: target 0); ``records_lost`` counts seeded / missed records that read back
   wrong at the end (target 0); ``coherent`` = ``verify_coherence()`` on the new master; ``landed`` = a write
   after the failover is on the new master.

``--mode hang``: the master is SIGSTOPped instead (frozen or partitioned: the bot's 0.1 s command timeout is
what notices), and SIGCONTed once the bot follows the new master: it comes back as a master holding the
writes the replica missed, until Sentinel demotes it (``old_master_demoted_ms``); the reader goes on for
``--after-ms`` more and must still see nothing stale (the bot never goes back to it).

REDIS_URL / DATABASE_URL are ignored: the drill owns every server. Writes var/benchmarks/redis_sentinel_drill.json
(hang: redis_sentinel_drill_hang.json) and ends with a RESULT line; exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import _drill as d
import _records
import asyncpg
import redis.asyncio as aioredis
from tests.fixtures.ha import SENTINEL_MASTER, RedisSentinelSet
from tests.fixtures.services import PostgresServer

from bot_v2.state import StateWrite
from bot_v2.state.tiers.hot import parse_header

NAME = "redis_sentinel_drill"


async def replica_view(port: int, bot_id: str, database_url: str) -> dict[str, int]:
    """Compare what the (not yet promoted) replica holds with WARM's hot rows: stale / missing counts."""
    client = aioredis.Redis(port=port)
    held: dict[str, int] = {}
    try:
        names = [n async for n in client.scan_iter(match=f"state:{bot_id}:*", count=1000)]
        prefix = len(f"state:{bot_id}:")
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            for name, value in zip(chunk, await client.mget(chunk), strict=True):
                if isinstance(value, bytes) and b"\n" in value:
                    header = parse_header(value.split(b"\n", 1)[0])
                    if header is not None:
                        held[name.decode()[prefix:]] = header[0]
    finally:
        await client.aclose()
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT key, version FROM state_records WHERE bot_id = $1 AND tier = 'hot' "
            "AND (expires_at IS NULL OR expires_at > now())",
            bot_id,
        )
    finally:
        await conn.close()
    warm = {r["key"]: r["version"] for r in rows}
    stale = sum(1 for k, v in warm.items() if k in held and held[k] < v)
    missing = sum(1 for k in warm if k not in held)
    return {"stale": stale, "missing": missing, "held": len(held), "warm_hot_rows": len(warm)}


async def is_replica(port: int) -> bool:
    client = aioredis.Redis(port=port, socket_timeout=0.2, socket_connect_timeout=0.2)
    try:
        info = await client.info("replication")
    except Exception:
        return False
    finally:
        await client.aclose()
    return info.get("role") == "slave"


class StaleReader(d.BackgroundTask):
    """Reads ``expected`` through the bot every 10 ms; counts answers that differ from what was written."""

    def __init__(self, state: Any, expected: dict[str, Any]) -> None:
        self.state, self.expected = state, expected
        self.reads = self.stale = self.failed = 0

    async def _run(self) -> None:
        keys = list(self.expected)
        while True:
            try:
                got = await self.state.batch_get_state(keys)
            except Exception:  # WARM itself is not down in this drill; count, never crash the reader
                self.failed += 1
            else:
                self.reads += 1
                self.stale += sum(1 for k in keys if got.get(k) != self.expected[k])
            await asyncio.sleep(0.01)


async def one_round(postgres: PostgresServer, args: argparse.Namespace, n: int, root: Path) -> dict[str, Any]:
    poll = args.poll_ms / 1000
    cluster = RedisSentinelSet(
        3, down_after_ms=args.down_after_ms, failover_timeout_ms=args.failover_timeout_ms
    )
    await asyncio.to_thread(cluster.start)
    try:
        bot_id = f"drill-{uuid.uuid4().hex[:8]}"
        env = d.drill_env(
            d.Services(SimpleNamespace(url=""), postgres),  # type: ignore[arg-type]  # no REDIS_URL: Sentinel
            root / f"data-{n}",
            bot_id,
            args.interval,
            REDIS_SENTINELS=cluster.env_value,
            REDIS_SENTINEL_MASTER=SENTINEL_MASTER,
        )
        env.pop("REDIS_URL")
        settings = d.drill_settings(env, root)
        async with d.running_bot(settings, poll) as bot:
            state = bot.state
            records = [StateWrite("drill:" + w.key, w.value, w.category) for w in _records.hot_set(args.keys)]
            for start in range(0, len(records), 1000):
                await state.batch_write(records[start : start + 1000])
            master = aioredis.Redis(port=cluster.master.port)
            await master.execute_command("WAIT", 1, 2000)  # the replica holds the seeded records
            await master.aclose()
            baseline = await bot.poller.wait_cycles(args.baseline_cycles, ok=True)
            recoveries_before = state.health().hot_recoveries

            await asyncio.to_thread(cluster.cut_replication)
            missed = [StateWrite(r.key, {"drill": "after-replica-stopped", "n": n, "i": i}, r.category)
                      for i, r in enumerate(records[: args.missed])]  # fmt: skip
            await state.batch_write(missed)
            expected = {w.key: w.value for w in missed}
            reader = StaleReader(state, expected)
            reader.start()
            old_port = cluster.master.port
            t_kill = time.monotonic()
            if args.mode == "hang":  # frozen / partitioned: it keeps its connections and its data
                await asyncio.to_thread(cluster.master.send_signal, signal.SIGSTOP)
            else:
                await asyncio.to_thread(cluster.master.kill)
            await asyncio.to_thread(cluster.replica.send_signal, signal.SIGCONT)
            view = await replica_view(cluster.replica.port, bot_id, postgres.url)
            promotion = asyncio.create_task(
                asyncio.to_thread(cluster.wait_for_promotion, old_port, every=False)
            )
            h = state.health
            try:
                t_up = await d.wait_until(
                    lambda: h().hot_state.value == "up" and h().hot_recoveries > recoveries_before,
                    60,
                    poll,
                    "HOT following the new master",
                )
                t_promoted = await promotion
                demoted_ms = None
                if args.mode == "hang":  # the old master returns with the writes the replica missed
                    t_cont = time.monotonic()
                    await asyncio.to_thread(cluster.master.send_signal, signal.SIGCONT)
                    t_demoted = await d.wait_until(
                        lambda: is_replica(old_port), 30, poll, "the old master demoted by Sentinel"
                    )
                    demoted_ms = d.ms(t_demoted - t_cont)
                    await asyncio.sleep(args.after_ms / 1000)  # the reader keeps asking meanwhile
                after = await bot.poller.wait_cycles(2, after=t_up)
            finally:
                await reader.stop()
                if args.mode == "hang" and cluster.master.running:
                    with contextlib.suppress(Exception):
                        cluster.master.send_signal(signal.SIGCONT)
            coherence = await state.verify_coherence()
            recovery = h().last_hot_recovery
            errors = [s for s in bot.poller.since(t_kill) if not s.ok and s.seen <= after[-1].seen]
            errors_after = [s for s in errors if s.seen > t_up + args.interval]  # beyond the failover window
            got = await state.batch_get_state([r.key for r in records])
            want = {r.key: r.value for r in records} | expected
            lost = sum(1 for k, v in want.items() if got.get(k) != v)
            await state.set_state("drill:landed", n, records[0].category)
            promoted = aioredis.Redis(port=cluster.replica.port)
            landed = await promoted.exists(f"state:{bot_id}:drill:landed") == 1
            await promoted.aclose()
            return {
                "round": n,
                "mode": args.mode,
                "keys": args.keys,
                "old_master_demoted_ms": demoted_ms,
                "missed_writes": len(missed),
                "replica_stale": view["stale"],
                "replica_missing": view["missing"],
                "promoted_ms": d.ms(t_promoted - t_kill),
                "hot_up_ms": d.ms(t_up - t_kill),
                "followed_ms": d.ms(t_up - t_promoted),
                "restore_ms": d.ms(recovery.restore_seconds) if recovery else None,
                "keys_restored": recovery.keys_restored if recovery else None,
                "mismatches_repaired": recovery.mismatches_repaired if recovery else None,
                "reads": reader.reads,
                "stale_served": reader.stale,
                "read_errors": reader.failed,
                "records_lost": lost,
                "coherent": coherence.ok,
                "coherence_checked": coherence.checked,
                "landed": landed,
                "cycle_errors": len(errors),
                "cycle_errors_after": len(errors_after),
                "error_messages": sorted({s.message for s in errors})[:3],
                "healthy": d.latency(baseline),
                "orders_placed": bot.orders_placed(),
            }
    finally:
        await asyncio.to_thread(cluster.stop)


async def drill(args: argparse.Namespace) -> int:
    log = d.configure_logging(NAME)
    d.console.print(
        f"redis sentinel drill: {args.rounds} round(s), {args.keys} keys, {args.missed} missed by the replica, "
        f"down-after {args.down_after_ms} ms, interval {args.interval}s, bot log {log}"
    )
    postgres = PostgresServer(durable=True)
    rounds: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(postgres.start)
        with tempfile.TemporaryDirectory(prefix="perps-drill-") as tmp:
            for n in range(1, args.rounds + 1):
                rounds.append(await one_round(postgres, args, n, Path(tmp)))
    finally:
        postgres.cleanup()
    return report(rounds, args)


def report(rounds: list[dict[str, Any]], args: argparse.Namespace) -> int:
    what = "SIGSTOPped (SIGCONT after the promotion)" if args.mode == "hang" else "SIGKILLed"
    columns = [
        "round", "replica stale", "replica missing", "promoted ms", "HOT up ms", "followed ms", "restore ms",
        "keys restored", "reads", "stale served", "lost", "coherent", "landed", "cycle errors",
    ]  # fmt: skip
    rows = [
        [r["round"], r["replica_stale"], r["replica_missing"], r["promoted_ms"], r["hot_up_ms"], r["followed_ms"],
         r["restore_ms"], r["keys_restored"], r["reads"], r["stale_served"], r["records_lost"], r["coherent"],
         r["landed"], r["cycle_errors"]]
        for r in rounds
    ]  # fmt: skip
    d.console.print(d.table(f"Redis master {what}, Sentinel promotes the replica (per round)", columns, rows))
    target_ms = args.down_after_ms + 500

    def spread(key: str) -> dict[str, float | None]:
        return {"median": d.med(r[key] for r in rounds), "max": d.top(r[key] for r in rounds)}

    summary = {
        "promoted_ms": spread("promoted_ms"),
        "hot_up_ms": spread("hot_up_ms"),
        "followed_ms": spread("followed_ms"),
        "keys_repaired": sum(r["replica_stale"] + r["replica_missing"] for r in rounds),
        "stale_served": sum(r["stale_served"] for r in rounds),
        "records_lost": sum(r["records_lost"] for r in rounds),
        "coherent": all(r["coherent"] for r in rounds),
        "landed": all(r["landed"] for r in rounds),
        "cycle_errors": sum(r["cycle_errors"] for r in rounds),
        "cycle_errors_after": sum(r["cycle_errors_after"] for r in rounds),
        "followed_target_ms": target_ms,
    }
    d.console.print(
        d.table(
            "Summary (median / max over rounds)",
            ["what", "median", "max"],
            [
                ["kill -> promoted ms (Sentinel)", *d.mm(summary, "promoted_ms")],
                ["kill -> HOT up ms (bot)", *d.mm(summary, "hot_up_ms")],
                [f"promoted -> HOT up ms (target <= {target_ms})", *d.mm(summary, "followed_ms")],
            ],
        )
    )
    out = d.BENCH_DIR / f"{NAME}_hang.json" if args.mode == "hang" else None
    path = d.write_json(NAME, {"settings": vars(args), "rounds": rounds, "summary": summary}, out)
    d.console.print(f"wrote {path}")
    followed_max = summary["followed_ms"]["max"]
    ok = (
        summary["stale_served"] == 0
        and summary["records_lost"] == 0
        and summary["coherent"]
        and summary["landed"]
        and summary["cycle_errors_after"] == 0
        and followed_max is not None
        and followed_max <= target_ms
    )
    print(
        d.result_line(
            NAME,
            len(rounds),
            mode=args.mode,
            keys=args.keys,
            down_after_ms=args.down_after_ms,
            promoted_ms=summary["promoted_ms"]["median"],
            hot_up_ms=summary["hot_up_ms"]["median"],
            hot_up_max_ms=summary["hot_up_ms"]["max"],
            followed_ms=summary["followed_ms"]["median"],
            followed_max_ms=followed_max,
            keys_repaired=summary["keys_repaired"],
            stale_served=summary["stale_served"],
            records_lost=summary["records_lost"],
            coherent=summary["coherent"],
            cycle_errors=summary["cycle_errors"],
            cycle_errors_after=summary["cycle_errors_after"],
            ok=ok,
        ),
        flush=True,
    )
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = d.arg_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="failovers, each on a fresh set (default 3)")
    parser.add_argument(
        "--mode",
        choices=("kill", "hang"),
        default="kill",
        help="kill: SIGKILL the master; hang: SIGSTOP it, SIGCONT it after the promotion (it returns as a "
        "master holding the missed writes and Sentinel demotes it)",
    )
    parser.add_argument(
        "--after-ms", type=int, default=1000, help="hang: keep reading this long after the demotion"
    )
    parser.add_argument("--keys", type=int, default=1000, help="realistic records in the bot's state")
    parser.add_argument(
        "--missed", type=int, default=100, help="records rewritten while the replica is stopped"
    )
    parser.add_argument("--down-after-ms", type=int, default=500, help="sentinel down-after-milliseconds")
    parser.add_argument("--failover-timeout-ms", type=int, default=2000, help="sentinel failover-timeout")
    parser.add_argument("--interval", type=float, default=0.1, help="cycle interval in s (default 0.1)")
    parser.add_argument("--baseline-cycles", type=int, default=5, help="healthy cycles before the kill")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="health polling interval (default 10)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.keys < 1 or not 0 < args.missed <= args.keys:
        parser.error("--rounds and --keys must be >= 1, --missed between 1 and --keys")
    return args


if __name__ == "__main__":
    raise SystemExit(asyncio.run(drill(parse_args())))
