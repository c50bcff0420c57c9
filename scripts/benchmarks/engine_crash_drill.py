#!/usr/bin/env python3
"""Engine crash drill: SIGKILL the bot process, restart it, measure the restart and check the reconciliation.

    .venv/bin/python scripts/benchmarks/engine_crash_drill.py --rounds 3
    .venv/bin/python scripts/benchmarks/engine_crash_drill.py --rounds 1 --fast     # after_ack + clean only

The exchange is a standalone simulator process (``python -m bot_v2.brokerages.simulated``) that outlives the
bot; the bot is its own process (this script with ``--child-bot``: dev profile pointed at that simulator,
real redis-server + PostgreSQL state, BTC-USD, a strategy that trades 0.001 every cycle). Each round runs
every ``--modes`` entry with a fresh bot id and client id prefix:

* ``clean``        -- ``--cycles-before`` cycles, SIGTERM (clean stop): the BASELINE restart of the same run;
* ``after_intent`` -- PERPS_TEST_CRASH_AT=after_intent: SIGKILL after the first intent is durable, before the
  exchange is called (deterministic);
* ``after_ack``    -- PERPS_TEST_CRASH_AT=after_ack: SIGKILL after the exchange acknowledged the first order,
  before any bookkeeping (deterministic);
* ``random``       -- SIGKILL at a random moment within ``--random-max`` s after the first healthy cycle
  (``--mode hang``: SIGSTOP there instead, SIGCONT after ``--hang-seconds``; ``resume_ms`` = SIGCONT -> the
  next cycle of the same process, which is then stopped cleanly and restarted like ``clean``).

``--mode hang`` runs ``clean`` and ``random`` (the crash points are kills by nature). Before each first
phase the bot's state gets ``--keys`` realistic mixed records (``_records.py``, default 1,000): the restart
loads a realistic state. The floor of each round is its ``clean`` restart (same run, same keys): ``ratio`` =
crash (or hang) restart / clean restart.

Then the bot is restarted for ``--cycles-after`` cycles. Measured: ``restart_ms`` = process spawned -> first
cycle in its ``health.json`` (interpreter start, imports, connections, reconciliation, warm-up and one cycle;
polled every ``--poll-ms``), the bot's own reconciliation time, and the reconciliation report (unclean
shutdown, adopted orders, resolved intents, missed fills). Checked against the exchange (via CoinbaseBroker):
duplicate orders (two exchange orders for one client order id, or an order with no intent in state: must be
0), every exchange fill stored exactly once in state (no missing, no extra), the stored BTC-USD position equal
to the position derived from the exchange fills, no intent left pending.

REDIS_URL / DATABASE_URL may point at external servers (nothing is killed but the bot). Writes
var/benchmarks/engine_crash_drill.json and ends with a RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import _chaos as c
import _drill as d
from rich.progress import Progress

from bot_v2.config import load_settings
from bot_v2.domain import Symbol
from bot_v2.orchestration import keys
from bot_v2.orchestration.ledger import derive_positions
from bot_v2.orchestration.wiring import open_runtime, open_state

NAME = "engine_crash_drill"
BTC = Symbol("BTC-USD")
MODES = ("clean", "after_intent", "after_ack", "random")
DONE = "DRILL BOT DONE "


# --- the bot process --------------------------------------------------------------------------------------


async def child_bot(cycles: int) -> int:
    # the bot's INFO lines (recovery, position validation, fills) go to stderr: the drill's bots.log
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("urllib3", "asyncio", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = load_settings("dev", dict(os.environ))
    async with open_runtime(settings) as runtime:
        from bot_v2.orchestration.bot import run_bot

        summary = await run_bot(runtime, max_cycles=cycles, strategy=d.Flipper())
    payload = {
        "cycles": summary.cycles,
        "orders_placed": summary.orders_placed,
        "fills": summary.fills,
        "trading_state": summary.trading_state,
        "errors": summary.errors,
        "reconciliation": summary.reconciliation,
    }
    print(DONE + json.dumps(payload, default=str), flush=True)
    return 0


# --- the drill --------------------------------------------------------------------------------------------


def spawn_bot(env: dict[str, str], cycles: int, log: Path) -> subprocess.Popen[str]:
    with log.open("a") as err:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child-bot", "--cycles", str(cycles)],
            cwd=d.ROOT,
            env=c.child_environ(env),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


async def wait_exit(proc: subprocess.Popen[str], limit_s: float) -> tuple[int, str]:
    try:
        out, _ = await asyncio.to_thread(proc.communicate, timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = await asyncio.to_thread(proc.communicate)
        raise RuntimeError(f"bot process did not finish within {limit_s}s") from None
    return proc.returncode, out or ""


def bot_summary(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(DONE):
            return dict(json.loads(line[len(DONE) :]))
    return {}


async def seed_state(env: dict[str, str], root: Path, keys_count: int) -> None:
    """``keys_count`` realistic records in the bot's state before its first start (through its own settings)."""
    if keys_count:
        async with open_state(load_settings("dev", env, root=root)) as state:
            await d.seed(state, keys_count)


async def hang_bot(proc: subprocess.Popen[str], poller: d.HealthPoller, seconds: float) -> float:
    """SIGSTOP the bot for ``seconds``, SIGCONT it; return ms from SIGCONT to its next cycle."""
    proc.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        proc.send_signal(signal.SIGCONT)
    t_cont = time.monotonic()
    resumed = await poller.wait_cycles(1, after=t_cont, within=60)
    return round((resumed[0].seen - t_cont) * 1000, 1)


async def first_phase(mode: str, env: dict[str, str], args: argparse.Namespace, log: Path) -> dict[str, Any]:
    poll = args.poll_ms / 1000
    hang = mode == "random" and args.mode == "hang"
    resume_ms = None
    crash = {"PERPS_TEST_CRASH_AT": mode} if mode in ("after_intent", "after_ack") else {}
    proc = spawn_bot(env | crash, 100_000 if not crash else 1_000, log)
    poller = d.HealthPoller(Path(env["PERPS_DATA_DIR"]) / "health.json", poll, pid=proc.pid)
    poller.start()
    killed_after = None
    try:
        if mode == "clean":
            await poller.wait_cycles(args.cycles_before, after=0, ok=True, within=60)
            proc.send_signal(signal.SIGTERM)
        elif mode == "random":
            first = await poller.wait_cycles(1, after=0, ok=True, within=60)
            delay = random.uniform(0, args.random_max)
            await asyncio.sleep(max(0.0, first[0].seen + delay - time.monotonic()))
            if hang:
                resume_ms = await hang_bot(proc, poller, args.hang_seconds)
                proc.send_signal(signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGKILL)
            killed_after = round(delay * 1000, 1)
        code, _ = await wait_exit(proc, 60)
    finally:
        await poller.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected = 0 if mode == "clean" or hang else -signal.SIGKILL
    return {"exit_code": code, "as_expected": code == expected, "cycles_before_crash": len(poller.samples),
            "killed_ms_after_first_cycle": killed_after, "resume_ms": resume_ms,
            "unclean_expected": mode != "clean" and not hang}  # fmt: skip


async def restart(env: dict[str, str], args: argparse.Namespace, log: Path) -> dict[str, Any]:
    poll = args.poll_ms / 1000
    t0 = time.monotonic()
    proc = spawn_bot(env, args.cycles_after, log)
    poller = d.HealthPoller(Path(env["PERPS_DATA_DIR"]) / "health.json", poll, pid=proc.pid)
    poller.start()
    try:
        first = await poller.wait_cycles(1, after=0, within=60)
        code, out = await wait_exit(proc, 120)
    finally:
        await poller.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summary = bot_summary(out)
    ok_cycles = [s for s in poller.samples if s.ok]
    return {
        "exit_code": code,
        "restart_ms": d.ms(first[0].seen - t0),
        "first_ok_cycle_ms": d.ms(ok_cycles[0].seen - t0) if ok_cycles else None,
        "summary": summary,
    }


async def state_view(
    env: dict[str, str], root: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    settings = load_settings("dev", env, root=root)
    async with open_state(settings) as state:
        fills = await state.batch_get_state(await state.get_keys_by_pattern("fills:*"))
        intents = await state.batch_get_state(await state.get_keys_by_pattern("intents:*"))
        position = await state.get_state(keys.position_key(BTC))
        return dict(fills), dict(intents), dict(position or {})


async def one_mode(
    mode: str, n: int, services: d.Services, sim: c.Simulator, root: Path, args: argparse.Namespace, log: Path
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    prefix = f"{tag}-"
    data_dir = root / f"r{n}-{mode}"
    env = {
        "COINBASE_BASE_URL": sim.base_url,
        "COINBASE_KEY_FILE": str(sim.key_file),
        "COINBASE_CA_FILE": str(sim.ca_file),
        "REDIS_URL": services.redis.url,
        "DATABASE_URL": services.postgres.url,
        "PERPS_DATA_DIR": str(data_dir),
        "PERPS_BOT_ID": f"drill-{tag}",
        "PERPS_CLIENT_ID_PREFIX": prefix,
        "PERPS_SYMBOLS": "BTC-USD",
        "PERPS_INTERVAL_SECONDS": str(args.interval),
        # the restart follows within seconds: no grace window, so an intent that never reached the exchange
        # is FAILED at once instead of staying UNKNOWN (looked up again) for PERPS_INTENT_GRACE_SECONDS
        "PERPS_INTENT_GRACE_SECONDS": "0",
        **d.QUIET_RISK_ENV,
    }
    await seed_state(env, root, args.keys)
    before = await first_phase(mode, env, args, log)
    after = await restart(env, args, log)
    orders, exchange_fills = await c.exchange_view(sim.base_url, sim.key_file, sim.ca_file, prefix)
    fills, intents, position = await state_view(env, root)

    client_ids = [o.client_order_id for o in orders]
    intent_ids = {k.removeprefix("intents:") for k in intents}
    duplicates = len(client_ids) - len(set(client_ids))
    orphans = [coid for coid in set(client_ids) if coid not in intent_ids]
    pending = [
        k for k, v in intents.items() if isinstance(v, dict) and v.get("status") not in ("DONE", "FAILED")
    ]
    stored = sorted(k.removeprefix("fills:") for k in fills)
    at_exchange = sorted(f.trade_id for f in exchange_fills)
    expected = derive_positions(exchange_fills).get(BTC)
    expected_qty = expected.quantity if expected else Decimal(0)
    stored_qty = Decimal(str(position.get("quantity", 0)))
    report = (after["summary"] or {}).get("reconciliation") or {}
    resolved = report.get("resolved_intents") or []
    return {
        "round": n,
        "mode": mode,
        "outage": "hang" if before["resume_ms"] is not None else "kill",
        "keys": args.keys,
        "resume_ms": before["resume_ms"],
        "unclean_expected": before["unclean_expected"],
        "first_exit_code": before["exit_code"],
        "crashed_as_expected": before["as_expected"],
        "killed_ms_after_first_cycle": before["killed_ms_after_first_cycle"],
        "restart_exit_code": after["exit_code"],
        "restart_ms": after["restart_ms"],
        "first_ok_cycle_ms": after["first_ok_cycle_ms"],
        "reconcile_ms": report.get("duration_ms"),
        "unclean_shutdown": report.get("unclean_shutdown"),
        "adopted_orders": len(report.get("adopted_orders") or []),
        "resolved_intents": len(resolved),
        "resolved_outcomes": sorted(str(r.get("outcome")) for r in resolved if isinstance(r, dict)),
        "missed_fills": report.get("missed_fills"),
        "cancelled_orders": len(report.get("cancelled_orders") or []),
        "exchange_orders": len(orders),
        "duplicates": duplicates + len(orphans),
        "orphan_orders": len(orphans),
        "pending_intents": len(pending),
        "exchange_fills": len(at_exchange),
        "fills_exactly_once": stored == at_exchange and len(set(at_exchange)) == len(at_exchange),
        "position_stored": str(stored_qty),
        "position_exchange": str(expected_qty),
        "positions_equal": stored_qty == expected_qty,
        "restart_errors": (after["summary"] or {}).get("errors", []),
    }


def verdict(r: dict[str, Any]) -> bool:
    return bool(
        r["crashed_as_expected"]
        and r["restart_exit_code"] == 0
        and r["duplicates"] == 0
        and r["pending_intents"] == 0
        and r["fills_exactly_once"]
        and r["positions_equal"]
        and r["unclean_shutdown"] == r["unclean_expected"]
    )


async def drill(args: argparse.Namespace) -> int:
    d.configure_logging(NAME)
    log = d.BENCH_DIR / f"{NAME}.bots.log"
    log.write_text("")
    modes = ["after_ack", "clean"] if args.fast else args.modes
    if args.mode == "hang":  # the crash points are kills by nature: hang the bot at a random moment
        modes = ["clean", "random"]
    services = d.start_services("none")
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="perps-drill-") as tmp:
            root = Path(tmp)
            sim = c.Simulator(root / "sim")
            try:
                d.console.print(
                    f"engine crash drill: {args.rounds} round(s) x {', '.join(modes)}; interval {args.interval}s, "
                    f"poll {args.poll_ms} ms; bot stderr -> {log}"
                )
                with Progress(console=d.console, transient=True) as progress:
                    task = progress.add_task("drill", total=args.rounds * len(modes))
                    for n in range(1, args.rounds + 1):
                        for mode in modes:
                            progress.update(task, description=f"round {n}: {mode}")
                            results.append(await one_mode(mode, n, services, sim, root, args, log))
                            progress.advance(task)
            finally:
                sim.close()
    finally:
        services.close()
    return report(results, args, modes)


def report(results: list[dict[str, Any]], args: argparse.Namespace, modes: list[str]) -> int:
    columns = [
        "round", "mode", "exit", "restart ms", "reconcile ms", "unclean", "adopted", "resolved", "missed fills",
        "orders", "dups", "fills once", "pos equal", "ok",
    ]  # fmt: skip
    rows = [
        [
            r["round"], r["mode"], r["first_exit_code"], r["restart_ms"], r["reconcile_ms"], r["unclean_shutdown"],
            r["adopted_orders"], " ".join(r["resolved_outcomes"]) or "-", r["missed_fills"], r["exchange_orders"],
            r["duplicates"], r["fills_exactly_once"], r["positions_equal"], verdict(r),
        ]
        for r in results
    ]  # fmt: skip
    what = "SIGKILLed (random: SIGSTOPped, SIGCONTed)" if args.mode == "hang" else "SIGKILLed"
    d.console.print(d.table(f"Bot {what}, restarted (per round and mode)", columns, rows))
    per_mode: dict[str, Any] = {}
    for mode in modes:
        rs = [r for r in results if r["mode"] == mode]
        per_mode[mode] = {
            "restart_ms_median": d.med(r["restart_ms"] for r in rs),
            "restart_ms_max": d.top(r["restart_ms"] for r in rs),
            "reconcile_ms_median": d.med(r["reconcile_ms"] for r in rs),
            "ok": all(verdict(r) for r in rs),
        }
    crashes = [r for r in results if r["mode"] != "clean"]
    baseline = d.med(r["restart_ms"] for r in results if r["mode"] == "clean")
    crash_restart = d.med(r["restart_ms"] for r in crashes)
    ratios = [
        r["restart_ms"] / clean["restart_ms"]
        for r in crashes
        for clean in results
        if clean["mode"] == "clean"
        and clean["round"] == r["round"]
        and r["restart_ms"]
        and clean["restart_ms"]
    ]
    summary = {
        "per_mode": per_mode,
        "restart_ms_clean": baseline,
        "restart_ms_crash": crash_restart,
        "crash_vs_clean": round(crash_restart / baseline, 2) if baseline and crash_restart else None,
        "ratio_median": d.med(ratios),
        "resume_ms_max": d.top(r["resume_ms"] for r in results),
        "duplicates": sum(r["duplicates"] for r in results),
        "adopted_orders": sum(r["adopted_orders"] for r in results),
        "resolved_intents": sum(r["resolved_intents"] for r in results),
        "missed_fills": sum(r["missed_fills"] or 0 for r in results),
        "fills_exactly_once": all(r["fills_exactly_once"] for r in results),
        "positions_equal": all(r["positions_equal"] for r in results),
        "coherent": all(verdict(r) for r in results),
        "errors": sum(not verdict(r) for r in results),
    }
    d.console.print(
        d.table(
            "Summary (median / max restart over rounds)",
            ["mode", "restart ms median", "restart ms max", "reconcile ms median", "ok"],
            [[m, v["restart_ms_median"], v["restart_ms_max"], v["reconcile_ms_median"], v["ok"]]
             for m, v in per_mode.items()],
        )
    )  # fmt: skip
    out = d.BENCH_DIR / f"{NAME}_hang.json" if args.mode == "hang" else None
    payload = {"settings": vars(args), "modes": modes, "rounds": results, "summary": summary}
    path = d.write_json(NAME, payload, out)
    d.console.print(f"wrote {path}")
    print(
        d.result_line(
            NAME,
            args.rounds,
            mode=args.mode,
            keys=args.keys,
            modes=",".join(modes),
            recover_ms=crash_restart,
            floor_ms=baseline,
            ratio=summary["ratio_median"],
            resume_ms=summary["resume_ms_max"],
            clean_restart_ms=baseline,
            crash_vs_clean=summary["crash_vs_clean"],
            adopted=summary["adopted_orders"],
            resolved_intents=summary["resolved_intents"],
            missed_fills=summary["missed_fills"],
            duplicates=summary["duplicates"],
            fills_once=summary["fills_exactly_once"],
            positions_equal=summary["positions_equal"],
            coherent=summary["coherent"],
            errors=summary["errors"],
        ),
        flush=True,
    )
    return 0 if summary["coherent"] else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = d.arg_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs every mode (default 3)")
    parser.add_argument(
        "--modes",
        type=lambda s: [m.strip() for m in s.split(",") if m.strip()],
        default=list(MODES),
        help=f"comma-separated, of {','.join(MODES)} (default all)",
    )
    parser.add_argument("--fast", action="store_true", help="only after_ack and clean (smoke test)")
    d.add_outage_args(parser)
    parser.add_argument(
        "--hang-seconds",
        type=float,
        default=1.0,
        help="--mode hang: the bot stays stopped this long (default 1)",
    )
    parser.add_argument("--interval", type=float, default=0.1, help="cycle interval in s (default 0.1)")
    parser.add_argument("--cycles-before", type=int, default=5, help="clean mode: cycles before SIGTERM")
    parser.add_argument("--cycles-after", type=int, default=5, help="cycles of the restarted bot (default 5)")
    parser.add_argument(
        "--random-max", type=float, default=1.0, help="random mode: kill within s (default 1)"
    )
    parser.add_argument("--poll-ms", type=float, default=10.0, help="health polling interval (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random kill moments")
    parser.add_argument("--child-bot", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cycles", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)} (choose from {', '.join(MODES)})")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.child_bot:
        raise SystemExit(asyncio.run(child_bot(arguments.cycles)))
    if arguments.seed is not None:
        random.seed(arguments.seed)
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(asyncio.run(drill(arguments)))
