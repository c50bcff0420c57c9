#!/usr/bin/env python3
"""Many bots, one Redis: SIGKILL (or SIGSTOP) the Redis that N running bots share, bring it back, check that
every bot recovers its own namespace and nothing else.

    .venv/bin/python scripts/benchmarks/multi_bot_drill.py --bots 4 --rounds 2
    .venv/bin/python scripts/benchmarks/multi_bot_drill.py --bots 4 --rounds 2 --mode hang

``--bots`` dev-profile bots (each with its own bot id, data directory and in-process simulated exchange, a
strategy that trades every cycle) run in this process on ONE throwaway redis-server (HOT) and ONE durable
PostgreSQL (WARM). Each bot's state gets ``--keys`` realistic records whose values name their bot. Per round:
Redis is SIGKILLed (``--mode hang``: SIGSTOPped); ``detect_ms`` = kill -> the last bot degraded; ``--down-cycles``
cycles of every bot with Redis down; Redis is started again (empty; hang: SIGCONT); ``all_up_ms`` = Redis
answering -> the last bot's HOT up with a new recovery (each bot restores its own hot set from its own WARM
rows, on its own probe timer); then per bot ``verify_coherence()``; ``foreign`` = records in a bot's Redis
namespace whose value names another bot, ``stray`` = Redis keys outside every bot's namespace (both target 0);
``cycle_errors`` = failed cycles of all bots in the round (target 0: Redis is a cache).

REDIS_URL is refused (the drill kills the server). Writes var/benchmarks/multi_bot_drill.json and ends with a
RESULT line (``--mode hang``: multi_bot_drill_hang.json); exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _drill as d
import _records
import redis.asyncio as aioredis

from bot_v2.state import StateWrite

NAME = "multi_bot_drill"


async def seed(bot: d.RunningBot, keys: int) -> None:
    bot_id = bot.settings.bot_id
    records = [
        StateWrite("drill:" + w.key, {"bot": bot_id, "v": w.value}, w.category)
        for w in _records.hot_set(keys)
    ]
    for start in range(0, len(records), 1000):
        await bot.state.batch_write(records[start : start + 1000])


async def redis_census(url: str, bot_ids: list[str]) -> dict[str, int]:
    """``foreign``: a drill record in bot A's namespace whose value names bot B; ``stray``: a key of no bot."""
    client = aioredis.Redis.from_url(url)
    foreign = stray = 0
    try:
        async for name in client.scan_iter(match="*", count=1000):
            text = name.decode()
            owner = next((b for b in bot_ids if text == f"state:{b}" or text.startswith(f"state:{b}:")), None)
            if owner is None:
                stray += 1
                continue
            if text.startswith(f"state:{owner}:drill:"):
                value = await client.get(name)
                body = value.split(b"\n", 1)[1] if value and b"\n" in value else b"{}"
                with contextlib.suppress(ValueError):
                    if json.loads(body).get("bot") != owner:
                        foreign += 1
    finally:
        await client.aclose()
    return {"foreign": foreign, "stray": stray}


async def one_round(bots: list[d.RunningBot], redis: Any, args: argparse.Namespace, n: int) -> dict[str, Any]:
    poll = args.poll_ms / 1000
    for bot in bots:
        await bot.poller.wait_cycles(args.baseline_cycles, ok=True)
    before = {b.settings.bot_id: b.state.health().hot_recoveries for b in bots}
    outage = d.Outage(redis, args.mode)
    try:
        t_kill = time.monotonic()
        await outage.begin()
        t_detect = await d.wait_until(
            lambda: all(b.state.health().degraded_hot for b in bots), 30, poll, "every bot degraded"
        )
        for bot in bots:
            await bot.poller.wait_cycles(args.down_cycles, after=t_detect)
            bot.check_alive()
        await outage.end()
        t_answering = time.monotonic()
        up_at: dict[str, float] = {}

        def all_up() -> bool:
            for b in bots:
                h = b.state.health()
                if (
                    b.settings.bot_id not in up_at
                    and h.hot_state.value == "up"
                    and h.hot_recoveries > before[b.settings.bot_id]
                ):
                    up_at[b.settings.bot_id] = time.monotonic()
            return len(up_at) == len(bots)

        t_all_up = await d.wait_until(all_up, 60, poll, "every bot's HOT restored")
    finally:
        outage.release()
    per_bot = []
    for bot in bots:
        after = await bot.poller.wait_cycles(1, after=t_all_up)
        coherence = await bot.state.verify_coherence()
        recovery = bot.state.health().last_hot_recovery
        errors = [s for s in bot.poller.since(t_kill) if not s.ok and s.seen <= after[-1].seen]
        per_bot.append(
            {
                "bot_id": bot.settings.bot_id,
                "up_ms": d.ms(up_at[bot.settings.bot_id] - t_answering),
                "restore_ms": d.ms(recovery.restore_seconds) if recovery else None,
                "keys_restored": recovery.keys_restored if recovery else None,
                "coherent": coherence.ok,
                "checked": coherence.checked,
                "cycle_errors": len(errors),
            }
        )
    census = await redis_census(redis.url, [b.settings.bot_id for b in bots])
    return {
        "round": n,
        "mode": args.mode,
        "bots": len(bots),
        "detect_ms": d.ms(t_detect - t_kill),
        "all_up_ms": d.ms(t_all_up - t_answering),
        "up_ms_median": d.med(b["up_ms"] for b in per_bot),
        "restore_ms_max": d.top(b["restore_ms"] for b in per_bot),
        "keys_restored": sum(b["keys_restored"] or 0 for b in per_bot),
        "coherent": all(b["coherent"] for b in per_bot),
        "foreign": census["foreign"],
        "stray": census["stray"],
        "cycle_errors": sum(b["cycle_errors"] for b in per_bot),
        "per_bot": per_bot,
    }


async def drill(args: argparse.Namespace) -> int:
    log = d.configure_logging(NAME)
    services = d.start_services("redis")
    rounds: list[dict[str, Any]] = []
    d.console.print(
        f"multi-bot drill: {args.bots} bots, {args.rounds} round(s), {args.keys} keys each, mode {args.mode}, "
        f"interval {args.interval}s, bot log {log}"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="perps-drill-") as tmp:
            async with contextlib.AsyncExitStack() as stack:
                bots: list[d.RunningBot] = []
                for i in range(args.bots):
                    bot_id = f"drill-{i}-{uuid.uuid4().hex[:6]}"
                    env = d.drill_env(services, Path(tmp) / bot_id, bot_id, args.interval)
                    settings = d.drill_settings(env, Path(tmp))
                    bots.append(await stack.enter_async_context(d.running_bot(settings, args.poll_ms / 1000)))
                for bot in bots:
                    await seed(bot, args.keys)
                for n in range(1, args.rounds + 1):
                    rounds.append(await one_round(bots, services.redis, args, n))
    finally:
        services.close()
    return report(rounds, args)


def report(rounds: list[dict[str, Any]], args: argparse.Namespace) -> int:
    columns = [
        "round", "bots", "detect ms", "answer -> all up ms", "up ms median", "restore ms max", "keys restored",
        "coherent", "foreign", "stray", "cycle errors",
    ]  # fmt: skip
    rows = [
        [r["round"], r["bots"], r["detect_ms"], r["all_up_ms"], r["up_ms_median"], r["restore_ms_max"],
         r["keys_restored"], r["coherent"], r["foreign"], r["stray"], r["cycle_errors"]]
        for r in rounds
    ]  # fmt: skip
    what = "SIGSTOP / SIGCONT" if args.mode == "hang" else "SIGKILL"
    d.console.print(d.table(f"Shared Redis {what} under {args.bots} bots (per round)", columns, rows))
    summary = {
        "all_up_ms": {"median": d.med(r["all_up_ms"] for r in rounds), "max": d.top(r["all_up_ms"] for r in rounds)},
        "detect_ms": {"median": d.med(r["detect_ms"] for r in rounds), "max": d.top(r["detect_ms"] for r in rounds)},
        "coherent": all(r["coherent"] for r in rounds),
        "foreign": sum(r["foreign"] for r in rounds),
        "stray": sum(r["stray"] for r in rounds),
        "cycle_errors": sum(r["cycle_errors"] for r in rounds),
    }  # fmt: skip
    out = d.BENCH_DIR / f"{NAME}_hang.json" if args.mode == "hang" else None
    path = d.write_json(NAME, {"settings": vars(args), "rounds": rounds, "summary": summary}, out)
    d.console.print(f"wrote {path}")
    ok = (
        summary["coherent"]
        and summary["foreign"] == 0
        and summary["stray"] == 0
        and summary["cycle_errors"] == 0
    )
    print(
        d.result_line(
            NAME,
            len(rounds),
            bots=args.bots,
            mode=args.mode,
            keys=args.keys,
            detect_ms=summary["detect_ms"]["median"],
            all_up_ms=summary["all_up_ms"]["median"],
            all_up_max_ms=summary["all_up_ms"]["max"],
            coherent=summary["coherent"],
            foreign=summary["foreign"],
            stray=summary["stray"],
            cycle_errors=summary["cycle_errors"],
            ok=ok,
        ),
        flush=True,
    )
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = d.arg_parser(__doc__)
    parser.add_argument("--bots", type=int, default=4, help="bots sharing the servers (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="Redis outages (default 2)")
    d.add_outage_args(parser, keys=500)
    parser.add_argument("--interval", type=float, default=0.2, help="cycle interval in s (default 0.2)")
    parser.add_argument("--baseline-cycles", type=int, default=3, help="healthy cycles per bot per round")
    parser.add_argument("--down-cycles", type=int, default=3, help="cycles per bot with Redis down")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="polling interval (default 10)")
    args = parser.parse_args(argv)
    if args.bots < 2 or args.rounds < 1 or args.keys < 1:
        parser.error("--bots must be >= 2, --rounds and --keys >= 1")
    return args


if __name__ == "__main__":
    raise SystemExit(asyncio.run(drill(parse_args())))
