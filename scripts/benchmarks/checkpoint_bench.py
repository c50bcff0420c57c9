#!/usr/bin/env python3
"""Benchmark checkpoint create / restore against the raw floor, on Redis + PostgreSQL and on SQLite.

    .venv/bin/python scripts/benchmarks/checkpoint_bench.py --keys 1000,10000

Per backend and key count (``orders:*`` keys, ~230-byte order-like values), median / p95 over ``--repeat``
rounds. Each round times the four steps one after the other (the first round is a warm-up; a step and its floor
take turns going first), so a change in the machine's load hits all of them alike and the ratios are same-run:

* ``create``        -- ``CheckpointStore.create_checkpoint``: one consistent WARM snapshot (REPEATABLE READ
  cursor / SQLite read transaction), checksum check of every record, format 2 encoding (columnar JSON header,
  values as they are, binary checksums), zlib 1 + SHA-256 in worker threads, COLD object (local directory) +
  WARM row, retention pruning
* ``create_bg``     -- the same with ``background=True``, as the running bot takes its periodic checkpoint
  (100-row snapshot pages instead of 1000, each asked for when the loop is free, so it is never held up long)
* ``floor_create``  -- raw driver: one SELECT of the same rows + zlib 6 of their keys and values (no checksums,
  no encoding, nothing stored)
* ``restore``       -- ``restore_checkpoint("latest")`` (the checkpoint of the same round) after every key was
  changed (untimed): verify blob + records, one WARM transaction (write all + delete others: PostgreSQL one
  unnest upsert, SQLite one executemany) + the version-guarded HOT write
* ``floor_restore`` -- raw driver: the same rows written back by one unnest upsert (SQLite: executemany in one
  transaction) + one MSET, values pre-encoded, under a bot id of their own (rows and keys that exist from the
  warm-up round on, so every round updates, as the restore does)

A throwaway redis-server and PostgreSQL cluster are started like the test fixtures (fsync off) unless
REDIS_URL / DATABASE_URL are set; COLD is a local directory (S3 upload time is the endpoint's). Writes
var/benchmarks/checkpoint.json and ends with one RESULT line (PostgreSQL, 10000 keys or the largest count),
``create_x`` / ``restore_x`` being the ratios to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import zlib
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
from bot_v2.state.models import HotRecord  # noqa: E402
from bot_v2.state.settings import HotBackend, StateSettings, WarmBackend  # noqa: E402
from bot_v2.state.tiers.hot import pack_record  # noqa: E402
from bot_v2.state.tiers.postgres_warm import UPSERT_SQL  # noqa: E402

_SELECT_PG = """
SELECT key, category, tier, version, checksum, value, cold_ref, updated_at, expires_at FROM state_records
WHERE bot_id = $1 ORDER BY key
"""
_SELECT_SQLITE = """
SELECT key, category, tier, version, checksum, value, cold_ref, updated_at_us, expires_at_us FROM state_records
WHERE bot_id = ? ORDER BY key
"""
_UPSERT_SQLITE = """
INSERT OR REPLACE INTO state_records
    (bot_id, key, category, tier, version, checksum, value, cold_ref, updated_at_us, expires_at_us)
VALUES (?, ?, 'orders', 'hot', 1, ?, ?, NULL, ?, NULL)
"""


def make_value(i: int) -> dict[str, Any]:
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


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


Step = Callable[[], Awaitable[Any]]


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples), "p95_ms": pct(samples, 0.95), "runs": len(samples)}


async def interleaved(
    groups: list[list[tuple[str, Step]]], repeat: int, between: Callable[[str], Awaitable[Any]]
) -> dict[str, dict[str, float]]:
    """Time every step once per round, round after round (the first round warms up connections and
    statements), so a change in the machine's load hits each measurement alike. The steps of a group (a
    step and its floor) take turns going first: the first reader after a batch of updates pays PostgreSQL's
    page pruning and hint bits. ``between`` runs untimed before each step (it may do nothing)."""
    samples: dict[str, list[float]] = {name: [] for group in groups for name, _ in group}
    for n in range(repeat + 1):
        for group in groups:
            turn = n % len(group)
            for name, step in group[turn:] + group[:turn]:
                await between(name)
                started = time.perf_counter()
                await step()
                if n:
                    samples[name].append((time.perf_counter() - started) * 1000)
    return {name: summary(values) for name, values in samples.items()}


async def bench_one(
    backend: str, redis_url: str, database_url: str, n: int, repeat: int, data_dir: Path
) -> dict[str, Any]:
    bot_id = f"bench-{uuid.uuid4().hex[:8]}"
    # the restore floor writes the same rows under a bot id of its own: written under the measured bot's, its
    # versions (reset to 1) would fall behind HOT's and the version-guarded restore would refuse them as stale
    floor_bot = f"{bot_id}-floor"
    settings = StateSettings(
        bot_id=bot_id,
        data_dir=data_dir / bot_id,
        hot_backend=HotBackend.REDIS,
        warm_backend=WarmBackend.POSTGRES if backend == "postgres" else WarmBackend.SQLITE,
        redis_url=redis_url,
        database_url=database_url,
        checkpoint_retention=3,
    )
    items = {f"orders:pb-{i:08d}": make_value(i) for i in range(n)}
    changed = {key: {**value, "status": "FILLED"} for key, value in items.items()}
    result: dict[str, Any] = {"backend": backend, "keys": n}
    # the floor's rows, pre-encoded
    encoded = [encode_value(v) for v in items.values()]
    keys = list(items)
    sums = [checksum(d) for d in encoded]
    now = datetime.now(UTC)
    packed = {
        f"state:{floor_bot}:{k}": pack_record(HotRecord(k, 1, s, d, now))
        for k, s, d in zip(keys, sums, encoded, strict=True)
    }
    client = aioredis.Redis.from_url(redis_url)
    conn: Any = None
    db: sqlite3.Connection | None = None
    try:
        async with await StateManager.create(settings) as sm:
            await sm.batch_set_state(items, StateCategory.ORDERS)
            infos = []

            async def create() -> None:
                infos.append(await sm.checkpoints.create_checkpoint("bench"))

            async def create_background() -> None:
                await sm.checkpoints.create_checkpoint("bench", background=True)

            async def restore() -> None:
                await sm.checkpoints.restore_checkpoint("latest")

            if backend == "postgres":
                conn = await asyncpg.connect(database_url)
                nulls: list[Any] = [None] * n

                async def floor_create() -> None:
                    rows = await conn.fetch(_SELECT_PG, bot_id)
                    zlib.compress(b"".join(r["key"].encode() + r["value"] for r in rows), 6)

                async def floor_restore() -> None:
                    async with conn.transaction():
                        await conn.fetch(
                            UPSERT_SQL,
                            floor_bot,
                            now,
                            keys,
                            ["orders"] * n,
                            ["hot"] * n,
                            sums,
                            encoded,
                            nulls,
                            nulls,
                        )
                    await client.mset(packed)

            else:
                db = sqlite3.connect(settings.sqlite_path, isolation_level=None, check_same_thread=False)
                lite = db
                now_us = int(now.timestamp() * 1_000_000)
                params = [(floor_bot, k, s, d, now_us) for k, s, d in zip(keys, sums, encoded, strict=True)]

                def sqlite_create() -> None:
                    rows = lite.execute(_SELECT_SQLITE, (bot_id,)).fetchall()
                    zlib.compress(b"".join(r[0].encode() + r[5] for r in rows), 6)

                def sqlite_restore() -> None:
                    lite.execute("BEGIN IMMEDIATE")
                    lite.executemany(_UPSERT_SQLITE, params)
                    lite.execute("COMMIT")

                async def floor_create() -> None:
                    await asyncio.to_thread(sqlite_create)

                async def floor_restore() -> None:
                    await asyncio.to_thread(sqlite_restore)
                    await client.mset(packed)

            async def between(step: str) -> None:
                if step == "restore":  # every key changed since the checkpoint (of this round)
                    await sm.batch_set_state(changed, StateCategory.ORDERS)

            timings = await interleaved(
                [
                    [("create", create), ("create_bg", create_background), ("floor_create", floor_create)],
                    [("restore", restore), ("floor_restore", floor_restore)],
                ],
                repeat,
                between,
            )
            result.update(timings)
            result["raw_bytes"] = infos[-1].raw_bytes
            result["compressed_bytes"] = infos[-1].compressed_bytes
            await sm.checkpoints.prune(0)
    finally:
        for owner in (bot_id, floor_bot):
            async for name in client.scan_iter(match=f"state:{owner}:*", count=5000):
                await client.delete(name)
        await client.aclose()
        if db is not None:
            db.close()
        if conn is not None:
            await conn.close()
        if backend == "postgres":
            cleanup = await asyncpg.connect(database_url)
            try:
                await cleanup.execute(
                    "DELETE FROM state_records WHERE bot_id = ANY($1::text[])", [bot_id, floor_bot]
                )
            finally:
                await cleanup.close()
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Checkpoint create / restore vs raw floor (ms: median / p95)")
    columns = ("create", "create_bg", "floor_create", "restore", "floor_restore")
    for col in ("backend", "keys", "raw KB", "zlib KB", *columns):
        table.add_column(col, justify="right")

    def cell(r: dict[str, Any], name: str) -> str:
        return f"{r[name]['median_ms']:.1f} / {r[name]['p95_ms']:.1f}"

    for r in results:
        table.add_row(
            r["backend"],
            str(r["keys"]),
            f"{r['raw_bytes'] / 1024:.0f}",
            f"{r['compressed_bytes'] / 1024:.0f}",
            *(cell(r, c) for c in columns),
        )
    Console(width=160).print(table)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--output", type=Path, default=ROOT / "var" / "benchmarks" / "checkpoint.json")
    args = parser.parse_args()
    key_counts = [int(x) for x in args.keys.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    with state_servers() as (redis_url, database_url, throwaway):
        results = []
        with tempfile.TemporaryDirectory() as data_dir:
            for backend in backends:
                for n in key_counts:
                    results.append(
                        await bench_one(backend, redis_url, database_url, n, args.repeat, Path(data_dir))
                    )

    print_table(results)
    write_results(args.output, results, throwaway)
    for r in results:
        create = r["create"]["median_ms"] / r["floor_create"]["median_ms"]
        background = r["create_bg"]["median_ms"] / r["floor_create"]["median_ms"]
        restore = r["restore"]["median_ms"] / r["floor_restore"]["median_ms"]
        print(
            f"{r['backend']} keys={r['keys']} create/floor={create:.2f} create_bg/floor={background:.2f} "
            f"restore/floor={restore:.2f}"
        )
    pg = [r for r in results if r["backend"] == "postgres"] or results
    pick = next((r for r in pg if r["keys"] == 10000), pg[-1])
    print(
        f"RESULT keys={pick['keys']} create_ms={pick['create']['median_ms']:.2f} "
        f"restore_ms={pick['restore']['median_ms']:.2f} floor_create_ms={pick['floor_create']['median_ms']:.2f} "
        f"floor_restore_ms={pick['floor_restore']['median_ms']:.2f} "
        f"create_x={pick['create']['median_ms'] / pick['floor_create']['median_ms']:.2f} "
        f"restore_x={pick['restore']['median_ms'] / pick['floor_restore']['median_ms']:.2f} "
        f"create_bg_ms={pick['create_bg']['median_ms']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
