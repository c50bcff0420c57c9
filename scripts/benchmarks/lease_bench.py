#!/usr/bin/env python3
"""Lease benchmark: what the lease costs, and the figures PERPS_LEASE_TTL_SECONDS is chosen from.

    .venv/bin/python scripts/benchmarks/lease_bench.py                     # SQLite + PostgreSQL, 2000 renewals
    .venv/bin/python scripts/benchmarks/lease_bench.py --renewals 5000 --keys 100,1000

Per WARM backend (embedded SQLite, a throwaway PostgreSQL or DATABASE_URL):

* ``renew``: latency of one lease renewal (one UPDATE ... RETURNING) against the same backend's floor, a read
  of the lease row (``read_lease``: one SELECT) -- p50 / p99 / max. The TTL must leave room for a renewal every
  TTL/3 to be late by its worst case several times over;
* ``batch``: a fenced batch upsert of N keys (the lease row read FOR SHARE in the same statement / transaction)
  against the same batch unfenced, measured interleaved -- the price of fencing every WARM write;
* ``loop lag``: how late a 1 ms asyncio timer fires while the backend is busy renewing and writing batches --
  how late the renewal task itself can be.

Prints a table, writes var/benchmarks/lease_bench.json and a last line
``RESULT renew_p99_ms_sqlite=... renew_p99_ms_postgres=... fenced_batch_ratio_postgres=... ttl_seconds=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from _servers import ROOT, state_servers, write_results  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bot_v2.config.settings import LeaseSettings  # noqa: E402
from bot_v2.state import codec  # noqa: E402
from bot_v2.state.keys import KeySpace  # noqa: E402
from bot_v2.state.models import LeaseClaim, Tier, WarmWrite  # noqa: E402
from bot_v2.state.tiers.postgres_warm import PostgresWarmTier  # noqa: E402
from bot_v2.state.tiers.sqlite_warm import SqliteWarmTier  # noqa: E402

console = Console(width=120)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(warm: Any, renewals: int, key_counts: list[int], repeat: int) -> dict[str, Any]:
    await warm.connect()
    try:
        grant = await warm.acquire_lease(LeaseClaim("bench:1", "bench", 1), 60)
        epoch = grant.record.epoch
        renew: list[float] = []
        floor: list[float] = []
        for _ in range(renewals):
            started = time.perf_counter()
            await warm.renew_lease("bench:1", epoch, 60)
            renew.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await warm.read_lease()
            floor.append((time.perf_counter() - started) * 1000)
        batches: dict[int, dict[str, float]] = {}
        for n in key_counts:
            fenced: list[float] = []
            plain: list[float] = []
            for r in range(repeat):
                rows = [
                    WarmWrite(
                        f"orders:b{n}-{i}",
                        "orders",
                        Tier.WARM,
                        codec.checksum(b"v" * 200),
                        b"v" * 200,
                        None,
                        None,
                    )
                    for i in range(n)
                ]
                for fence, out in (
                    ((epoch, fenced), (None, plain)) if r % 2 == 0 else ((None, plain), (epoch, fenced))
                ):
                    warm.set_fence(fence)
                    started = time.perf_counter()
                    await warm.upsert_many(rows, datetime.now(UTC))
                    out.append((time.perf_counter() - started) * 1000)
            warm.set_fence(None)
            batches[n] = {
                "fenced_p50_ms": statistics.median(fenced),
                "unfenced_p50_ms": statistics.median(plain),
                "ratio": statistics.median(fenced) / statistics.median(plain),
            }
        lag = await loop_lag(warm, epoch)
        return {
            "renew_p50_ms": statistics.median(renew),
            "renew_p99_ms": pct(renew, 0.99),
            "renew_max_ms": max(renew),
            "floor_p50_ms": statistics.median(floor),
            "floor_p99_ms": pct(floor, 0.99),
            "batches": batches,
            "loop_lag_p99_ms": pct(lag, 0.99),
            "loop_lag_max_ms": max(lag),
        }
    finally:
        await warm.close()


async def loop_lag(warm: Any, epoch: int, seconds: float = 3.0) -> list[float]:
    """How late a 1 ms timer fires while renewals and 200-key batches run back to back on the same loop."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def busy() -> None:
        rows = [
            WarmWrite(f"orders:lag-{i}", "orders", Tier.WARM, codec.checksum(b"x"), b"x", None, None)
            for i in range(200)
        ]
        while not stop.is_set():
            await warm.renew_lease("bench:1", epoch, 60)
            await warm.upsert_many(rows, datetime.now(UTC))

    task = asyncio.create_task(busy())
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - started - 0.001) * 1000)
    stop.set()
    await task
    return lags


async def main(args: argparse.Namespace) -> int:
    key_counts = [int(k) for k in args.keys.split(",")]
    results: list[dict[str, Any]] = []
    with state_servers() as (_redis_url, database_url, throwaway), tempfile.TemporaryDirectory() as tmp:
        backends = {
            "sqlite": SqliteWarmTier(Path(tmp) / "warm.sqlite3", KeySpace("lease-bench")),
            "postgres": PostgresWarmTier(database_url, KeySpace(f"lease-bench-{int(time.time())}")),
        }
        for name, warm in backends.items():
            console.print(f"[bold]{name}[/bold]: {args.renewals} renewals, batches of {args.keys} keys ...")
            figures = await measure(warm, args.renewals, key_counts, args.repeat)
            results.append({"backend": name, **figures})

    table = Table(
        title="Lease: renewal latency vs a lease read, fenced vs unfenced batches, loop lag", width=120
    )
    for column in (
        "backend",
        "renew p50/p99/max ms",
        "floor (read) p50/p99 ms",
        "fenced/unfenced batch p50 ms",
        "loop lag p99/max ms",
    ):
        table.add_column(column, justify="right" if column != "backend" else "left")
    for r in results:
        batches = "; ".join(
            f"{n}: {b['fenced_p50_ms']:.2f}/{b['unfenced_p50_ms']:.2f} ({b['ratio']:.2f}x)"
            for n, b in r["batches"].items()
        )
        table.add_row(
            r["backend"],
            f"{r['renew_p50_ms']:.3f} / {r['renew_p99_ms']:.3f} / {r['renew_max_ms']:.3f}",
            f"{r['floor_p50_ms']:.3f} / {r['floor_p99_ms']:.3f}",
            batches,
            f"{r['loop_lag_p99_ms']:.3f} / {r['loop_lag_max_ms']:.3f}",
        )
    console.print(table)
    ttl = LeaseSettings().ttl_seconds
    worst = max(r["renew_max_ms"] + r["loop_lag_max_ms"] for r in results)
    console.print(
        f"default TTL {ttl}s: a renewal every {ttl / 3 * 1000:.0f} ms; the worst renewal + loop lag measured here "
        f"is {worst:.1f} ms, so {ttl / 3 * 1000 / max(worst, 0.001):.0f}x headroom before one late renewal eats "
        "into the next period"
    )
    write_results(ROOT / "var" / "benchmarks" / "lease_bench.json", results, throwaway)
    by = {r["backend"]: r for r in results}
    big = str(max(key_counts))
    print(
        "RESULT "
        f"renew_p99_ms_sqlite={by['sqlite']['renew_p99_ms']:.3f} "
        f"renew_p99_ms_postgres={by['postgres']['renew_p99_ms']:.3f} "
        f"renew_floor_p99_ms_postgres={by['postgres']['floor_p99_ms']:.3f} "
        f"fenced_batch_ratio_postgres={by['postgres']['batches'][int(big)]['ratio']:.3f} "
        f"fenced_batch_ratio_sqlite={by['sqlite']['batches'][int(big)]['ratio']:.3f} "
        f"loop_lag_max_ms={max(r['loop_lag_max_ms'] for r in results):.3f} ttl_seconds={ttl}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: .venv/bin/python scripts/benchmarks/lease_bench.py --renewals 2000 --keys 100,1000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--renewals", type=int, default=2000, help="renewals per backend (default 2000)")
    parser.add_argument(
        "--keys", default="100,1000", help="batch sizes for fenced vs unfenced (default 100,1000)"
    )
    parser.add_argument("--repeat", type=int, default=20, help="batches per size and mode (default 20)")
    sys.exit(asyncio.run(main(parser.parse_args())))
