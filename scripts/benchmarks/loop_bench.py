"""Benchmark the trading cycle's internal latency: strategy + guards + execution bookkeeping + state batch.

The exchange round trip is excluded: quotes come from an in-memory market and orders go to the paper broker
(filled in process). State is the real ``StateManager`` on the embedded backends (memory / SQLite / dir) in a
temporary directory. Each symbol count runs twice in one process: batched (the loop as shipped: ONE
``batch_write`` with all the cycle's intents before the orders go out, when there are orders, and ONE for the
cycle's results) and unbatched (the same cycle, with every key written by its own ``set_state``).

    .venv/bin/python scripts/benchmarks/loop_bench.py --symbols 1,10,50 [--cycles 300] [--warmup 30]

Prints a table, writes var/benchmarks/loop.json, and ends with
``RESULT symbols=10 cycle_p99_ms=... unbatched_p99_ms=...``.

``--checkpoint`` measures instead what a periodic checkpoint does to the cycles that run meanwhile. The state
holds ``--checkpoint-keys`` (10,000) order records besides the cycle's own; the loop's ``CheckpointScheduler``
starts a checkpoint in the background exactly as the bot does, and the cycles go on at the same pace (one every
``--gap-ms`` after the previous one ended). Each round runs ``--quiet-cycles`` cycles with no checkpoint, then
starts one and keeps cycling until it has finished. Cycle p50/p99 DURING checkpoints are compared with the same
run's cycles without one; ``stall`` is the largest extra wait between two cycles (inline, it was the checkpoint's
duration). ``--backends embedded,postgres`` (memory/SQLite/directory, and Redis/PostgreSQL/directory on
throwaway servers unless REDIS_URL / DATABASE_URL are set):

    .venv/bin/python scripts/benchmarks/loop_bench.py --checkpoint [--backends embedded,postgres] [--rounds 30]

It writes var/benchmarks/loop_checkpoint.json and ends with
``RESULT checkpoint keys=10000 backend=embedded cycle_p99_ms=... during_p99_ms=... ratio=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from bot_v2.brokerages.paper import PaperBroker  # noqa: E402
from bot_v2.config import load_settings  # noqa: E402
from bot_v2.domain import Balance, FeeTier, Product, Quote, Symbol  # noqa: E402
from bot_v2.monitoring.events import EventStore  # noqa: E402
from bot_v2.monitoring.metrics import BotMetrics  # noqa: E402
from bot_v2.orchestration.checkpointing import CheckpointScheduler  # noqa: E402
from bot_v2.orchestration.controls import ControlWatcher  # noqa: E402
from bot_v2.orchestration.cycle import TradingCycle  # noqa: E402
from bot_v2.orchestration.execution import OrderExecutor  # noqa: E402
from bot_v2.orchestration.tracking import OrderTracker  # noqa: E402
from bot_v2.risk import RiskEngine  # noqa: E402
from bot_v2.state import StateCategory, StateManager, StateWrite  # noqa: E402
from bot_v2.strategies import HoldStrategy, MaCrossoverParams, MaCrossoverStrategy, PriceHistory  # noqa: E402

QUIET_RISK = {
    "RISK_VOLATILITY_WARN_PCT": "none",
    "RISK_VOLATILITY_REDUCE_ONLY_PCT": "none",
    "RISK_VOLATILITY_HALT_PCT": "none",
    "RISK_MAX_SLIPPAGE_BPS": "none",
    "RISK_MAX_ORDERS_PER_MINUTE": "none",
    "RISK_MAX_NOTIONAL_PER_SYMBOL_USD": "none",
    "RISK_MAX_TOTAL_EXPOSURE_USD": "none",
    "RISK_MAX_OPEN_POSITIONS": "none",
    "RISK_DAILY_LOSS_LIMIT_PCT": "none",
    "RISK_MAX_DRAWDOWN_PCT": "none",
}


class InMemoryMarket:
    """Market data only (the paper broker takes the orders): a seeded random walk per symbol."""

    def __init__(self, symbols: Sequence[Symbol], seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.prices = {s: Decimal(1000 + 10 * i) for i, s in enumerate(symbols)}
        self.now = datetime.now(UTC)

    def step(self) -> None:
        self.now += timedelta(seconds=1)
        for symbol, price in self.prices.items():
            move = Decimal(self.rng.choice((-3, -2, -1, 1, 2, 3))) / 1000
            self.prices[symbol] = (price * (1 + move)).quantize(Decimal("0.01"))

    async def list_products(self, symbols: Sequence[Symbol] | None = None) -> list[Product]:
        return [
            Product(
                s,
                s.split("-")[0],
                "USD",
                Decimal("0.0001"),
                Decimal("0.01"),
                Decimal("0.0001"),
                Decimal(10**6),
            )
            for s in (symbols or list(self.prices))
        ]

    async def get_product(self, symbol: Symbol) -> Product:
        return (await self.list_products([symbol]))[0]

    async def get_quotes(self, symbols: Sequence[Symbol]) -> dict[Symbol, Quote]:
        now = self.now
        return {
            s: Quote(s, self.prices[s] - Decimal("0.01"), self.prices[s] + Decimal("0.01"), now)
            for s in symbols
        }

    async def get_fee_tier(self) -> FeeTier:
        return FeeTier("bench", Decimal("0.004"), Decimal("0.006"))

    async def list_balances(self) -> list[Balance]:
        return [Balance("USD", Decimal(10**7))]


class UnbatchedState:
    """The same StateManager, but every key of a batch is written by its own ``set_state``."""

    def __init__(self, inner: StateManager) -> None:
        self.inner = inner

    async def get_state(self, key: str) -> Any:
        return await self.inner.get_state(key)

    async def set_state(self, key: str, value: Any, category: Any, ttl_seconds: float | None = None) -> int:
        return await self.inner.set_state(key, value, category, ttl_seconds)

    async def delete_state(self, key: str) -> Any:
        return await self.inner.delete_state(key)

    async def batch_get_state(self, keys: Sequence[str]) -> Mapping[str, Any]:
        return await self.inner.batch_get_state(keys)

    async def batch_write(self, writes: Sequence[StateWrite]) -> Mapping[str, int]:
        return {w.key: await self.inner.set_state(w.key, w.value, w.category, w.ttl_seconds) for w in writes}

    async def get_keys_by_pattern(self, pattern: str) -> list[str]:
        return await self.inner.get_keys_by_pattern(pattern)


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Bench:
    """One trading cycle wired as ``run_bot`` wires it, on an in-memory market and the paper broker."""

    cycle: TradingCycle
    market: InMemoryMarket
    manager: StateManager
    events: EventStore
    metrics: BotMetrics


@contextlib.asynccontextmanager
async def bench_cycle(
    symbol_count: int, batched: bool, workload: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[Bench]:
    """The cycle of ``symbol_count`` symbols on a real ``StateManager`` in a temporary directory (every key
    by its own ``set_state`` unless ``batched``), trading (MA crossover) or holding; ``env`` adds settings
    (tiers, bot id). Its state, events and directory are closed and removed at the end."""
    symbols = tuple(Symbol(f"S{i:02d}-USD") for i in range(symbol_count))
    with tempfile.TemporaryDirectory(prefix="loop-bench-") as tmp:
        full_env = {"PERPS_DATA_DIR": tmp, "PERPS_SYMBOLS": ",".join(symbols), **QUIET_RISK, **(env or {})}
        settings = load_settings("dev", full_env, root=Path(tmp))
        manager = await StateManager.create(settings.state)
        state: Any = manager if batched else UnbatchedState(manager)
        market = InMemoryMarket(symbols)
        broker = PaperBroker(market, balances={"USD": Decimal(10**9)})  # type: ignore[arg-type]
        metrics = BotMetrics()
        events = EventStore(settings.events_path)
        risk = RiskEngine(settings.risk)
        tracker = OrderTracker(metrics)
        strategy: Any = (
            MaCrossoverStrategy(
                MaCrossoverParams(fast_window=5, slow_window=20, position_fraction=Decimal("0.001"))
            )
            if workload == "trading"
            else HoldStrategy()
        )
        cycle = TradingCycle(
            symbols=symbols,
            products={p.symbol: p for p in await market.list_products(symbols)},
            broker=broker,
            state=state,
            risk=risk,
            strategy=strategy,
            tracker=tracker,
            executor=OrderExecutor(
                broker=broker,
                state=state,
                risk=risk,
                tracker=tracker,
                events=events,
                metrics=metrics,
                client_id_prefix=settings.client_id_prefix,
            ),
            controls=ControlWatcher(),
            history=PriceHistory(30),
            events=events,
            metrics=metrics,
        )
        try:
            yield Bench(cycle, market, manager, events, metrics)
        finally:
            events.close()
            await manager.close()


async def measure(
    symbol_count: int, cycles: int, warmup: int, batched: bool, workload: str = "trading"
) -> dict[str, Any]:
    durations: list[float] = []
    flushes: list[float] = []
    keys_written: list[int] = []
    orders = 0
    async with bench_cycle(symbol_count, batched, workload) as bench:
        for n in range(1, warmup + cycles + 1):
            bench.market.step()
            report = await bench.cycle.run(n, bench.market.now)
            if n > warmup:
                durations.append(report.duration_ms)
                flushes.append(report.flush_ms)
                keys_written.append(report.flushed_keys)
                orders += report.orders_placed
    return {
        "symbols": symbol_count,
        "workload": workload,
        "mode": "batched" if batched else "unbatched",
        "cycles": cycles,
        "orders": orders,
        "keys_per_cycle": statistics.mean(keys_written),
        "cycle_p50_ms": round(percentile(durations, 50), 3),
        "cycle_p95_ms": round(percentile(durations, 95), 3),
        "cycle_p99_ms": round(percentile(durations, 99), 3),
        "flush_p50_ms": round(percentile(flushes, 50), 3),
        "flush_p99_ms": round(percentile(flushes, 99), 3),
    }


def order_value(i: int) -> dict[str, Any]:
    """An order-like record (~250 bytes encoded), as in checkpoint_bench.py."""
    return {
        "client_order_id": f"pb-{i:08d}",
        "product_id": "BTC-USD",
        "side": "BUY" if i % 2 else "SELL",
        "size": Decimal("0.00100000"),
        "price": Decimal(f"{60000 + i}.25"),
        "status": "OPEN",
        "filled": Decimal("0"),
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


@contextlib.contextmanager
def backend_env(backend: str) -> Iterator[dict[str, str]]:
    """Environment for ``load_settings``: embedded tiers, or Redis + PostgreSQL (throwaway unless set)."""
    if backend == "embedded":
        yield {}
        return
    sys.path.insert(0, str(ROOT / "scripts" / "benchmarks"))
    from _servers import state_servers

    with state_servers() as (redis_url, database_url, _):
        yield {"REDIS_URL": redis_url, "DATABASE_URL": database_url}


async def measure_checkpoint(
    backend: str, symbol_count: int, keys: int, rounds: int, quiet_cycles: int, gap_ms: float, warmup: int
) -> dict[str, Any]:
    """Cycle latency with and without a background checkpoint of ``keys`` records running (one run)."""
    with backend_env(backend) as urls:
        env = {"PERPS_BOT_ID": f"loop-{uuid.uuid4().hex[:8]}", **urls}
        async with bench_cycle(symbol_count, True, "trading", env) as bench:
            try:
                row = await checkpoint_rounds(bench, keys, rounds, quiet_cycles, gap_ms, warmup)
            finally:
                if backend != "embedded":
                    await bench.manager.batch_delete_state(await bench.manager.get_keys_by_pattern("*"))
    return {"backend": backend, "symbols": symbol_count, **row}


async def checkpoint_rounds(
    bench: Bench, keys: int, rounds: int, quiet_cycles: int, gap_ms: float, warmup: int
) -> dict[str, Any]:
    """``rounds`` of quiet cycles, then cycles while a checkpoint runs, after ``keys`` records are stored."""
    manager, market, cycle = bench.manager, bench.market, bench.cycle
    # interval ~0: due again as soon as the previous one finished (the rounds decide when one starts)
    scheduler = CheckpointScheduler(
        manager.checkpoints, interval_seconds=1e-6, events=bench.events, metrics=bench.metrics
    )
    quiet: list[float] = []
    during: list[float] = []
    checkpoint_ms: list[float] = []
    stall_ms = quiet_stall_ms = 0.0
    gap = gap_ms / 1000
    n = 0

    async def one(samples: list[float] | None) -> None:
        nonlocal n
        n += 1
        market.step()
        started = time.perf_counter()
        await cycle.run(n, market.now)
        if samples is not None:
            samples.append((time.perf_counter() - started) * 1000)

    for start in range(0, keys, 1000):
        batch = {f"orders:bench-{i:08d}": order_value(i) for i in range(start, min(keys, start + 1000))}
        await manager.batch_set_state(batch, StateCategory.ORDERS)
    for _ in range(warmup):
        await one(None)
        await asyncio.sleep(gap)
    # one unmeasured checkpoint first: it opens the pooled connections a checkpoint uses
    scheduler.start_if_due(datetime.now(UTC))
    while scheduler.running:
        await one(None)
        await asyncio.sleep(gap)
    for _ in range(rounds):
        for _ in range(quiet_cycles):
            await one(quiet)
            before = time.perf_counter()
            await asyncio.sleep(gap)
            quiet_stall_ms = max(quiet_stall_ms, (time.perf_counter() - before - gap) * 1000)
        began = time.perf_counter()
        if not scheduler.start_if_due(datetime.now(UTC)):
            raise RuntimeError("the checkpoint was not started")
        ended = time.perf_counter()
        while scheduler.running:
            await one(during)
            before = time.perf_counter()
            await asyncio.sleep(gap)
            stall_ms = max(stall_ms, (time.perf_counter() - before - gap) * 1000)
            ended = time.perf_counter()
        if await scheduler.wait() is None:
            raise RuntimeError("the checkpoint failed (see the log)")
        checkpoint_ms.append((ended - began) * 1000)
    await manager.checkpoints.prune(0)
    p99, during_p99 = percentile(quiet, 99), percentile(during, 99)
    return {
        "keys": keys,
        "checkpoints": len(checkpoint_ms),
        "checkpoint_ms_median": round(statistics.median(checkpoint_ms), 1),
        "cycles_quiet": len(quiet),
        "cycles_during": len(during),
        "cycle_p50_ms": round(percentile(quiet, 50), 3),
        "cycle_p99_ms": round(p99, 3),
        "during_p50_ms": round(percentile(during, 50), 3),
        "during_p99_ms": round(during_p99, 3),
        "during_max_ms": round(max(during), 3),
        "during_top_ms": [round(x, 1) for x in sorted(during)[-5:]],
        "ratio_p99": round(during_p99 / p99, 2),
        "stall_ms": round(stall_ms, 3),
        "quiet_stall_ms": round(quiet_stall_ms, 3),
    }


async def main_checkpoint(
    backends: Sequence[str],
    symbol_count: int,
    keys: int,
    rounds: int,
    quiet_cycles: int,
    gap_ms: float,
    warmup: int,
    out: Path,
) -> int:
    results = [
        await measure_checkpoint(backend, symbol_count, keys, rounds, quiet_cycles, gap_ms, warmup)
        for backend in backends
    ]
    table = Table(title=f"Cycle latency during a background checkpoint of {keys:,} keys (same run, ms)")
    columns = {
        "backend": "backend",
        "checkpoints": "checkpoints",
        "checkpoint_ms_median": "checkpoint ms",
        "cycles_quiet": "cycles w/o",
        "cycles_during": "cycles during",
        "cycle_p50_ms": "p50 w/o",
        "cycle_p99_ms": "p99 w/o",
        "during_p50_ms": "p50 during",
        "during_p99_ms": "p99 during",
        "during_max_ms": "max during",
        "ratio_p99": "p99 ratio",
        "stall_ms": "stall during",
        "quiet_stall_ms": "stall w/o",
    }
    for title in columns.values():
        table.add_column(title, justify="right")
    for r in results:
        table.add_row(*(str(r[name]) for name in columns))
    Console(width=180).print(table)
    write_json(
        out,
        {
            "generated_at": datetime.now(UTC).isoformat(),
            "command": " ".join(sys.argv),
            "cpus": os.cpu_count(),
            "gap_ms": gap_ms,
            "results": results,
        },
    )
    for r in results:
        print(
            f"RESULT checkpoint keys={r['keys']} backend={r['backend']} cycle_p99_ms={r['cycle_p99_ms']:.3f} "
            f"during_p99_ms={r['during_p99_ms']:.3f} ratio={r['ratio_p99']:.2f} "
            f"checkpoint_ms={r['checkpoint_ms_median']:.1f} stall_ms={r['stall_ms']:.3f}"
        )
    return 0


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


async def main(symbol_counts: Sequence[int], cycles: int, warmup: int, out: Path) -> int:
    await measure(1, 50, 10, True)  # warm caches and code paths; not reported
    results = []
    for count in symbol_counts:
        for workload in ("trading", "steady"):
            for batched in (True, False):
                results.append(await measure(count, cycles, warmup, batched, workload))
    table = Table(title="Trading cycle internal latency (exchange excluded; embedded state backends)")
    for column in (
        "symbols",
        "workload",
        "mode",
        "cycles",
        "orders",
        "keys/cycle",
        "cycle p50 ms",
        "cycle p95 ms",
        "cycle p99 ms",
        "flush p50 ms",
        "flush p99 ms",
    ):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r["symbols"]),
            r["workload"],
            r["mode"],
            str(r["cycles"]),
            str(r["orders"]),
            f"{r['keys_per_cycle']:.1f}",
            f"{r['cycle_p50_ms']:.3f}",
            f"{r['cycle_p95_ms']:.3f}",
            f"{r['cycle_p99_ms']:.3f}",
            f"{r['flush_p50_ms']:.3f}",
            f"{r['flush_p99_ms']:.3f}",
        )
    Console(width=180).print(table)
    write_json(out, {"generated_at": datetime.now(UTC).isoformat(), "results": results})
    pick = 10 if 10 in symbol_counts else symbol_counts[0]

    def row(workload: str, mode: str) -> dict[str, Any]:
        return next(
            r for r in results if r["symbols"] == pick and r["workload"] == workload and r["mode"] == mode
        )

    trading, unbatched = row("trading", "batched"), row("trading", "unbatched")
    steady = row("steady", "batched")
    print(
        f"RESULT symbols={pick} cycle_p99_ms={trading['cycle_p99_ms']:.3f} "
        f"unbatched_p99_ms={unbatched['cycle_p99_ms']:.3f} steady_cycle_p99_ms={steady['cycle_p99_ms']:.3f}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--symbols", default="1,10,50", help="comma-separated symbol counts (default 1,10,50)"
    )
    parser.add_argument("--cycles", type=int, default=300, help="measured cycles per run (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured cycles first (default 30)")
    parser.add_argument(
        "--out", type=Path, default=None, help="default var/benchmarks/loop[_checkpoint].json"
    )
    parser.add_argument(
        "--checkpoint", action="store_true", help="cycle latency during a background checkpoint (see above)"
    )
    parser.add_argument("--checkpoint-keys", type=int, default=10_000, help="records in the state (10000)")
    parser.add_argument("--backends", default="embedded", help="--checkpoint: embedded,postgres")
    parser.add_argument("--rounds", type=int, default=30, help="--checkpoint: checkpoints taken (default 30)")
    parser.add_argument(
        "--quiet-cycles", type=int, default=40, help="--checkpoint: cycles per round without one"
    )
    parser.add_argument(
        "--gap-ms", type=float, default=10.0, help="--checkpoint: pause after each cycle (10 ms)"
    )
    args = parser.parse_args()
    counts = [int(x) for x in args.symbols.split(",") if x.strip()]
    if args.checkpoint:
        sys.exit(
            asyncio.run(
                main_checkpoint(
                    [b.strip() for b in args.backends.split(",") if b.strip()],
                    10 if 10 in counts else counts[0],
                    args.checkpoint_keys,
                    args.rounds,
                    args.quiet_cycles,
                    args.gap_ms,
                    args.warmup,
                    args.out or ROOT / "var" / "benchmarks" / "loop_checkpoint.json",
                )
            )
        )
    sys.exit(
        asyncio.run(
            main(counts, args.cycles, args.warmup, args.out or ROOT / "var" / "benchmarks" / "loop.json")
        )
    )
