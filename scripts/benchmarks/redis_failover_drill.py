#!/usr/bin/env python3
"""Redis failover drill: SIGKILL (or SIGSTOP) redis-server under a running bot, bring it back, measure.

    .venv/bin/python scripts/benchmarks/redis_failover_drill.py --rounds 3                 # 1,000 keys
    .venv/bin/python scripts/benchmarks/redis_failover_drill.py --rounds 3 --keys 10000
    .venv/bin/python scripts/benchmarks/redis_failover_drill.py --rounds 3 --mode hang     # SIGSTOP / SIGCONT
    .venv/bin/python scripts/benchmarks/redis_failover_drill.py --rounds 1 --baseline-cycles 5 --down-cycles 5

A dev-profile bot (in-process simulated exchange, BTC-USD, a strategy that trades every cycle) runs on a
throwaway redis-server (HOT) + PostgreSQL (WARM) with ``--interval`` seconds between cycle starts. Before the
first round the bot's state gets ``--keys`` realistic mixed hot-set records (``_records.py``: orders,
positions, guard and risk state, marks; default 1,000), so the restore moves a realistic hot set. Each round:

1. ``--baseline-cycles`` healthy cycles (the latency baseline of this round);
2. redis-server is SIGKILLed (``--mode hang``: SIGSTOPped -- it keeps its connections and answers nothing,
   so only the bot's command timeout can tell); ``detect_ms`` = kill / stop -> ``health().degraded_hot``;
3. ``--down-cycles`` cycles with Redis dead (they must keep succeeding, served by PostgreSQL);
   ``max_cycle_ms`` = the longest cycle from the kill / stop to HOT up (start -> health written, failed
   cycles included: a cycle blocked by the hung server shows here), ``loop_stall_ms`` = the longest the
   event loop was late for a 5 ms timer in that time;
4. redis-server is started again (empty: no persistence; hang: SIGCONT, it keeps its data and answers at
   once); ``start()`` returns once it answers PING.
   ``answer_to_up_ms`` = Redis answering -> HOT ``up`` with a new ``HotRecovery`` (hot set restored from WARM
   and verified), found by the manager's own probe timer (nothing in the drill asks it to probe);
   ``recover_ms`` = start() called -> HOT up (adds the server's start); ``keys_moved``, ``restore_ms`` and
   ``outage_ms`` come from that ``HotRecovery``; ``probe_ms`` = ``answer_to_up_ms - restore_ms`` (the target:
   <= 50 ms);
5. two more cycles, then ``verify_coherence()`` (every HOT key's version + checksum against WARM);
6. the floor of this round: one raw MSET of the same packed records (the bytes the restore writes) into an
   empty namespace of the same redis-server (best of 3); ``ratio`` = ``restore_ms / floor_ms``.

Timings poll ``health()`` (no I/O) and ``health.json`` every ``--poll-ms`` (default 10 ms): that is their
resolution. Detection also waits for the next state operation (the next cycle), i.e. up to one interval.
REDIS_URL is refused (the drill must own the server it kills); DATABASE_URL may point at an external server.
Writes var/benchmarks/redis_failover_drill.json (``--mode hang``: redis_failover_drill_hang.json) and ends
with a RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import _drill as d
import _records
import redis.asyncio as aioredis
from _drill import mm

from bot_v2.state.codec import checksum, encode_value
from bot_v2.state.models import HotRecord
from bot_v2.state.tiers.hot import pack_record

NAME = "redis_failover_drill"


async def floor_mset(url: str, keys: int) -> float:
    """One raw MSET of the same packed records into an empty scratch namespace: best of 3, in ms."""
    now = datetime.now(UTC)
    packed: dict[str, bytes] = {}
    for w in _records.hot_set(keys):
        data = encode_value(w.value)
        packed[f"state:drill-floor:{w.key}"] = pack_record(HotRecord(w.key, 1, checksum(data), data, now))
    client = aioredis.Redis.from_url(url)
    best = float("inf")
    try:
        for _ in range(4):  # the first one warms the connection up
            await client.delete(*packed)
            started = time.perf_counter()
            await client.mset(packed)
            best = min(best, time.perf_counter() - started)
        await client.delete(*packed)
    finally:
        await client.aclose()
    return best * 1000


async def one_round(bot: d.RunningBot, redis: Any, args: argparse.Namespace, n: int) -> dict[str, Any]:
    poll = args.poll_ms / 1000
    state = bot.state
    if n == 1 and args.keys:
        await d.seed(state, args.keys)
    baseline = await bot.poller.wait_cycles(args.baseline_cycles, ok=True)
    recoveries_before = state.health().hot_recoveries
    outage = d.Outage(redis, args.mode)
    stall = d.LoopStall()
    stall.start()
    try:
        t_kill = time.monotonic()
        await outage.begin()
        t_detect = await d.wait_until(lambda: state.health().degraded_hot, 30, poll, "HOT degraded")
        down = await bot.poller.wait_cycles(args.down_cycles, after=t_detect)
        bot.check_alive()

        t_restart = time.monotonic()
        await outage.end()
        t_answering = time.monotonic()
        h = state.health

        t_up = await d.wait_until(
            lambda: h().hot_state.value == "up" and h().hot_recoveries > recoveries_before,
            60,
            poll,
            "HOT restored",
        )
    finally:
        outage.release()
        await stall.stop()
    during = [s for s in bot.poller.since(t_kill) if s.seen <= t_up + poll]
    first_ok = await bot.poller.wait_cycles(1, after=t_up, ok=True)
    after = await bot.poller.wait_cycles(2, after=t_up)
    coherence = await state.verify_coherence()
    recovery = state.health().last_hot_recovery
    errors = [s for s in bot.poller.since(baseline[0].seen) if not s.ok]
    restore_ms = d.ms(recovery.restore_seconds) if recovery else None
    answer_to_up_ms = d.ms(t_up - t_answering)
    floor_ms = await floor_mset(redis.url, recovery.keys_restored if recovery else args.keys)
    return {
        "round": n,
        "mode": args.mode,
        "keys": args.keys,
        "detect_ms": d.ms(t_detect - t_kill),
        "max_cycle_ms": d.outage_cycles(during)["max_cycle_ms"],
        "loop_stall_ms": round(stall.max_ms, 1),
        "cycles_while_down": len(down),
        "ok_cycles_while_down": sum(s.ok for s in down),
        "redis_start_ms": d.ms(t_answering - t_restart),
        "recover_ms": d.ms(t_up - t_restart),
        "answer_to_up_ms": answer_to_up_ms,
        "probe_ms": (
            round(answer_to_up_ms - restore_ms, 1) if answer_to_up_ms is not None and restore_ms else None
        ),
        "floor_ms": round(floor_ms, 2),
        "ratio": round(restore_ms / floor_ms, 2) if restore_ms and floor_ms else None,
        "first_ok_cycle_ms": d.ms(first_ok[0].seen - t_restart),
        "outage_ms": d.ms(recovery.outage_seconds) if recovery else None,
        "restore_ms": restore_ms,
        "keys_moved": recovery.keys_moved if recovery else None,
        "keys_restored": recovery.keys_restored if recovery else None,
        "keys_verified": recovery.keys_verified if recovery else None,
        "mismatches_repaired": recovery.mismatches_repaired if recovery else None,
        "coherent": coherence.ok,
        "coherence_checked": coherence.checked,
        "coherence_mismatches": coherence.mismatch_count,
        "cycle_errors": len(errors),
        "error_messages": sorted({s.message for s in errors})[:3],
        "healthy": d.latency(baseline),
        "degraded": d.latency(down),
        "after": d.latency(after),
    }


async def drill(args: argparse.Namespace) -> int:
    rounds, orders = await d.run_rounds(
        NAME,
        "redis",
        args,
        one_round,
        "kill / down / restore",
    )
    return report(rounds, args, orders)


def report(rounds: list[dict[str, Any]], args: argparse.Namespace, orders: int) -> int:
    rows = [
        [
            r["round"], r["detect_ms"], r["max_cycle_ms"], r["loop_stall_ms"], r["cycles_while_down"],
            r["ok_cycles_while_down"],
            r["healthy"]["p50_ms"], r["degraded"]["p50_ms"], r["degraded"]["max_ms"], r["redis_start_ms"],
            r["recover_ms"], r["answer_to_up_ms"], r["restore_ms"], r["probe_ms"], r["floor_ms"], r["ratio"],
            r["keys_moved"], r["coherent"], r["cycle_errors"],
        ]
        for r in rounds
    ]  # fmt: skip
    columns = [
        "round", "detect ms", "max cycle ms", "loop stall ms", "cycles down", "ok down", "cycle p50 healthy",
        "cycle p50 degraded",
        "cycle max degraded", "redis start ms", "recover ms", "answer->up ms", "restore ms", "probe ms",
        "floor MSET ms", "restore / floor", "keys moved", "coherent", "errors",
    ]  # fmt: skip
    what = "SIGSTOP / SIGCONT" if args.mode == "hang" else "SIGKILL"
    d.console.print(d.table(f"Redis {what} under a running bot (per round)", columns, rows))
    healthy = [r["healthy"]["p50_ms"] for r in rounds]
    degraded = [r["degraded"]["p50_ms"] for r in rounds]
    summary = {
        "detect_ms": {
            "median": d.med(r["detect_ms"] for r in rounds),
            "max": d.top(r["detect_ms"] for r in rounds),
        },
        "recover_ms": {
            "median": d.med(r["recover_ms"] for r in rounds),
            "max": d.top(r["recover_ms"] for r in rounds),
        },
        "max_cycle_ms": {
            "median": d.med(r["max_cycle_ms"] for r in rounds),
            "max": d.top(r["max_cycle_ms"] for r in rounds),
        },
        "loop_stall_ms": {
            "median": d.med(r["loop_stall_ms"] for r in rounds),
            "max": d.top(r["loop_stall_ms"] for r in rounds),
        },
        "restore_ms": {
            "median": d.med(r["restore_ms"] for r in rounds),
            "max": d.top(r["restore_ms"] for r in rounds),
        },
        "answer_to_up_ms": {
            "median": d.med(r["answer_to_up_ms"] for r in rounds),
            "max": d.top(r["answer_to_up_ms"] for r in rounds),
        },
        "probe_ms": {
            "median": d.med(r["probe_ms"] for r in rounds),
            "max": d.top(r["probe_ms"] for r in rounds),
        },
        "floor_ms": {
            "median": d.med(r["floor_ms"] for r in rounds),
            "max": d.top(r["floor_ms"] for r in rounds),
        },
        "ratio": {"median": d.med(r["ratio"] for r in rounds), "max": d.top(r["ratio"] for r in rounds)},
        "cycle_p50_healthy_ms": d.med(healthy),
        "cycle_p50_degraded_ms": d.med(degraded),
        "degraded_vs_healthy": (
            round(d.med(degraded) / d.med(healthy), 2) if d.med(healthy) and d.med(degraded) else None
        ),
        "keys_moved": {
            "median": d.med(r["keys_moved"] for r in rounds),
            "max": d.top(r["keys_moved"] for r in rounds),
        },
        "cycles_while_down": sum(r["cycles_while_down"] for r in rounds),
        "ok_cycles_while_down": sum(r["ok_cycles_while_down"] for r in rounds),
        "coherent": all(r["coherent"] for r in rounds),
        "cycle_errors": sum(r["cycle_errors"] for r in rounds),
        "orders_placed": orders,
    }
    d.console.print(
        d.table(
            "Summary (median / max over rounds)",
            ["what", "median", "max"],
            [
                ["detect ms (kill / stop -> degraded)", *mm(summary, "detect_ms")],
                ["longest cycle ms, outage", *mm(summary, "max_cycle_ms")],
                ["longest loop stall ms, outage", *mm(summary, "loop_stall_ms")],
                [
                    "recover ms (start -> HOT up)",
                    summary["recover_ms"]["median"],
                    summary["recover_ms"]["max"],
                ],
                ["answer -> HOT up ms", *mm(summary, "answer_to_up_ms")],
                ["restore ms (HotRecovery)", summary["restore_ms"]["median"], summary["restore_ms"]["max"]],
                ["probe ms (answer -> up minus restore)", *mm(summary, "probe_ms")],
                ["floor ms (raw MSET, same records)", *mm(summary, "floor_ms")],
                ["restore / floor", *mm(summary, "ratio")],
                ["keys moved", summary["keys_moved"]["median"], summary["keys_moved"]["max"]],
                ["cycle p50 ms healthy (baseline)", summary["cycle_p50_healthy_ms"], None],
                ["cycle p50 ms degraded", summary["cycle_p50_degraded_ms"], None],
                ["degraded / healthy", summary["degraded_vs_healthy"], None],
            ],
        )
    )
    out = d.BENCH_DIR / f"{NAME}_hang.json" if args.mode == "hang" else None
    path = d.write_json(NAME, {"settings": vars(args), "rounds": rounds, "summary": summary}, out)
    d.console.print(f"wrote {path}")
    ok = summary["coherent"] and summary["cycle_errors"] == 0
    print(
        d.result_line(
            NAME,
            len(rounds),
            mode=args.mode,
            keys=args.keys,
            detect_ms=summary["detect_ms"]["median"],
            detect_max_ms=summary["detect_ms"]["max"],
            max_cycle_ms=summary["max_cycle_ms"]["max"],
            loop_stall_ms=summary["loop_stall_ms"]["max"],
            recover_ms=summary["recover_ms"]["median"],
            answer_to_up_ms=summary["answer_to_up_ms"]["median"],
            restore_ms=summary["restore_ms"]["median"],
            probe_ms=summary["probe_ms"]["median"],
            floor_ms=summary["floor_ms"]["median"],
            ratio=summary["ratio"]["median"],
            keys_moved=summary["keys_moved"]["median"],
            cycles_down=summary["cycles_while_down"],
            degraded_vs_healthy=summary["degraded_vs_healthy"],
            coherent=summary["coherent"],
            errors=summary["cycle_errors"],
        ),
        flush=True,
    )
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = d.arg_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="kill/restore rounds (default 3)")
    d.add_outage_args(parser)
    parser.add_argument("--interval", type=float, default=0.1, help="cycle interval in s (default 0.1)")
    parser.add_argument(
        "--baseline-cycles", type=int, default=20, help="healthy cycles per round (default 20)"
    )
    parser.add_argument("--down-cycles", type=int, default=20, help="cycles with Redis dead (default 20)")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="health polling interval (default 10)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(drill(parse_args())))
