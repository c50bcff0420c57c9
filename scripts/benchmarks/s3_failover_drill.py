#!/usr/bin/env python3
"""S3 failover drill: stop the S3 endpoint (moto) under a running bot, write COLD data during the outage.

    .venv/bin/python scripts/benchmarks/s3_failover_drill.py --rounds 3
    .venv/bin/python scripts/benchmarks/s3_failover_drill.py --rounds 3 --moto thread    # moto in the drill
    .venv/bin/python scripts/benchmarks/s3_failover_drill.py --rounds 3 --mode hang      # SIGSTOP moto
    .venv/bin/python scripts/benchmarks/s3_failover_drill.py --rounds 1 --ops 2 --down-seconds 1

A dev-profile bot (in-process simulated exchange, BTC-USD, a strategy that trades every cycle) runs on
redis-server + PostgreSQL + a throwaway moto S3 server (COLD), with the loop's own checkpoints every
``--checkpoint-interval`` s. moto runs in a process of its own by default, as a real S3 does (its start
replays the objects it held, so ``recover_ms`` includes that); ``--moto thread`` runs it in a thread of the
drill, where its CPU competes with the bot's under one GIL and several puts in flight gain little over
sequential ones. Each round:

1. baseline with S3 up: ``--ops`` on-demand checkpoints and ``--ops`` COLD writes (``archive:*`` records,
   whose body lives in an S3 segment), each timed; the cycle rate and latency;
2. moto is stopped; for ``--down-seconds`` the drill keeps taking checkpoints and COLD writes (the loop keeps
   trying its own periodic checkpoints); ``detect_ms`` = stop -> COLD degraded (seen after an operation, so
   its resolution is one checkpoint + one COLD write); reported: how
   many COLD operations failed / succeeded, the loop's ``checkpoint_failed`` events, cycles completed, cycle
   latency, and the spool depth (files under ``<data>/state/spool``) if the state layer spools;
3. moto is started again (objects survive: moto keeps them in this process); ``recover_ms`` = start() called
   -> first successful checkpoint (retried every ``--poll-ms``); with a spool, ``sync_ms`` = S3 answering
   (the first HeadBucket that succeeds, asked every 5 ms from a thread) -> spool empty (the bot's
   ``ColdRecovery.recovered_at``), found by the manager's own probe timer (nothing in the drill asks it to
   probe; waited for up to ``--sync-timeout`` s, 0 skips the wait), reported with the objects and bytes the
   sync uploaded (the manager's ``ColdRecovery``), ``sync_ms_per_object``, ``drain_ms`` (the sync itself:
   probe answered -> spool empty) and the COLD probe interval;
4. after: ``verify_coherence()``, the newest checkpoint verified (``restore_checkpoint("latest",
   verify_only=True)``), and every COLD write that was accepted during the outage readable;
5. the floor of this round: the same spooled blobs (copied when S3 was started) sent again to S3 by a bare
   boto3 ``put_object`` each, one after the other, without "Expect: 100-continue" as the bot sends them
   (``floor_ms_per_object``; ``sync_ratio`` = ``sync_ms_per_object`` / floor, target <= 1.0), by a stock
   client (``floor_default_ms_per_object``: a round trip more per put) and by the plain client with as many
   puts in flight as the drain (``floor_concurrent_ms_per_object``: what the server takes at most). The floors
   run right after the drain (a few seconds apart, on the same server), their order rotating round by round.

S3_ENDPOINT_URL is refused (the drill must own the endpoint it stops); REDIS_URL / DATABASE_URL may be
external. Writes var/benchmarks/s3_failover_drill.json and ends with a RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _drill as d
from _drill import mm

from bot_v2.monitoring.events import EventType, read_events
from bot_v2.state import StateCategory
from bot_v2.state.tiers.spool import DRAIN_CONCURRENCY

NAME = "s3_failover_drill"
STATE_DIR = d.ROOT / "src" / "bot_v2" / "state"


def spool_in_tree() -> bool:
    """Whether src/bot_v2/state has S3-down spool code (DESIGN.md "Recovery", S3 down); whether it is ACTIVE
    is what the drill observes (COLD writes accepted while S3 is down, files in the spool directory)."""
    return any("spool" in p.read_text() for p in STATE_DIR.rglob("*.py") if p.name != "settings.py")


def spool_depth(spool_dir: Path) -> int | None:
    if not spool_dir.exists():
        return None
    return sum(1 for p in spool_dir.rglob("*") if p.is_file())


def first_answer(url: str, stop: threading.Event) -> float:
    """Ask S3 (HeadBucket, one attempt, short timeouts) every 5 ms until it answers; return when (time.time():
    the bot's ColdRecovery is wall clock). Run in a thread beside the restart: a moto process opens its port
    (once it replayed the objects it held) up to one port poll before its start() returns, and the bot's
    probe does not wait for start() either."""
    import boto3
    import botocore.config

    config = botocore.config.Config(connect_timeout=0.2, read_timeout=0.5, retries={"total_max_attempts": 1})
    client = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", config=config, **d.S3_TEST_CREDENTIALS
    )
    try:
        while not stop.is_set():
            try:
                client.head_bucket(Bucket=d.S3_DRILL_BUCKET)
                return time.time()
            except Exception:  # not answering yet
                time.sleep(0.005)
        return time.time()
    finally:
        client.close()


def spooled_blobs(spool_dir: Path) -> list[bytes]:
    """The spooled objects' bytes (a file may be synced away while this reads: skipped)."""
    blobs = []
    for path in sorted(p for p in spool_dir.rglob("*") if p.is_file()):
        with contextlib.suppress(FileNotFoundError):
            blobs.append(path.read_bytes())
    return blobs


def put_floor(url: str, blobs: list[bytes], n: int) -> tuple[float, float, float] | None:
    """ms per object of a bare boto3 put_object of ``blobs`` (after warm-up puts), (plain, default,
    concurrent): ``plain`` one after the other without botocore's "Expect: 100-continue" (as the bot's own
    client sends them: it saves a round trip per put, so this is the strict floor), ``default`` a stock
    client, ``concurrent`` the plain client with as many puts in flight as the drain, from as many threads
    (what the server takes at most); the order rotates with the round ``n``. Run in a thread (the bot shares
    the drill's event loop)."""
    import boto3
    import botocore.handlers

    if not blobs:
        return None
    out: dict[str, float] = {}
    kinds = ["plain", "default", "concurrent"]
    for kind in kinds[n % 3 :] + kinds[: n % 3]:
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **d.S3_TEST_CREDENTIALS)
        if kind != "default":
            client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
        prefix = f"floor/{uuid.uuid4().hex[:8]}"

        def put(i: int, blob: bytes, client: Any = client, prefix: str = prefix) -> None:
            client.put_object(Bucket=d.S3_DRILL_BUCKET, Key=f"{prefix}/{i}", Body=blob)

        in_flight = DRAIN_CONCURRENCY if kind == "concurrent" else 1
        try:
            with ThreadPoolExecutor(in_flight) as pool:
                list(pool.map(put, range(-in_flight, 0), [blobs[0]] * in_flight))  # warm-up puts
                started = time.perf_counter()
                list(pool.map(put, range(len(blobs)), blobs))
                out[kind] = (time.perf_counter() - started) * 1000 / len(blobs)
        finally:
            client.close()
    return out["plain"], out["default"], out["concurrent"]


async def timed(fn: Any) -> tuple[bool, float, str]:
    started = time.monotonic()
    try:
        await fn()
    except Exception as exc:  # the drill reports every failure, it does not judge it here
        return False, time.monotonic() - started, f"{type(exc).__name__}: {exc}"[:160]
    return True, time.monotonic() - started, ""


async def cold_ops(bot: d.RunningBot, tag: str, count: int) -> list[dict[str, Any]]:
    """``count`` checkpoints and ``count`` COLD writes, interleaved; one entry per operation."""
    state = bot.state
    out = []
    for i in range(count):
        key = f"archive:drill-{tag}-{i}"
        value = {"tag": tag, "i": i, "pad": "x" * 256}
        ok, seconds, error = await timed(lambda: state.checkpoints.create_checkpoint("drill"))
        out.append(
            {"op": "checkpoint", "ok": ok, "ms": d.ms(seconds), "error": error, "at": time.monotonic()}
        )
        ok, seconds, error = await timed(lambda k=key, v=value: state.set_state(k, v, StateCategory.ARCHIVE))
        out.append(
            {
                "op": "cold_write",
                "key": key,
                "ok": ok,
                "ms": d.ms(seconds),
                "error": error,
                "at": time.monotonic(),
            }
        )
    return out


def rate(samples: list[d.CycleSample]) -> float | None:
    if len(samples) < 2:
        return None
    span = samples[-1].seen - samples[0].seen
    return round((len(samples) - 1) / span, 2) if span > 0 else None


async def one_round(bot: d.RunningBot, s3: Any, args: argparse.Namespace, n: int) -> dict[str, Any]:
    poll = args.poll_ms / 1000
    state = bot.state
    spool_dir = bot.settings.state.spool_dir
    events_path = bot.settings.events_path
    failed_events_before = len(read_events(events_path, EventType.CHECKPOINT_FAILED))
    if n == 1 and args.keys:
        await d.seed(state, args.keys)  # checkpoints of a realistic size
    outage = d.Outage(s3, args.mode)
    t_base = time.monotonic()
    baseline_ops = await cold_ops(bot, f"r{n}-up", args.ops)
    baseline = await bot.poller.wait_cycles(args.baseline_cycles, after=t_base, ok=True)

    t_stop = time.monotonic()
    await outage.begin()  # kill: the thread's server stops; hang: the moto process is SIGSTOPped
    t_kill = time.monotonic()  # the endpoint is closed now (moto's shutdown itself takes ~0.5 s)
    down_ops: list[dict[str, Any]] = []
    max_spool = spool_depth(spool_dir)
    batch = 0
    t_degraded = None
    while time.monotonic() - t_kill < args.down_seconds or not down_ops:
        down_ops += await cold_ops(bot, f"r{n}-down{batch}", 1)
        batch += 1
        if t_degraded is None and state.degraded_cold:
            t_degraded = time.monotonic()
        depth = spool_depth(spool_dir)
        if depth is not None:
            max_spool = max(max_spool or 0, depth)
        await asyncio.sleep(poll)
    down_cycles = bot.poller.since(t_kill)
    bot.check_alive()
    failed_events = len(read_events(events_path, EventType.CHECKPOINT_FAILED)) - failed_events_before
    spool_at_restart = spool_depth(spool_dir)

    blobs = spooled_blobs(spool_dir)
    recoveries_before = state.health().cold_recoveries
    stop_asking = threading.Event()
    answered = asyncio.ensure_future(asyncio.to_thread(first_answer, s3.url, stop_asking))
    t_restart = time.monotonic()
    try:
        await outage.end()
        t_answering = time.monotonic()
        answered_at = await asyncio.wait_for(answered, 30)  # wall clock: compared with the bot's ColdRecovery
    finally:
        stop_asking.set()

    async def checkpoint_ok() -> bool:
        ok, _, _ = await timed(lambda: state.checkpoints.create_checkpoint("drill-recovery"))
        return ok

    t_ok = await d.wait_until(checkpoint_ok, 60, poll, "a successful checkpoint")
    t_synced = None
    if spool_at_restart and args.sync_timeout > 0:
        with contextlib.suppress(TimeoutError):  # not drained in time: sync_ms stays empty, depth is reported
            t_synced = await d.wait_until(
                lambda: not spool_depth(spool_dir) and state.health().cold_recoveries > recoveries_before,
                args.sync_timeout,
                poll,
                "spool drained",
            )
    recovery = state.health().last_cold_recovery if t_synced is not None else None
    objects = recovery.objects_synced if recovery else None
    sync_ms = d.ms(recovery.recovered_at.timestamp() - answered_at) if recovery else None
    floors = await asyncio.to_thread(put_floor, s3.url, blobs, n)
    after = await bot.poller.wait_cycles(2, after=t_ok, ok=True)

    coherence = await state.verify_coherence()
    verified = await timed(lambda: state.checkpoints.restore_checkpoint("latest", verify_only=True))
    accepted = [op["key"] for op in down_ops if op["op"] == "cold_write" and op["ok"]]
    readable = await state.batch_get_state(accepted) if accepted else {}
    unreadable = [k for k in accepted if k not in readable]
    down_failed = [op for op in down_ops if not op["ok"]]
    return {
        "round": n,
        "mode": args.mode,
        "keys": args.keys,
        "max_cycle_ms": d.outage_cycles(down_cycles)["max_cycle_ms"],
        "detect_ms": d.ms(t_degraded - t_kill) if t_degraded is not None else None,
        "s3_stop_ms": d.ms(t_kill - t_stop),
        "ops_while_down": len(down_ops),
        "checkpoints_failed_while_down": sum(op["op"] == "checkpoint" for op in down_failed),
        "cold_writes_failed_while_down": sum(op["op"] == "cold_write" for op in down_failed),
        "cold_writes_accepted_while_down": len(accepted),
        "loop_checkpoint_failed_events": failed_events,
        "failed_op_ms": d.latency(d.CycleSample(0, False, op["ms"], "", "", 0.0) for op in down_failed),
        "error_examples": sorted({op["error"] for op in down_failed})[:2],
        "baseline_op_ms": {
            "checkpoint_p50": d.med(op["ms"] for op in baseline_ops if op["op"] == "checkpoint"),
            "cold_write_p50": d.med(op["ms"] for op in baseline_ops if op["op"] == "cold_write"),
        },
        "cycles_while_down": len(down_cycles),
        "ok_cycles_while_down": sum(s.ok for s in down_cycles),
        "cycles_per_s_healthy": rate(baseline),
        "cycles_per_s_down": rate(down_cycles),
        "spool_depth_max": max_spool,
        "spool_depth_at_restart": spool_at_restart,
        "s3_start_ms": d.ms(t_answering - t_restart),
        "recover_ms": d.ms(t_ok - t_restart),
        "sync_ms": sync_ms,
        "objects_synced": objects,
        "bytes_synced": recovery.bytes_synced if recovery else None,
        "sync_ms_per_object": round(sync_ms / objects, 2) if sync_ms is not None and objects else None,
        "drain_ms": d.ms(recovery.sync_seconds) if recovery else None,
        "drain_ms_per_object": round(recovery.sync_seconds * 1000 / objects, 2)
        if recovery and objects
        else None,
        "floor_ms_per_object": round(floors[0], 2) if floors else None,
        "floor_default_ms_per_object": round(floors[1], 2) if floors else None,
        "floor_concurrent_ms_per_object": round(floors[2], 2) if floors else None,
        "cold_probe_interval_ms": d.ms(bot.settings.state.cold_probe_interval_seconds),
        "spool_depth_after": spool_depth(spool_dir),
        "coherent": coherence.ok and verified[0] and not unreadable,
        "coherence_checked": coherence.checked,
        "latest_checkpoint_verifies": verified[0],
        "accepted_but_unreadable": len(unreadable),
        "healthy": d.latency(baseline),
        "down": d.latency(down_cycles),
        "after": d.latency(after),
        "cycle_errors": sum(not s.ok for s in bot.poller.since(t_base)),
    }


async def drill(args: argparse.Namespace) -> int:
    has_spool = spool_in_tree()
    rounds, _orders = await d.run_rounds(
        NAME,
        "s3",
        args,
        one_round,
        "stop S3 / write COLD / restart",
        with_s3=True,
        s3_process=args.mode == "hang" or args.moto == "process",
        extra_env={"CHECKPOINT_INTERVAL_SECONDS": str(args.checkpoint_interval)},
        banner=f", loop checkpoints every {args.checkpoint_interval}s, spool code in src/bot_v2/state: "
        f"{'yes' if has_spool else 'no'}",
    )
    return report(rounds, args, has_spool)


def ratio(r: dict[str, Any]) -> float | None:
    """sync ms per object / the floor's ms per object, in one round."""
    if r["sync_ms_per_object"] is None or not r["floor_ms_per_object"]:
        return None
    return round(r["sync_ms_per_object"] / r["floor_ms_per_object"], 2)


def report(rounds: list[dict[str, Any]], args: argparse.Namespace, has_spool: bool) -> int:
    columns = [
        "round", "detect ms", "ckpt failed", "cold writes failed", "accepted", "loop ckpt_failed",
        "failed op ms p50", "cycles down (ok)", "cycles/s up", "cycles/s down", "spool max", "recover ms",
        "synced", "KB", "sync ms", "ms/object", "floor ms/object", "ratio", "coherent",
    ]  # fmt: skip
    rows = [
        [
            r["round"], r["detect_ms"], r["checkpoints_failed_while_down"], r["cold_writes_failed_while_down"],
            r["cold_writes_accepted_while_down"], r["loop_checkpoint_failed_events"], r["failed_op_ms"]["p50_ms"],
            f"{r['cycles_while_down']} ({r['ok_cycles_while_down']})", r["cycles_per_s_healthy"],
            r["cycles_per_s_down"], r["spool_depth_max"], r["recover_ms"], r["objects_synced"],
            None if r["bytes_synced"] is None else round(r["bytes_synced"] / 1024, 1), r["sync_ms"],
            r["sync_ms_per_object"], r["floor_ms_per_object"], ratio(r), r["coherent"],
        ]
        for r in rounds
    ]  # fmt: skip
    d.console.print(d.table("S3 endpoint stopped under a running bot (per round)", columns, rows))
    active = any(r["cold_writes_accepted_while_down"] or r["spool_depth_max"] for r in rounds)
    summary = {
        "spool_code_in_tree": has_spool,
        "spool_active": active,
        "detect_ms": {
            "median": d.med(r["detect_ms"] for r in rounds),
            "max": d.top(r["detect_ms"] for r in rounds),
        },
        "recover_ms": {
            "median": d.med(r["recover_ms"] for r in rounds),
            "max": d.top(r["recover_ms"] for r in rounds),
        },
        "sync_ms": {
            "median": d.med(r["sync_ms"] for r in rounds),
            "max": d.top(r["sync_ms"] for r in rounds),
        },
        "objects_synced": d.med(r["objects_synced"] for r in rounds),
        "bytes_synced": d.med(r["bytes_synced"] for r in rounds),
        "sync_ms_per_object": d.med(r["sync_ms_per_object"] for r in rounds),
        "drain_ms_per_object": d.med(r["drain_ms_per_object"] for r in rounds),
        "floor_ms_per_object": d.med(r["floor_ms_per_object"] for r in rounds),
        "floor_default_ms_per_object": d.med(r["floor_default_ms_per_object"] for r in rounds),
        "floor_concurrent_ms_per_object": d.med(r["floor_concurrent_ms_per_object"] for r in rounds),
        "sync_ratio": d.med(ratio(r) for r in rounds),
        "cold_probe_interval_ms": rounds[0]["cold_probe_interval_ms"] if rounds else None,
        "checkpoint_ms_healthy_p50": d.med(r["baseline_op_ms"]["checkpoint_p50"] for r in rounds),
        "cold_write_ms_healthy_p50": d.med(r["baseline_op_ms"]["cold_write_p50"] for r in rounds),
        "failed_op_ms_p50": d.med(r["failed_op_ms"]["p50_ms"] for r in rounds),
        "checkpoints_failed": sum(r["checkpoints_failed_while_down"] for r in rounds),
        "cold_writes_failed": sum(r["cold_writes_failed_while_down"] for r in rounds),
        "cold_writes_accepted": sum(r["cold_writes_accepted_while_down"] for r in rounds),
        "loop_checkpoint_failed_events": sum(r["loop_checkpoint_failed_events"] for r in rounds),
        "spool_depth_max": d.top(r["spool_depth_max"] for r in rounds),
        "cycles_while_down": sum(r["cycles_while_down"] for r in rounds),
        "ok_cycles_while_down": sum(r["ok_cycles_while_down"] for r in rounds),
        "cycles_per_s_healthy": d.med(r["cycles_per_s_healthy"] for r in rounds),
        "cycles_per_s_down": d.med(r["cycles_per_s_down"] for r in rounds),
        "cycle_p50_healthy_ms": d.med(r["healthy"]["p50_ms"] for r in rounds),
        "cycle_p50_down_ms": d.med(r["down"]["p50_ms"] for r in rounds),
        "coherent": all(r["coherent"] for r in rounds),
        "cycle_errors": sum(r["cycle_errors"] for r in rounds),
    }
    d.console.print(
        d.table(
            "Summary (median / max over rounds)",
            ["what", "median", "max"],
            [
                ["detect ms (endpoint closed -> COLD degraded)", *mm(summary, "detect_ms")],
                ["recover ms (start -> checkpoint ok)", *mm(summary, "recover_ms")],
                ["spool sync ms (S3 answers -> spool empty)", *mm(summary, "sync_ms")],
                ["objects / bytes synced", summary["objects_synced"], summary["bytes_synced"]],
                ["sync ms per object / floor (put_object)", summary["sync_ms_per_object"],
                 summary["floor_ms_per_object"]],
                ["sync / floor per object (target <= 1.0)", summary["sync_ratio"], None],
                ["floor ms per object, stock client (100-continue)", summary["floor_default_ms_per_object"],
                 None],
                [f"floor ms per object, {DRAIN_CONCURRENCY} puts in flight (the server's most)",
                 summary["floor_concurrent_ms_per_object"], None],
                ["drain ms per object (probe answered -> empty)", summary["drain_ms_per_object"], None],
                ["COLD probe interval ms", summary["cold_probe_interval_ms"], None],
                ["checkpoint ms, S3 up (baseline)", summary["checkpoint_ms_healthy_p50"], None],
                ["COLD write ms, S3 up (baseline)", summary["cold_write_ms_healthy_p50"], None],
                ["failed COLD op ms, S3 down", summary["failed_op_ms_p50"], None],
                ["cycles/s up / down", summary["cycles_per_s_healthy"], summary["cycles_per_s_down"]],
                ["cycle p50 ms up / down", summary["cycle_p50_healthy_ms"], summary["cycle_p50_down_ms"]],
            ],
        )
    )  # fmt: skip
    if not active:
        d.console.print(
            f"[yellow]no active S3-down spool[/] (spool code in src/bot_v2/state: {'yes' if has_spool else 'no'}):"
            " COLD writes and checkpoints fail while S3 is down; trading continues (WARM is the durable copy)."
        )
    out = d.BENCH_DIR / f"{NAME}_hang.json" if args.mode == "hang" else None
    path = d.write_json(NAME, {"settings": vars(args), "rounds": rounds, "summary": summary}, out)
    d.console.print(f"wrote {path}")
    print(
        d.result_line(
            NAME,
            len(rounds),
            mode=args.mode,
            keys=args.keys,
            max_cycle_ms=d.top(r["max_cycle_ms"] for r in rounds),
            detect_ms=summary["detect_ms"]["median"],
            recover_ms=summary["recover_ms"]["median"],
            sync_ms=summary["sync_ms"]["median"],
            objects=summary["objects_synced"],
            bytes=summary["bytes_synced"],
            sync_ms_per_object=summary["sync_ms_per_object"],
            floor_ms_per_object=summary["floor_ms_per_object"],
            floor_default_ms_per_object=summary["floor_default_ms_per_object"],
            floor_concurrent_ms_per_object=summary["floor_concurrent_ms_per_object"],
            sync_ratio=summary["sync_ratio"],
            drain_ms_per_object=summary["drain_ms_per_object"],
            cold_probe_interval_ms=summary["cold_probe_interval_ms"],
            spool=active,
            spool_depth_max=summary["spool_depth_max"],
            checkpoints_failed=summary["checkpoints_failed"],
            cold_writes_failed=summary["cold_writes_failed"],
            checkpoint_failed_events=summary["loop_checkpoint_failed_events"],
            cycles_down=summary["ok_cycles_while_down"],
            coherent=summary["coherent"],
            errors=summary["cycle_errors"],
        ),
        flush=True,
    )
    return 0 if summary["coherent"] and summary["ok_cycles_while_down"] > 0 else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = d.arg_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="stop/start rounds (default 3)")
    d.add_outage_args(parser)
    parser.add_argument("--interval", type=float, default=0.1, help="cycle interval in s (default 0.1)")
    parser.add_argument(
        "--baseline-cycles", type=int, default=10, help="healthy cycles per round (default 10)"
    )
    parser.add_argument(
        "--ops", type=int, default=3, help="checkpoints + COLD writes in the baseline (default 3)"
    )
    parser.add_argument("--down-seconds", type=float, default=3.0, help="outage length in s (default 3)")
    parser.add_argument(
        "--checkpoint-interval", type=float, default=1.0, help="loop checkpoint interval s (>= 1)"
    )
    parser.add_argument(
        "--moto",
        choices=("thread", "process"),
        default="process",
        help="moto in a process of its own (default: as S3 / MinIO is, its CPU is not the bot's; always with "
        "--mode hang) or in a thread of the drill (its CPU then competes with the bot's under one GIL)",
    )
    parser.add_argument(
        "--sync-timeout",
        type=float,
        default=90.0,
        help="wait this long for the spool to drain; 0: do not wait",
    )
    parser.add_argument("--poll-ms", type=float, default=10.0, help="health polling interval (default 10)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(drill(parse_args())))
