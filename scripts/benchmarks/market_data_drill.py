#!/usr/bin/env python3
"""Market data drill: the WebSocket feed against REST polling, then the feed dropped, stalled and gapped.

    .venv/bin/python scripts/benchmarks/market_data_drill.py                       # about 2 minutes
    .venv/bin/python scripts/benchmarks/market_data_drill.py --fills 3 --quote-seconds 15

The simulated exchange is the standalone process (``python -m bot_v2.brokerages.simulated``: TLS REST + wss://
feed, the price walk every 0.25 s); the drill moves prices and flips the feed's fault switches through its control
routes (``RemoteSimulatorControl``, with the admin token of its READY line; its stderr goes to
var/benchmarks/market_data_drill.simulator.log). A dev-profile bot runs in the drill's process against it as an
external exchange (COINBASE_BASE_URL, COINBASE_WS_URL, its CA and key file) at ``--interval`` seconds (default 5,
the dev profile's interval), on BTC-USD, holding (it places no order of its own). In the same run:

1. quote age: every ~50 ms (shuffled instants) the age (now - exchange time) of the newest quote known
   (a) from the feed (a ``CoinbaseStream`` like the bot's) and (b) from REST best bid/ask polled every
   ``--interval`` s; the bot's own per-cycle quote age (``perps_bot_quote_age_seconds``, age at use) too;
2. fill latency: ``--fills`` resting limit buys with the bot's client-id prefix, adopted by the bot's order
   discovery, then filled by moving the price; the bot books each fill from the user channel
   (``fill_booking_seconds{source=ws}``: exchange fill time -> booked). Then the same with the feed stalled,
   so fills come from the REST sync of the next cycle (``source=rest``). Rounds alternate ws / rest;
3. faults on the running bot's feed: drop (close every socket and refuse new ones for ``--down-seconds``),
   stall (sockets open, nothing sent), gap (one sequence number skipped). detect_ms = fault -> the bot's
   ``perps_bot_ws_connected`` gauge 0; reconnect_ms = the simulator accepting / answering again -> gauge 1
   (for a gap: detection -> gauge 1); cycles served from REST meanwhile and failed cycles are counted. A
   switch's instant is taken just before its control request (one local HTTPS round trip, a few ms), so
   detect_ms and reconnect_ms include that round trip.

Targets (issue 12): ws quote age p99 >= 5x lower than REST polling; fills booked <= 100 ms after the exchange's
fill; a dropped / stalled feed detected within COINBASE_WS_STALE_SECONDS and back within 1 s of the simulator
accepting again; no failed cycle. Writes var/benchmarks/market_data_drill.json; last line is RESULT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import _drill as d

from bot_v2.brokerages.coinbase import CoinbaseBroker, CoinbaseConnection
from bot_v2.brokerages.simulated import StandaloneSimulator
from bot_v2.config import load_settings
from bot_v2.domain import Position, Quote, Symbol
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.wiring import open_runtime
from bot_v2.strategies import Decision, MarketView

NAME = "market_data_drill"
BTC = Symbol("BTC-USD")
STALE_SECONDS = 2.0


class Hold:
    name = "drill_hold"
    required_history = 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        return Decision.hold(view.symbol, "drill")


def sample(metrics: BotMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def wait_for(check: Any, within: float, poll: float = 0.005) -> float | None:
    """Poll ``check()`` until true; return the monotonic time it became true (None after ``within`` s)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        await asyncio.sleep(poll)
    return None


async def quote_ages(
    sim: StandaloneSimulator, broker: CoinbaseBroker, seconds: float, interval: float
) -> dict[str, Any]:
    """Ages of the newest feed quote and the newest REST-polled quote at the same shuffled instants."""
    stream = broker.open_stream([BTC], user_channel=False)
    assert stream is not None
    ws_ages: list[float] = []
    rest_ages: list[float] = []
    polled: dict[str, Quote] = {}

    async def poll_rest() -> None:
        while True:
            polled["q"] = (await broker.get_quotes([BTC]))[BTC]
            await asyncio.sleep(interval)

    async with stream:
        await wait_for(lambda: stream.quotes() is not None, 10)
        poller = asyncio.create_task(poll_rest())
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await asyncio.sleep(random.uniform(0.02, 0.08))
                now = datetime.now(UTC)
                quotes = stream.quotes()
                if quotes is not None and "q" in polled:
                    ws_ages.append((now - quotes[BTC].time).total_seconds())
                    rest_ages.append((now - polled["q"].time).total_seconds())
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
    return {"ws": summary_ms(ws_ages), "rest": summary_ms(rest_ages)}


def summary_ms(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": d.ms(d.pct(values, 0.5)),
        "p99_ms": d.ms(d.pct(values, 0.99)),
        "max_ms": d.ms(max(values) if values else None),
    }


async def one_fill(
    sim: StandaloneSimulator, runtime: Any, metrics: BotMetrics, prefix: str, source: str, n: int
) -> float | None:
    """Place a resting buy with the bot's prefix, wait until the bot follows it, fill it; booking latency."""
    control = sim.control
    client = _sdk(sim)
    price = await asyncio.to_thread(control.price, BTC)
    limit = (price * Decimal("0.995")).quantize(Decimal("0.01"))
    cid = f"{prefix}md{n}-{os.getpid() % 1000}"
    await asyncio.to_thread(
        client.limit_order_gtc_buy, cid, "BTC-USD", base_size="0.001", limit_price=str(limit)
    )
    client.session.close()
    state = runtime.state

    async def followed() -> bool:
        return await state.get_state(keys.order_key(cid)) is not None

    deadline = time.monotonic() + 30
    while not await followed():
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.02)
    count = sample(metrics, "perps_bot_fill_booking_seconds_count", source=source)
    total = sample(metrics, "perps_bot_fill_booking_seconds_sum", source=source)
    await asyncio.to_thread(control.set_price, BTC, limit * Decimal("0.99"))
    got = await wait_for(
        lambda: sample(metrics, "perps_bot_fill_booking_seconds_count", source=source) > count, 30
    )
    if got is None:
        return None
    return sample(metrics, "perps_bot_fill_booking_seconds_sum", source=source) - total


def _sdk(sim: StandaloneSimulator) -> Any:
    from coinbase.rest import RESTClient

    client = RESTClient(key_file=str(sim.key_file), base_url=sim.base_url, timeout=5)
    client.session.trust_env = False
    client.session.verify = str(sim.ca_path)
    return client


async def fault(
    sim: StandaloneSimulator, metrics: BotMetrics, kind: str, down_seconds: float
) -> dict[str, Any]:
    """Break the feed one way; detection and reconnect times from the bot's ws_connected gauge."""
    control = sim.control
    connected = lambda: sample(metrics, "perps_bot_ws_connected") == 1  # noqa: E731
    await wait_for(connected, 15)
    rest_before = sample(metrics, "perps_bot_market_data_cycles_total", source="rest")
    gaps_before = sample(metrics, "perps_bot_ws_sequence_gaps_total")
    started = time.monotonic()
    if kind == "drop":
        await asyncio.to_thread(control.refuse_websockets, True)
        await asyncio.to_thread(control.close_websockets, 1011)
    elif kind == "stall":
        await asyncio.to_thread(control.stall_websockets, True)
    else:
        await asyncio.to_thread(control.skip_websocket_sequence, 1)
    detected = await wait_for(lambda: not connected(), STALE_SECONDS + 5)
    accepted = detected
    if kind in ("drop", "stall"):
        await asyncio.sleep(down_seconds)
        accepted = time.monotonic()
        if kind == "drop":
            await asyncio.to_thread(control.refuse_websockets, False)
        else:
            await asyncio.to_thread(control.stall_websockets, False)
    back = await wait_for(connected, 15)
    return {
        "kind": kind,
        "detect_ms": d.ms(detected - started) if detected else None,
        "reconnect_ms": d.ms(back - accepted) if back and accepted else None,
        "rest_cycles": int(
            sample(metrics, "perps_bot_market_data_cycles_total", source="rest") - rest_before
        ),
        "gaps": int(sample(metrics, "perps_bot_ws_sequence_gaps_total") - gaps_before),
    }


async def drill(args: argparse.Namespace) -> int:
    d.configure_logging(NAME)
    with (
        tempfile.TemporaryDirectory(prefix="md-drill-") as tmp,
        (d.BENCH_DIR / f"{NAME}.simulator.log").open("w") as sim_log,
    ):
        root = Path(tmp)
        sim = await asyncio.to_thread(
            StandaloneSimulator,
            root / "sim",
            *("--seed", "7", "--tick-seconds", "0.25", "--rate-limit", "10000"),
            stderr=sim_log,
        )
        try:
            return await run(sim, root, args)
        finally:
            await asyncio.to_thread(sim.stop)


async def run(sim: StandaloneSimulator, root: Path, args: argparse.Namespace) -> int:
    assert sim.ws_url is not None
    connection = CoinbaseConnection(
        base_url=sim.base_url,
        key_file=sim.key_file,
        ca_file=sim.ca_path,
        timeout_seconds=5,
        ws_url=sim.ws_url,
    )
    env = {
        "PERPS_DATA_DIR": str(root / "bot"),
        "PERPS_SYMBOLS": "BTC-USD",
        "PERPS_INTERVAL_SECONDS": str(args.interval),
        "PERPS_RECONCILE_EVERY_CYCLES": "1",  # adopts the drill's resting orders on the next cycle
        "COINBASE_BASE_URL": sim.base_url,
        "COINBASE_KEY_FILE": str(sim.key_file),
        "COINBASE_CA_FILE": str(sim.ca_path),
        "COINBASE_WS_URL": sim.ws_url,
        "COINBASE_WS_STALE_SECONDS": str(STALE_SECONDS),
        **d.QUIET_RISK_ENV,
    }
    settings = load_settings("dev", env, root=root)
    metrics = BotMetrics()
    d.console.print(
        f"[bold]{NAME}[/]: interval {args.interval:g}s, stale {STALE_SECONDS:g}s, load {os.getloadavg()}, "
        f"standalone simulator pid {sim.pid} at {sim.base_url}"
    )
    async with CoinbaseBroker(connection) as broker:
        ages = await quote_ages(sim, broker, args.quote_seconds, args.interval)
    d.console.print(
        d.table(
            "quote age (ms)",
            ["source", "n", "p50", "p99", "max"],
            [[k, v["n"], v["p50_ms"], v["p99_ms"], v["max_ms"]] for k, v in ages.items()],
        )
    )

    stop = asyncio.Event()
    fills: dict[str, list[float]] = {"ws": [], "rest": []}
    faults: list[dict[str, Any]] = []
    at_use: dict[str, list[float]] = {"ws": [], "rest": []}
    async with open_runtime(settings) as runtime:
        task = asyncio.create_task(run_bot(runtime, stop_event=stop, strategy=Hold(), metrics=metrics))
        watcher = asyncio.create_task(watch_cycles(metrics, at_use))
        try:
            await wait_for(lambda: sample(metrics, "perps_bot_ws_connected") == 1, 20)
            rounds = [s for _ in range(args.fills) for s in ("ws", "rest")]
            for n, source in enumerate(rounds):
                if source == "rest":  # a stalled feed: the loop polls the order over REST each cycle
                    await asyncio.to_thread(sim.control.stall_websockets, True)
                    await wait_for(lambda: sample(metrics, "perps_bot_ws_connected") == 0, STALE_SECONDS + 5)
                latency = await one_fill(sim, runtime, metrics, settings.client_id_prefix, source, n)
                if latency is not None:
                    fills[source].append(latency)
                if source == "rest":
                    await asyncio.to_thread(sim.control.stall_websockets, False)
                    await wait_for(lambda: sample(metrics, "perps_bot_ws_connected") == 1, 15)
                d.console.print(f"fill {n + 1}/{len(rounds)} via {source}: {d.fmt(d.ms(latency))} ms")
            for kind in ("drop", "stall", "gap"):
                result = await fault(sim, metrics, kind, args.down_seconds)
                faults.append(result)
                d.console.print(f"fault {kind}: {result}")
        finally:
            stop.set()
            summary = await task
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    failed = int(sample(metrics, "perps_bot_cycles_total", outcome="error"))
    simulator = {"mode": "standalone", "pid": sim.pid, "drill_pid": os.getpid(), "base_url": sim.base_url}
    return report(ages, fills, faults, at_use, failed, summary.cycles, args, simulator)


async def watch_cycles(metrics: BotMetrics, at_use: dict[str, list[float]]) -> None:
    """One sample of the bot's quote age at use per completed cycle, by the cycle's quote source."""
    last = 0.0
    seen = {"ws": 0.0, "rest": 0.0}
    while True:
        await asyncio.sleep(0.01)
        stamp = sample(metrics, "perps_bot_last_cycle_timestamp_seconds")
        if stamp == last:
            continue
        last = stamp
        for source in seen:
            count = sample(metrics, "perps_bot_market_data_cycles_total", source=source)
            if count > seen[source]:
                seen[source] = count
                at_use[source].append(sample(metrics, "perps_bot_quote_age_seconds", symbol="BTC-USD"))


def report(
    ages: dict[str, Any],
    fills: dict[str, list[float]],
    faults: list[dict[str, Any]],
    at_use: dict[str, list[float]],
    failed: int,
    cycles: int,
    args: argparse.Namespace,
    simulator: dict[str, Any],
) -> int:
    fill_rows = [[s, len(v), d.ms(d.pct(v, 0.5)), d.ms(max(v) if v else None)] for s, v in fills.items()]
    d.console.print(d.table("fill -> booked (ms)", ["source", "n", "p50", "max"], fill_rows))
    use_rows = [[s, len(v), d.ms(d.pct(v, 0.5)), d.ms(d.pct(v, 0.99))] for s, v in at_use.items()]
    d.console.print(
        d.table("bot quote age at use, per cycle (ms)", ["source", "cycles", "p50", "p99"], use_rows)
    )
    d.console.print(
        d.table(
            "feed faults",
            ["kind", "detect ms", "reconnect ms", "REST cycles", "gaps"],
            [[f["kind"], f["detect_ms"], f["reconnect_ms"], f["rest_cycles"], f["gaps"]] for f in faults],
        )
    )
    ws_p99, rest_p99 = ages["ws"]["p99_ms"], ages["rest"]["p99_ms"]
    fill_ws = d.ms(max(fills["ws"])) if fills["ws"] else None
    fill_rest = d.ms(d.pct(fills["rest"], 0.5)) if fills["rest"] else None
    reconnect = max((f["reconnect_ms"] or 1e9) for f in faults) if faults else None
    detect = max((f["detect_ms"] or 1e9) for f in faults if f["kind"] != "gap") if faults else None
    gaps = sum(f["gaps"] for f in faults)
    targets = {
        "quote_age_5x": bool(ws_p99 and rest_p99 and rest_p99 >= 5 * ws_p99),
        "fills_100ms": bool(fills["ws"]) and fill_ws is not None and fill_ws <= 100,
        "detect_within_stale": detect is not None and detect <= STALE_SECONDS * 1000 + 250,
        "reconnect_1s": reconnect is not None and reconnect <= 1000,
        "no_failed_cycle": failed == 0,
    }
    d.console.print(f"targets: {targets}  (load {os.getloadavg()})")
    d.write_json(
        NAME,
        {
            "args": vars(args),
            "simulator": simulator,
            "quote_age": ages,
            "fills_ms": {k: [d.ms(x) for x in v] for k, v in fills.items()},
            "at_use_ms": {k: [d.ms(x) for x in v] for k, v in at_use.items()},
            "faults": faults,
            "cycles": cycles,
            "cycles_failed": failed,
            "targets": targets,
        },
    )
    print(
        f"RESULT drill=market_data ws_quote_age_p99_ms={d.fmt(ws_p99)} rest_quote_age_p99_ms={d.fmt(rest_p99)} "
        f"fill_latency_ws_ms={d.fmt(fill_ws)} fill_latency_rest_ms={d.fmt(fill_rest)} "
        f"reconnect_ms={d.fmt(reconnect)} gaps_detected={gaps} cycles_failed={failed}",
        flush=True,
    )
    return 0 if all(targets.values()) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, help="bot cycle interval and REST poll interval (s)"
    )
    parser.add_argument(
        "--quote-seconds", type=float, default=30.0, help="how long quote ages are sampled (s)"
    )
    parser.add_argument("--fills", type=int, default=4, help="fills per source (ws, rest), alternating")
    parser.add_argument(
        "--down-seconds", type=float, default=2.0, help="how long a dropped / stalled feed stays down"
    )
    args = parser.parse_args(argv)
    if args.interval < 0.1 or args.quote_seconds <= 0 or args.fills < 1 or args.down_seconds < 0:
        parser.error("--interval >= 0.1, --quote-seconds > 0, --fills >= 1, --down-seconds >= 0")
    return args


if __name__ == "__main__":
    raise SystemExit(asyncio.run(drill(parse_args())))
