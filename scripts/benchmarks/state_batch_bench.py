#!/usr/bin/env python3
"""Benchmark StateManager batch operations against real Redis + PostgreSQL, next to the raw-driver floor.

    .venv/bin/python scripts/benchmarks/state_batch_bench.py --keys 100,1000,10000 --repeat 7 \
        --value-bytes 200,2048

Per key count and value size it times (median and p95 over ``--repeat`` rounds):

* ``batch_set`` / ``batch_get``   -- ``StateManager.batch_set_state`` / ``batch_get_state`` (orders:
  WARM + HOT)
* ``floor_set`` / ``floor_get``   -- raw drivers, no StateManager, values pre-encoded: one multi-row unnest
  upsert statement + one MSET; one ``SELECT ... = ANY($1)`` + one MGET
* ``hot_set`` / ``mset``          -- the guard's cost alone: ``RedisHotTier.apply`` of the same records
  (version-guarded, a newer version each round; records built beforehand) against one plain MSET of the same
  packed bytes
* ``seq_set`` / ``seq_get``       -- the same keys one ``set_state`` / ``get_state`` call at a time

The writes (batch_set, floor_set, hot_set, mset) run once each per round in a shuffled order, and so do the
reads (batch_get, floor_get): load from other processes falls on a measured path and its floor alike, so the
ratios hold on a busy machine. The first round is a warm-up (connections, prepared statements, first insert).

Throwaway redis-server and PostgreSQL are started the same way as the test fixtures
(tests/fixtures/services.py)
unless REDIS_URL / DATABASE_URL are set. Writes var/benchmarks/state_batch.json and ends with one RESULT line
per value size for the write path at 1000 keys (or the largest count below it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import asyncpg  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from _servers import state_servers, write_results  # noqa: E402

from bot_v2.state import StateCategory, StateManager  # noqa: E402
from bot_v2.state.codec import checksum, encode_value  # noqa: E402
from bot_v2.state.keys import KeySpace  # noqa: E402
from bot_v2.state.models import HotRecord  # noqa: E402
from bot_v2.state.settings import HotBackend, StateSettings, WarmBackend  # noqa: E402
from bot_v2.state.tiers.hot import pack_record  # noqa: E402
from bot_v2.state.tiers.postgres_warm import UPSERT_SQL  # noqa: E402
from bot_v2.state.tiers.redis_hot import RedisHotTier  # noqa: E402

SEQUENTIAL_MAX_KEYS = 1000  # one-at-a-time runs beyond this take minutes and prove nothing new


def make_value(i: int, value_bytes: int) -> dict[str, Any]:
    """An order-like value whose canonical encoding is about ``value_bytes`` long."""
    value: dict[str, Any] = {
        "client_order_id": f"pb-{i:08d}",
        "product_id": "BTC-USD",
        "side": "BUY" if i % 2 else "SELL",
        "size": Decimal("0.00100000"),
        "price": Decimal(f"{60000 + i}.25"),
        "status": "OPEN",
        "pad": "",
    }
    value["pad"] = "x" * max(0, value_bytes - len(encode_value(value)))
    return value


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples), "p95_ms": pct(samples, 0.95), "runs": len(samples)}


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, float]:
    return (await interleaved({"fn": fn}, repeat))["fn"]


async def interleaved(
    fns: dict[str, Callable[[], Awaitable[Any]]], repeat: int
) -> dict[str, dict[str, float]]:
    """One warm-up call of each, then ``repeat`` rounds calling each once in a shuffled order."""
    for fn in fns.values():
        await fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name in random.sample(list(fns), len(fns)):
            started = time.perf_counter()
            await fns[name]()
            samples[name].append((time.perf_counter() - started) * 1000)
    out = {name: summary(values) for name, values in samples.items()}
    for name, values in samples.items():
        out[name]["samples_ms"] = values  # type: ignore[assignment]
    return out


async def bench_one(
    redis_url: str, database_url: str, n: int, value_bytes: int, repeat: int, data_dir: Path
) -> dict[str, Any]:
    bot_id = f"bench-{uuid.uuid4().hex[:8]}"
    settings = StateSettings(
        bot_id=bot_id,
        data_dir=data_dir,
        hot_backend=HotBackend.REDIS,
        warm_backend=WarmBackend.POSTGRES,
        redis_url=redis_url,
        database_url=database_url,
        # throughput, not hung-server detection: a 10,000-record batch on a loaded machine may take longer
        # than the default command bounds (0.15 s), which would turn it into an outage mid-benchmark
        hot_command_timeout_seconds=5.0,
        warm_command_timeout_seconds=5.0,
    )
    items = {f"orders:pb-{i:08d}": make_value(i, value_bytes) for i in range(n)}
    keys = list(items)
    encoded = [encode_value(v) for v in items.values()]
    result: dict[str, Any] = {
        "keys": n,
        "value_bytes": value_bytes,
        "encoded_bytes_avg": sum(map(len, encoded)) / n,
    }
    # raw floor: same table, same statement shape, values pre-encoded, no StateManager
    floor_bot = bot_id + "-floor"
    now = datetime.now(UTC)
    sums = [checksum(data) for data in encoded]
    packed = {
        f"state:{floor_bot}:{k}": pack_record(HotRecord(k, 1, s, d, now))
        for k, s, d in zip(keys, sums, encoded, strict=True)
    }
    names = list(packed)
    nulls: list[Any] = [None] * n
    cats, tiers = ["orders"] * n, ["hot"] * n
    # the guard alone: RedisHotTier.apply of records built beforehand, a newer version each call (popped
    # from the end: version 1 first)
    guard_bot = bot_id + "-guard"
    guard = RedisHotTier(redis_url, KeySpace(guard_bot))
    guarded = [
        [HotRecord(k, version, s, d, now) for k, s, d in zip(keys, sums, encoded, strict=True)]
        for version in range(repeat + 1, 0, -1)
    ]

    conn = await asyncpg.connect(database_url)
    client = aioredis.Redis.from_url(redis_url)
    await guard.connect()

    async def floor_set() -> None:
        await conn.fetch(UPSERT_SQL, floor_bot, now, keys, cats, tiers, sums, encoded, nulls, nulls)
        await client.mset(packed)

    async def floor_get() -> None:
        await conn.fetch(
            "SELECT key, version, checksum, value FROM state_records "
            "WHERE bot_id = $1 AND key = ANY($2::text[])",
            floor_bot,
            keys,
        )
        await client.mget(names)

    async def hot_set() -> None:
        if await guard.apply(guarded.pop()):
            raise RuntimeError("the guard refused newer versions")

    async def mset() -> None:
        await client.mset(packed)

    try:
        async with await StateManager.create(settings) as sm:
            writes = await interleaved(
                {
                    "batch_set": lambda: sm.batch_set_state(items, StateCategory.ORDERS),
                    "floor_set": floor_set,
                    "hot_set": hot_set,
                    "mset": mset,
                },
                repeat,
            )
            result.update(writes)
            result.update(
                await interleaved(
                    {"batch_get": lambda: sm.batch_get_state(keys), "floor_get": floor_get}, repeat
                )
            )
            if n <= SEQUENTIAL_MAX_KEYS:
                seq_repeat = max(1, min(repeat, 3))

                async def seq_set() -> None:
                    for key, value in items.items():
                        await sm.set_state(key, value, StateCategory.ORDERS)

                async def seq_get() -> None:
                    for key in keys:
                        await sm.get_state(key)

                result["seq_set"] = await timed(seq_set, seq_repeat)
                result["seq_get"] = await timed(seq_get, seq_repeat)
    finally:
        for bot in (bot_id, floor_bot, guard_bot):
            await conn.execute("DELETE FROM state_records WHERE bot_id = $1", bot)
            async for name in client.scan_iter(match=f"state:{bot}*", count=5000):
                await client.delete(name)
        await guard.close()
        await conn.close()
        await client.aclose()
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="StateManager batch vs raw floor vs sequential (ms: median / p95)")
    for col in ("keys", "value B", "batch_set", "floor_set", "write ratio", "hot_set", "mset", "guard ratio",
                "seq_set", "batch_get", "floor_get", "read ratio", "seq_get"):  # fmt: skip
        table.add_column(col, justify="right")

    def cell(r: dict[str, Any], name: str) -> str:
        m = r.get(name)
        return "-" if m is None else f"{m['median_ms']:.1f} / {m['p95_ms']:.1f}"

    for r in results:
        table.add_row(
            str(r["keys"]),
            f"{r['encoded_bytes_avg']:.0f}",
            cell(r, "batch_set"),
            cell(r, "floor_set"),
            f"{ratio(r, 'batch_set', 'floor_set'):.2f}",
            cell(r, "hot_set"),
            cell(r, "mset"),
            f"{ratio(r, 'hot_set', 'mset'):.2f}",
            cell(r, "seq_set"),
            cell(r, "batch_get"),
            cell(r, "floor_get"),
            f"{ratio(r, 'batch_get', 'floor_get'):.2f}",
            cell(r, "seq_get"),
        )
    Console(width=170).print(table)
    for r in results:
        line = f"keys={r['keys']} value_bytes={r['value_bytes']}"
        line += f" write ratio_vs_floor={ratio(r, 'batch_set', 'floor_set'):.2f}"
        line += f" guard ratio_vs_mset={ratio(r, 'hot_set', 'mset'):.2f}"
        line += f" read ratio_vs_floor={ratio(r, 'batch_get', 'floor_get'):.2f}"
        if "seq_set" in r:
            line += f" write speedup={r['seq_set']['median_ms'] / r['batch_set']['median_ms']:.1f}x"
            line += f" read speedup={r['seq_get']['median_ms'] / r['batch_get']['median_ms']:.1f}x"
        print(line)


def ratio(r: dict[str, Any], measured: str, floor: str) -> float:
    return float(r[measured]["median_ms"] / r[floor]["median_ms"])


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=21, help="interleaved rounds after one warm-up round")
    parser.add_argument("--value-bytes", default="200,2048")
    parser.add_argument("--output", type=Path, default=ROOT / "var" / "benchmarks" / "state_batch.json")
    args = parser.parse_args()
    key_counts = [int(x) for x in args.keys.split(",")]
    sizes = [int(x) for x in args.value_bytes.split(",")]

    with state_servers() as (redis_url, database_url, throwaway):
        results = []
        with tempfile.TemporaryDirectory() as data_dir:
            for size in sizes:
                for n in key_counts:
                    results.append(
                        await bench_one(redis_url, database_url, n, size, args.repeat, Path(data_dir))
                    )

    print_table(results)
    write_results(args.output, results, throwaway)
    for size in sizes:  # one RESULT line per value size, at 1000 keys (or the largest count below)
        of_size = [r for r in results if r["value_bytes"] == size]
        pick = max((r for r in of_size if r["keys"] <= 1000), key=lambda r: r["keys"], default=of_size[0])
        batch, floor = pick["batch_set"]["median_ms"], pick["floor_set"]["median_ms"]
        seq = pick.get("seq_set", {}).get("median_ms", float("nan"))
        print(
            f"RESULT keys={pick['keys']} value_bytes={size} batch_ms={batch:.2f} floor_ms={floor:.2f} "
            f"sequential_ms={seq:.2f} ratio_vs_floor={batch / floor:.2f} speedup_vs_sequential={seq / batch:.1f} "
            f"guard_ms={pick['hot_set']['median_ms']:.2f} mset_ms={pick['mset']['median_ms']:.2f} "
            f"guard_ratio={ratio(pick, 'hot_set', 'mset'):.2f} "
            f"load={' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
