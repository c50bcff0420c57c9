#!/usr/bin/env python3
"""PostgreSQL outage journal drill: break PostgreSQL under a running, LEASED bot; it keeps trading (reduce-only)
on HOT + the local journal, then replays the journal when PostgreSQL answers again.

    .venv/bin/python scripts/benchmarks/postgres_journal_drill.py --rounds 3
    .venv/bin/python scripts/benchmarks/postgres_journal_drill.py --rounds 1 --mode empty
    .venv/bin/python scripts/benchmarks/postgres_journal_drill.py --rounds 1 --mode stop --journal-keys 2000

A dev-profile bot (in-process simulated exchange, BTC-USD, ``Ladder``: buys 12 steps, then sells them back a
step a cycle) runs on a throwaway durable PostgreSQL (WARM) + redis-server (HOT) and holds its lease as
``perps-bot`` does (LeaseKeeper, LeasedBroker, the journal's lease gate). Each round:

1. ``--baseline-cycles`` healthy cycles, then wait until the bot is LONG (so the outage has a position to
   reduce); snapshot every record's version in WARM;
2. break PostgreSQL: ``kill`` (SIGKILL), ``stop`` (SIGSTOP every process: a hung server), or ``empty``
   (SIGKILL, then it comes back from a backup taken before the bot started: schema, no data of this bot);
3. ``--down-cycles`` cycles with PostgreSQL down: counted ok / failed, orders sent (reduce-only: a sell of
   the long position; a buy when flat is refused by the risk engine), records journaled; ``--journal-keys``
   extra records are written through the bot's state meanwhile (a bigger journal to replay);
4. PostgreSQL answers again (start / SIGCONT / start on the backup); ``replay_ms`` is the manager's own
   replay time (lease check + renewal + every batch + truncate), ``answer_to_up_ms`` from the server
   answering to the journal truncated; then ``floor_ms``: the same number of records written directly
   through the bot's state in batches of the replay's size, in the same round (the replay's floor);
5. state: kill / stop: no record lost, no version backwards, ``verify_coherence`` clean. empty: the newest
   checkpoint restored, the journal on top, and the bot's ``data_loss_estimate`` (seconds between the
   checkpoint and the journal's first record) is reported; records lost are those of that window.

Targets (kill / stop): failed_cycles=0, orders_while_down > 0, records_lost=0, versions_backwards=0,
coherent, replay_ms <= 2 x floor_ms (median). Writes var/benchmarks/postgres_journal_drill.json and ends with
a RESULT line. DATABASE_URL is refused (the drill must own the server it breaks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _drill as d
import asyncpg

from bot_v2.domain import utc_now
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.lease import LeasedBroker, LeaseKeeper, new_claim, warm_lease_gate
from bot_v2.orchestration.wiring import open_runtime
from bot_v2.state import StateCategory, StateWrite
from bot_v2.state.keys import KeySpace
from bot_v2.state.tiers.postgres_warm import PostgresWarmTier

NAME = "postgres_journal_drill"


async def versions(database_url: str, bot_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT key, version FROM state_records WHERE bot_id = $1", bot_id)
    finally:
        await conn.close()
    return {r["key"]: int(r["version"]) for r in rows}


@contextlib.asynccontextmanager
async def leased_bot(settings: Any, poll_seconds: float, strategy: Any) -> AsyncIterator[d.RunningBot]:
    """``perps-bot``'s run path in-process: acquire the lease, fence the state, gate the broker, renew."""
    metrics = BotMetrics()
    async with open_runtime(settings) as runtime:
        d.unthrottle(runtime)
        state = runtime.state
        assert state is not None
        keeper = LeaseKeeper(
            state,
            settings.lease,
            new_claim(),
            bot_id=settings.bot_id,
            metrics=metrics,
            outage_max_seconds=settings.state.warm_outage_max_seconds,
        )
        await keeper.acquire()
        await state.take_ownership(keeper.epoch)
        state.set_lease_gate(warm_lease_gate(keeper, state))
        runtime = dataclasses.replace(
            runtime,
            broker=LeasedBroker.wrap(runtime.broker, keeper),
            exchange=LeasedBroker.wrap(runtime.exchange, keeper),
        )
        try:
            async with d.bot_in_loop(settings, runtime, poll_seconds, strategy, metrics, lease=keeper) as bot:
                yield bot
        finally:
            await keeper.release()


def copy_tree(src: Path, dst: Path) -> None:
    """``cp -a``: keeps the postgres user's ownership when the drill runs as root."""
    shutil.rmtree(dst, ignore_errors=True)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


async def take_backup(postgres: Any, url: str, backup: Path) -> None:
    """The "old backup": the schema, no data of the drill's bot (taken before it starts)."""
    warm = PostgresWarmTier(url, KeySpace("drill-schema"))
    await warm.connect()
    await warm.close()
    await asyncio.to_thread(postgres.stop)
    copy_tree(postgres.datadir, backup)
    await asyncio.to_thread(postgres.start)


async def break_postgres(postgres: Any, mode: str) -> None:
    if mode == "stop":
        await asyncio.to_thread(postgres.send_signal, signal.SIGSTOP)
    else:
        await asyncio.to_thread(postgres.kill)


async def heal_postgres(postgres: Any, mode: str, backup: Path) -> None:
    if mode == "stop":
        await asyncio.to_thread(postgres.send_signal, signal.SIGCONT)
        return
    if mode == "empty":
        copy_tree(backup, postgres.datadir)
    await asyncio.to_thread(postgres.start)


async def one_round(
    bot: d.RunningBot, postgres: Any, args: argparse.Namespace, n: int, backup: Path, ladder: d.Ladder
) -> dict[str, Any]:
    state = bot.state
    baseline = await bot.poller.wait_cycles(args.baseline_cycles, ok=True)
    await d.wait_until(d.unwinding(state, ladder), 30, 0.002, "a long position being sold down")
    before = await versions(postgres.url, bot.settings.bot_id)
    orders_before = bot.orders_placed()
    denied_before = d.counter_total(bot.metrics.orders, outcome="denied")
    recoveries = state.health().warm_recoveries

    t_break = time.monotonic()
    await break_postgres(postgres, args.mode)
    down = await bot.poller.wait_cycles(args.down_cycles, after=t_break, within=120)
    journal_keys = [f"metadata:drill-journal-{n}-{i}" for i in range(args.journal_keys)]
    if journal_keys:  # a bigger journal than ~20 cycles leave: the replay's cost per record
        for start in range(0, len(journal_keys), 500):
            chunk = journal_keys[start : start + 500]
            await state.batch_write(
                [StateWrite(k, {"i": k, "pad": "x" * 150}, StateCategory.METADATA) for k in chunk]
            )
    health = state.health()
    journaled = health.journal_records
    bot.check_alive()
    orders_down = bot.orders_placed() - orders_before
    denied_down = int(d.counter_total(bot.metrics.orders, outcome="denied") - denied_before)
    degraded_seen = health.degraded_warm

    t_heal = time.monotonic()
    await heal_postgres(postgres, args.mode, backup)
    t_answer = time.monotonic()
    t_up = await d.wait_until(
        lambda: state.health().warm_recoveries > recoveries, 120, 0.002, "journal replayed"
    )
    recovery = state.health().last_warm_recovery
    assert recovery is not None
    after_cycles = await bot.poller.wait_cycles(2, after=t_up, ok=True)

    floor_ms = None
    if recovery.records_replayed:
        keys = [f"metadata:drill-floor-{n}-{i}" for i in range(recovery.records_replayed)]
        t0 = time.perf_counter()
        for start in range(0, len(keys), bot.settings.state.journal_replay_batch):
            chunk = keys[start : start + bot.settings.state.journal_replay_batch]
            await state.batch_write(
                [StateWrite(k, {"i": k, "pad": "x" * 150}, StateCategory.METADATA) for k in chunk]
            )
        floor_ms = d.ms(time.perf_counter() - t0)
        await state.batch_delete_state(keys)
    if journal_keys:
        await state.batch_delete_state(journal_keys)

    after = await versions(postgres.url, bot.settings.bot_id)
    coherence = await state.verify_coherence()
    lost = sorted(k for k in before if k not in after and not k.startswith("metadata:drill-"))
    backwards = sorted(k for k, v in before.items() if k in after and after[k] < v)
    replay_ms = d.ms(recovery.replay_seconds)
    return {
        "round": n,
        "mode": args.mode,
        "cycles_while_down": len(down),
        "failed_cycles_while_down": sum(not s.ok for s in down),
        "down_messages": sorted({s.message for s in down if not s.ok})[:3],
        "degraded_seen": degraded_seen,
        "orders_while_down": orders_down,
        "orders_refused_while_down": denied_down,
        "journal_records": journaled,
        "records_replayed": recovery.records_replayed,
        "replay_batches": recovery.batches,
        "replay_ms": replay_ms,
        "floor_ms": floor_ms,
        "ratio": round(replay_ms / floor_ms, 2) if replay_ms and floor_ms else None,
        "pg_start_ms": d.ms(t_answer - t_heal),
        "answer_to_up_ms": d.ms(t_up - t_answer),
        "database_lost": recovery.database_lost,
        "checkpoint_id": recovery.checkpoint_id,
        "data_loss_estimate_s": recovery.data_loss_estimate_seconds,
        "records_before": len(before),
        "records_lost": len(lost),
        "lost_keys": lost[:5],
        "versions_backwards": len(backwards),
        "coherent": coherence.ok and (args.mode == "empty" or (not lost and not backwards)),
        "healthy": d.latency(baseline),
        "down": d.latency(s for s in down if s.ok),
        "after": d.latency(after_cycles),
        "at": utc_now().isoformat(),
    }


async def drill(args: argparse.Namespace) -> int:
    log = d.configure_logging(NAME)
    services = d.start_services("postgres")
    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="perps-drill-") as tmp:
            root = Path(tmp)
            backup = root / "pg-backup"
            if args.mode == "empty":
                await take_backup(services.postgres, services.postgres.url, backup)
            bot_id = f"drill-{uuid.uuid4().hex[:8]}"
            # the ladder trades every cycle: the 30-per-minute order-rate guard would stop it in round 2
            extra = {"PERPS_WARM_OUTAGE_MODE": args.outage_mode, "RISK_MAX_ORDERS_PER_MINUTE": "none"}
            if args.mode == "empty":
                extra["CHECKPOINT_INTERVAL_SECONDS"] = "1"  # a recent checkpoint to restore
            settings = d.drill_settings(
                d.drill_env(services, root / "data", bot_id, args.interval, **extra), root
            )
            d.console.print(
                f"{NAME.replace('_', ' ')}: {args.rounds} round(s), mode {args.mode}, outage mode "
                f"{args.outage_mode}, interval {args.interval}s, bot log {log}"
            )
            ladder = d.Ladder()
            async with leased_bot(settings, args.poll_ms / 1000, ladder) as bot:
                for n in range(1, args.rounds + 1):
                    rounds.append(await one_round(bot, services.postgres, args, n, backup, ladder))
                    d.console.print(f"round {n}: done")
    finally:
        with contextlib.suppress(Exception):
            if args.mode == "stop":
                services.postgres.send_signal(signal.SIGCONT)
        services.close()
    return report(rounds, args, log)


def report(rounds: list[dict[str, Any]], args: argparse.Namespace, log: Path) -> int:
    columns = [
        "round", "cycles down", "failed", "orders down", "refused (grow)", "journal", "replayed", "replay ms",
        "floor ms", "ratio", "pg start ms", "answer->up ms", "lost", "back", "coherent", "db lost", "loss est s",
    ]  # fmt: skip
    rows = [
        [
            r["round"], r["cycles_while_down"], r["failed_cycles_while_down"], r["orders_while_down"],
            r["orders_refused_while_down"], r["journal_records"], r["records_replayed"], r["replay_ms"],
            r["floor_ms"], r["ratio"], r["pg_start_ms"], r["answer_to_up_ms"], r["records_lost"],
            r["versions_backwards"], r["coherent"], r["database_lost"], r["data_loss_estimate_s"],
        ]
        for r in rounds
    ]  # fmt: skip
    d.console.print(d.table(f"PostgreSQL {args.mode} under a leased bot: the outage journal", columns, rows))
    empty = args.mode == "empty"
    summary = {
        "cycles_while_down": sum(r["cycles_while_down"] for r in rounds),
        "failed_cycles_while_down": sum(r["failed_cycles_while_down"] for r in rounds),
        "orders_while_down": sum(r["orders_while_down"] for r in rounds),
        "orders_refused_while_down": sum(r["orders_refused_while_down"] for r in rounds),
        "journal_records": sum(r["journal_records"] for r in rounds),
        "replay_ms": {
            "median": d.med(r["replay_ms"] for r in rounds),
            "max": d.top(r["replay_ms"] for r in rounds),
        },
        "floor_ms": {
            "median": d.med(r["floor_ms"] for r in rounds),
            "max": d.top(r["floor_ms"] for r in rounds),
        },
        "ratio": {"median": d.med(r["ratio"] for r in rounds), "max": d.top(r["ratio"] for r in rounds)},
        "answer_to_up_ms": {
            "median": d.med(r["answer_to_up_ms"] for r in rounds),
            "max": d.top(r["answer_to_up_ms"] for r in rounds),
        },
        "records_lost": sum(r["records_lost"] for r in rounds),
        "versions_backwards": sum(r["versions_backwards"] for r in rounds),
        "coherent": all(r["coherent"] for r in rounds),
        "database_lost": all(r["database_lost"] for r in rounds)
        if empty
        else any(r["database_lost"] for r in rounds),
        "data_loss_estimate_s": d.top(r["data_loss_estimate_s"] for r in rounds),
    }
    ratio = summary["ratio"]["median"]
    checks = {
        "no_failed_cycle": summary["failed_cycles_while_down"] == 0,
        "orders_while_down": summary["orders_while_down"] > 0 or args.outage_mode != "reduce_only",
        "coherent": summary["coherent"],
        "replay_within_2x_floor": ratio is None or ratio <= 2.0,
    }
    if empty:
        checks["database_lost_detected"] = bool(summary["database_lost"])
        checks["data_loss_estimate_reported"] = summary["data_loss_estimate_s"] is not None
    else:
        checks["records_lost_0"] = summary["records_lost"] == 0
        checks["versions_backwards_0"] = summary["versions_backwards"] == 0
        checks["no_database_lost"] = not summary["database_lost"]
    ok = all(checks.values())
    path = d.write_json(
        NAME, {"args": vars(args), "rounds": rounds, "summary": summary, "checks": checks, "targets_met": ok}
    )
    d.console.print(f"JSON: {path}   bot log: {log}")
    print(  # plain: one line whatever the console width (tests and the lead parse it)
        d.result_line(
            NAME,
            len(rounds),
            mode=args.mode,
            outage_mode=args.outage_mode,
            cycles_while_down=summary["cycles_while_down"],
            failed_cycles=summary["failed_cycles_while_down"],
            orders_while_down=summary["orders_while_down"],
            refused_while_down=summary["orders_refused_while_down"],
            journal_records=summary["journal_records"],
            replay_ms=summary["replay_ms"]["median"],
            floor_ms=summary["floor_ms"]["median"],
            ratio=ratio,
            records_lost=summary["records_lost"],
            versions_backwards=summary["versions_backwards"],
            coherent=summary["coherent"],
            database_lost=summary["database_lost"],
            data_loss_estimate_s=summary["data_loss_estimate_s"],
            targets_met=ok,
        ),
        flush=True,
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=("kill", "stop", "empty"), default="kill")
    parser.add_argument("--outage-mode", choices=("reduce_only", "full"), default="reduce_only")
    parser.add_argument("--interval", type=float, default=0.1, help="bot cycle interval (s)")
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--baseline-cycles", type=int, default=5)
    parser.add_argument("--down-cycles", type=int, default=20)
    parser.add_argument("--journal-keys", type=int, default=1000, help="extra records written while down")
    args = parser.parse_args()
    if args.rounds < 1 or args.down_cycles < 1 or args.baseline_cycles < 1 or args.journal_keys < 0:
        raise d.DrillRefused(
            "--rounds, --down-cycles and --baseline-cycles must be >= 1, --journal-keys >= 0"
        )
    return asyncio.run(drill(args))


if __name__ == "__main__":
    raise SystemExit(main())
