#!/usr/bin/env python3
"""PostgreSQL failover drill: SIGKILL (or SIGSTOP) PostgreSQL under a running bot, bring it back, measure.

    .venv/bin/python scripts/benchmarks/postgres_failover_drill.py --rounds 3                 # 1,000 keys
    .venv/bin/python scripts/benchmarks/postgres_failover_drill.py --rounds 3 --mode hang     # SIGSTOP / SIGCONT
    .venv/bin/python scripts/benchmarks/postgres_failover_drill.py --rounds 1 --baseline-cycles 5 --down-cycles 3

A dev-profile bot (in-process simulated exchange, BTC-USD, a strategy that wants to trade every cycle) runs on
a throwaway PostgreSQL (WARM) + redis-server (HOT); before the first round the bot's state gets ``--keys``
realistic mixed records (``_records.py``, default 1,000). Each round:

1. ``--baseline-cycles`` healthy cycles (latency baseline), a snapshot of every record's version in WARM and
   of ``safety:mode``;
2. PostgreSQL (postmaster + backends) is SIGKILLed (``--mode hang``: SIGSTOPped -- connections stay open
   and nothing answers, so only the bot's WARM operation timeout can tell); ``detect_ms`` = kill / stop ->
   first failing cycle in ``health.json`` or ``health().degraded_warm`` (a state layer that journals);
   ``max_cycle_ms`` = the longest cycle from the kill / stop to the first healthy cycle after it (start ->
   health written, failed cycles included), ``loop_stall_ms`` = the longest the event loop was late for a
   5 ms timer in that time;
3. ``--down-cycles`` cycles with PostgreSQL dead: a failing cycle must fail as *retryable* (the bot keeps
   running); orders: ZERO, unless the state layer journals the outage (``health().degraded_warm``,
   ``journaled=true`` on the RESULT line) -- then the cycles trade on in the outage mode
   (``PERPS_WARM_OUTAGE_MODE``; what that mode may send is ``postgres_journal_drill.py``'s verdict);
4. PostgreSQL is started again (crash recovery on the same data dir; hang: SIGCONT); ``recover_ms`` =
   start() / SIGCONT -> first healthy cycle (``pg_start_ms`` is the server's own part of it);
   ``answer_to_ok_ms`` = server answering -> first healthy cycle; its floor ``floor_ms`` = what any client
   needs once the server answers: a fresh connection + reading the bot's records' versions (best of 3,
   measured after the round), ``ratio`` = ``answer_to_ok_ms / floor_ms`` (the bot also waits for its next
   cycle tick, up to one ``--interval``, and runs the cycle);
5. state intact: no record lost, no version went backwards, ``safety:mode`` trading state unchanged,
   ``verify_coherence()`` clean.

Timings poll ``health.json`` every ``--poll-ms`` (default 10 ms): that is their resolution; detection also
waits for the next cycle (up to one ``--interval``). DATABASE_URL is refused (the drill must own the server it
kills); REDIS_URL may point at an external server.
Writes var/benchmarks/postgres_failover_drill.json (``--mode hang``: postgres_failover_drill_hang.json) and
ends with a RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import _drill as d
import asyncpg
from _drill import mm

NAME = "postgres_failover_drill"


async def versions(database_url: str, bot_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT key, version FROM state_records WHERE bot_id = $1", bot_id)
    finally:
        await conn.close()
    return {r["key"]: int(r["version"]) for r in rows}


async def floor_reconnect(database_url: str, bot_id: str) -> float:
    """A fresh connection + one read of the bot's records' versions: best of 3, in ms."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        await versions(database_url, bot_id)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def warm_degraded(bot: d.RunningBot) -> bool:
    """The state layer's own WARM-outage flag, where it has one (a journal that rides the outage out)."""
    return bool(getattr(bot.state.health(), "degraded_warm", False))


def warm_down(bot: d.RunningBot, since: float) -> bool:
    """Detected: a cycle failed after ``since``, or the state layer says WARM is down."""
    return warm_degraded(bot) or any(not s.ok for s in bot.poller.since(since))


async def one_round(bot: d.RunningBot, postgres: Any, args: argparse.Namespace, n: int) -> dict[str, Any]:
    state = bot.state
    poll = args.poll_ms / 1000
    if n == 1 and args.keys:
        await d.seed(state, args.keys)
    baseline = await bot.poller.wait_cycles(args.baseline_cycles, ok=True)
    before = await versions(postgres.url, bot.settings.bot_id)
    safety_before = await state.get_state("safety:mode")
    orders_before = bot.orders_placed()
    outage = d.Outage(postgres, args.mode)
    stall = d.LoopStall()
    stall.start()
    try:
        t_kill = time.monotonic()
        await outage.begin()
        t_detect = await d.wait_until(lambda: warm_down(bot, t_kill), 30, poll, "WARM outage detected")
        down = await bot.poller.wait_cycles(args.down_cycles, after=t_detect)
        bot.check_alive()
        orders_down = bot.orders_placed() - orders_before
        retryable = all("unavailable" in s.message.lower() for s in down if not s.ok)
        journaled = warm_degraded(bot)
        outage_mode = str(getattr(bot.settings.state, "warm_outage_mode", "none"))
        # a journaling state layer trades on in its outage mode: what it may send is postgres_journal_drill's
        orders_ok = orders_down == 0 or journaled

        t_restart = time.monotonic()
        await outage.end()
        t_answering = time.monotonic()
        first_ok = await bot.poller.wait_cycles(1, after=t_restart, ok=True, within=60)
        t_ok = max(first_ok[0].seen, await d.wait_until(lambda: not warm_degraded(bot), 60, poll, "WARM up"))
    finally:
        outage.release()
        await stall.stop()
    during = [s for s in bot.poller.since(t_kill) if s.seen <= t_ok]
    after_cycles = await bot.poller.wait_cycles(2, after=t_ok, ok=True)
    after = await versions(postgres.url, bot.settings.bot_id)
    safety_after = await state.get_state("safety:mode")
    coherence = await state.verify_coherence()
    lost = sorted(k for k in before if k not in after)
    backwards = sorted(k for k, v in before.items() if k in after and after[k] < v)
    safety_same = (safety_before or {}).get("trading_state") == (safety_after or {}).get("trading_state")
    floor_ms = await floor_reconnect(postgres.url, bot.settings.bot_id)
    answer_to_ok_ms = d.ms(t_ok - t_answering)
    return {
        "round": n,
        "mode": args.mode,
        "keys": args.keys,
        "detect_ms": d.ms(t_detect - t_kill),
        "max_cycle_ms": d.outage_cycles(during)["max_cycle_ms"],
        "loop_stall_ms": round(stall.max_ms, 1),
        "answer_to_ok_ms": answer_to_ok_ms,
        "floor_ms": round(floor_ms, 2),
        "ratio": round(answer_to_ok_ms / floor_ms, 2) if answer_to_ok_ms and floor_ms else None,
        "cycles_while_down": len(down),
        "failed_cycles_while_down": sum(not s.ok for s in down),
        "retryable": retryable and not bot.task.done(),
        "orders_while_down": orders_down,
        "journaled": journaled,
        "outage_mode": outage_mode,
        "orders_ok": orders_ok,
        "pg_start_ms": d.ms(t_answering - t_restart),
        "recover_ms": d.ms(t_ok - t_restart),
        "records_before": len(before),
        "records_lost": len(lost),
        "versions_backwards": len(backwards),
        "lost_keys": lost[:5],
        "backwards_keys": [(k, before[k], after[k]) for k in backwards[:5]],
        "trading_state_before": (safety_before or {}).get("trading_state"),
        "trading_state_after": (safety_after or {}).get("trading_state"),
        "safety_unchanged": safety_same,
        "coherent": coherence.ok and not lost and not backwards and safety_same,
        "coherence_checked": coherence.checked,
        "coherence_mismatches": coherence.mismatch_count,
        "down_messages": sorted({s.message for s in down if not s.ok})[:3],
        "healthy": d.latency(baseline),
        "down": d.latency(s for s in down if s.ok),
        "after": d.latency(after_cycles),
    }


async def drill(args: argparse.Namespace) -> int:
    rounds, orders = await d.run_rounds(
        NAME,
        "postgres",
        args,
        one_round,
        "kill / down / restart",
    )
    return report(rounds, args, orders)


def report(rounds: list[dict[str, Any]], args: argparse.Namespace, orders: int) -> int:
    columns = [
        "round", "detect ms", "max cycle ms", "loop stall ms", "cycles down", "failed (retryable)",
        "orders while down", "cycle p50 healthy",
        "pg start ms", "recover ms", "records", "lost", "versions back", "safety same", "coherent",
    ]  # fmt: skip
    rows = [
        [
            r["round"], r["detect_ms"], r["max_cycle_ms"], r["loop_stall_ms"], r["cycles_while_down"],
            f"{r['failed_cycles_while_down']} ({'yes' if r['retryable'] else 'NO'})", r["orders_while_down"],
            r["healthy"]["p50_ms"], r["pg_start_ms"], r["recover_ms"], r["records_before"], r["records_lost"],
            r["versions_backwards"], r["safety_unchanged"], r["coherent"],
        ]
        for r in rounds
    ]  # fmt: skip
    what = "SIGSTOP / SIGCONT" if args.mode == "hang" else "SIGKILL"
    d.console.print(d.table(f"PostgreSQL {what} under a running bot (per round)", columns, rows))
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
        "answer_to_ok_ms": {
            "median": d.med(r["answer_to_ok_ms"] for r in rounds),
            "max": d.top(r["answer_to_ok_ms"] for r in rounds),
        },
        "floor_ms": {
            "median": d.med(r["floor_ms"] for r in rounds),
            "max": d.top(r["floor_ms"] for r in rounds),
        },
        "ratio": {"median": d.med(r["ratio"] for r in rounds), "max": d.top(r["ratio"] for r in rounds)},
        "pg_start_ms": {
            "median": d.med(r["pg_start_ms"] for r in rounds),
            "max": d.top(r["pg_start_ms"] for r in rounds),
        },
        "cycle_p50_healthy_ms": d.med(r["healthy"]["p50_ms"] for r in rounds),
        "cycle_p50_after_ms": d.med(r["after"]["p50_ms"] for r in rounds),
        "cycles_while_down": sum(r["cycles_while_down"] for r in rounds),
        "failed_cycles_while_down": sum(r["failed_cycles_while_down"] for r in rounds),
        "retryable": all(r["retryable"] for r in rounds),
        "orders_while_down": sum(r["orders_while_down"] for r in rounds),
        "journaled": any(r["journaled"] for r in rounds),
        "orders_ok": all(r["orders_ok"] for r in rounds),
        "records_lost": sum(r["records_lost"] for r in rounds),
        "versions_backwards": sum(r["versions_backwards"] for r in rounds),
        "coherent": all(r["coherent"] for r in rounds),
        "orders_placed": orders,
    }
    d.console.print(
        d.table(
            "Summary (median / max over rounds)",
            ["what", "median", "max"],
            [
                ["detect ms (kill / stop -> first failing cycle)", *mm(summary, "detect_ms")],
                ["longest cycle ms, outage", *mm(summary, "max_cycle_ms")],
                ["longest loop stall ms, outage", *mm(summary, "loop_stall_ms")],
                ["recover ms (start / SIGCONT -> first ok cycle)", *mm(summary, "recover_ms")],
                ["answer -> first ok cycle ms", *mm(summary, "answer_to_ok_ms")],
                ["floor ms (fresh connection + read versions)", *mm(summary, "floor_ms")],
                ["answer -> ok / floor", *mm(summary, "ratio")],
                ["  of which PostgreSQL start", summary["pg_start_ms"]["median"], summary["pg_start_ms"]["max"]],
                ["cycle p50 ms healthy (baseline)", summary["cycle_p50_healthy_ms"], None],
                ["cycle p50 ms after recovery", summary["cycle_p50_after_ms"], None],
                ["orders placed while down (total)", summary["orders_while_down"], None],
            ],
        )
    )  # fmt: skip
    out = d.BENCH_DIR / f"{NAME}_hang.json" if args.mode == "hang" else None
    path = d.write_json(NAME, {"settings": vars(args), "rounds": rounds, "summary": summary}, out)
    d.console.print(f"wrote {path}")
    ok = summary["coherent"] and summary["retryable"] and summary["orders_ok"]
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
            answer_to_ok_ms=summary["answer_to_ok_ms"]["median"],
            floor_ms=summary["floor_ms"]["median"],
            ratio=summary["ratio"]["median"],
            pg_start_ms=summary["pg_start_ms"]["median"],
            failed_cycles=summary["failed_cycles_while_down"],
            retryable=summary["retryable"],
            orders_while_down=summary["orders_while_down"],
            journaled=summary["journaled"],
            records_lost=summary["records_lost"],
            coherent=summary["coherent"],
            errors=0 if summary["retryable"] else 1,
        ),
        flush=True,
    )
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = d.arg_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="kill/restart rounds (default 3)")
    d.add_outage_args(parser)
    parser.add_argument("--interval", type=float, default=0.1, help="cycle interval in s (default 0.1)")
    parser.add_argument(
        "--baseline-cycles", type=int, default=20, help="healthy cycles per round (default 20)"
    )
    parser.add_argument(
        "--down-cycles", type=int, default=10, help="cycles with PostgreSQL dead (default 10)"
    )
    parser.add_argument("--poll-ms", type=float, default=10.0, help="health polling interval (default 10)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(drill(parse_args())))
