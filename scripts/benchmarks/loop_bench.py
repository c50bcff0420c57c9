"""Benchmark the trading cycle's internal latency: strategy + guards + execution bookkeeping + state batch.

The exchange round trip is excluded: quotes come from an in-memory market and orders go to the paper broker
(filled in process). State is the real ``StateManager`` on the embedded backends (memory / SQLite / dir) in a
temporary directory. Each symbol count runs twice in one process: batched (the loop as shipped: ONE
``batch_write`` with all the cycle's intents before the orders go out, when there are orders, and ONE for the
cycle's results) and unbatched (the same cycle, with every key written by its own ``set_state``).

    .venv/bin/python scripts/benchmarks/loop_bench.py --symbols 1,10,50 [--cycles 300] [--warmup 30]

Prints a table, writes var/benchmarks/loop.json, and ends with
``RESULT symbols=10 cycle_p99_ms=... unbatched_p99_ms=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
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
from bot_v2.orchestration.controls import ControlWatcher  # noqa: E402
from bot_v2.orchestration.cycle import TradingCycle  # noqa: E402
from bot_v2.orchestration.execution import OrderExecutor  # noqa: E402
from bot_v2.orchestration.tracking import OrderTracker  # noqa: E402
from bot_v2.risk import RiskEngine  # noqa: E402
from bot_v2.state import StateManager, StateWrite  # noqa: E402
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


async def measure(
    symbol_count: int, cycles: int, warmup: int, batched: bool, workload: str = "trading"
) -> dict[str, Any]:
    symbols = tuple(Symbol(f"S{i:02d}-USD") for i in range(symbol_count))
    with tempfile.TemporaryDirectory(prefix="loop-bench-") as tmp:
        env = {"PERPS_DATA_DIR": tmp, "PERPS_SYMBOLS": ",".join(symbols), **QUIET_RISK}
        settings = load_settings("dev", env, root=Path(tmp))
        manager = await StateManager.create(settings.state)
        state: Any = manager if batched else UnbatchedState(manager)
        market = InMemoryMarket(symbols)
        broker = PaperBroker(market, balances={"USD": Decimal(10**9)})  # type: ignore[arg-type]
        metrics = BotMetrics()
        events = EventStore(settings.events_path)
        products = {p.symbol: p for p in await market.list_products(symbols)}
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
            products=products,
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
        durations: list[float] = []
        flushes: list[float] = []
        keys_written: list[int] = []
        orders = 0
        try:
            for n in range(1, warmup + cycles + 1):
                market.step()
                report = await cycle.run(n, market.now)
                if n > warmup:
                    durations.append(report.duration_ms)
                    flushes.append(report.flush_ms)
                    keys_written.append(report.flushed_keys)
                    orders += report.orders_placed
        finally:
            events.close()
            await manager.close()
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

    batched, unbatched = row("trading", "batched"), row("trading", "unbatched")
    steady = row("steady", "batched")
    print(
        f"RESULT symbols={pick} cycle_p99_ms={batched['cycle_p99_ms']:.3f} "
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
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "benchmarks" / "loop.json")
    args = parser.parse_args()
    counts = [int(x) for x in args.symbols.split(",") if x.strip()]
    sys.exit(asyncio.run(main(counts, args.cycles, args.warmup, args.out)))
