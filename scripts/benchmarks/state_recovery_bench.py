#!/usr/bin/env python3
"""Benchmark state recovery (start-up repair, Redis outage, S3 outage) against a baseline of the same run.

    .venv/bin/python scripts/benchmarks/state_recovery_bench.py --keys 1000,10000 --objects 10,100 --repeat 5
    .venv/bin/python scripts/benchmarks/state_recovery_bench.py --keys 200 --objects 5 --repeat 1   # smoke
    .venv/bin/python scripts/benchmarks/state_recovery_bench.py --keys 1000,10000 --parts hot --repeat 7

Against a throwaway redis-server, PostgreSQL cluster (fsync off) and moto S3 server, all started by this script
the same way as the test fixtures (tests/fixtures/services.py; moto in a process of its own unless ``--moto
thread``), median / p95 over ``--repeat``:

The state is N realistic mixed hot-set records (``_records.py``: orders, positions, guard and risk state,
marks; ~420 bytes encoded on average).

* ``repair``  (per ``--keys`` N, all cached in HOT) -- ``StateManager.create()`` with
  ``repair_hot_at_start=False`` (baseline) vs ``True`` (all coherent), and ``True`` with ``--stale`` of the HOT
  copies made stale (older packed records written straight into Redis after WARM moved on); ms, ms per 1000
  keys for the pass (repair - baseline), ratio vs the baseline, and ``pass / floor``: the floor of reading
  the same keys in this run, one raw MGET of the N records + one range SELECT of their (key, version,
  checksum) from PostgreSQL, one after the other (target <= 2x). Each round runs the three (no repair,
  repair, floor) in a shuffled order, after one warm-up round.
* ``hot``     (per N) -- SIGKILL redis-server, write ``--degraded-writes`` keys while degraded, start it (empty:
  no persistence), time ``recover_hot()`` (the probe: a fresh connection, PING, script load; then the restore)
  and, inside it, the restore the manager records (``HotRecovery.restore_seconds``: the one-pass hot-set
  rewrite from WARM + the check of every body's checksum + read-back verification of every key); the floor of
  this run: one range SELECT of the rows (key, version, checksum, value) + one raw MSET of the same N packed
  records into an empty namespace, on connections already open (``floor``), and the MSET alone.
  ``restore_ratio`` (restore / floor: the work the floor models; target <= 2x) and ``recover_ratio``
  (recover_hot / floor: with the probe's connection and PING, which the floor does not pay) are both
  reported. Each round runs the outage + restore and the floor in a shuffled order, so load falls on both.
* ``cold``    (per ``--objects`` M) -- stop moto, write M COLD objects while degraded (ARCHIVE-category
  batches, one segment each, plus one checkpoint) into the spool, start moto and wait for its first answer
  to a HeadBucket (untimed: S3 answers), time ``recover_cold()`` (probe + the spool sync: oldest first,
  several puts in flight, each verified from its put's answer; + the ``system:s3_available`` write); ms, objects,
  bytes, ms per object. Floor of the same round: the same blobs sent by a bare boto3 ``put_object`` each, one
  after the other (after one warm-up put), without "Expect: 100-continue" as the bot sends them (the strict
  floor: ``ratio`` is against it), by a stock client (``floor_default_ms_per_object``: a round trip more
  per put) and by the same bare client with as many puts in flight as the drain (``floor_concurrent_ms_per_object``:
  what the server takes at most); ``drain_ms_per_object`` is the sync alone (``ColdRecovery.sync_seconds``: no
  probe, no flag write); floors and sync alternate which goes first, round by round. The
  manager's COLD probe interval (the default; this benchmark asks with ``recover_cold()`` instead) is
  reported beside them.

``--parts`` picks which of repair, hot, cold run. Writes var/benchmarks/state_recovery.json and ends with
one RESULT line per key count (COLD figures: the largest object count) and one
``RESULT bench=state_recovery_cold`` line per object count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import _records  # noqa: E402
import asyncpg  # noqa: E402
import boto3  # noqa: E402
import botocore.handlers  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from _chaos import MotoProcess  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.fixtures.services import S3_TEST_CREDENTIALS, MotoServer, PostgresServer, RedisServer  # noqa: E402

from bot_v2.state import ColdState, HotState, StateCategory, StateManager  # noqa: E402
from bot_v2.state.codec import checksum, encode_value  # noqa: E402
from bot_v2.state.models import HotRecord  # noqa: E402
from bot_v2.state.settings import ColdBackend, HotBackend, StateSettings, WarmBackend  # noqa: E402
from bot_v2.state.tiers.hot import pack_record  # noqa: E402
from bot_v2.state.tiers.spool import DRAIN_CONCURRENCY  # noqa: E402

BUCKET = "perps-state-bench"
CHUNK = 1000  # keys per batch_set_state while populating
console = Console(width=150)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stats(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples), "p95_ms": pct(samples, 0.95), "runs": len(samples)}


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class Bench:
    def __init__(
        self, args: argparse.Namespace, redis: RedisServer, pg: PostgresServer, moto: MotoServer | MotoProcess
    ) -> None:
        self.args = args
        self.redis = redis
        self.pg = pg
        self.moto = moto
        self.data_dir = Path(tempfile.mkdtemp(prefix="perps-recovery-bench-"))

    def settings(self, bot_id: str, **overrides: Any) -> StateSettings:
        base = StateSettings(
            bot_id=bot_id,
            data_dir=self.data_dir / bot_id,
            hot_backend=HotBackend.REDIS,
            warm_backend=WarmBackend.POSTGRES,
            redis_url=self.redis.url,
            database_url=self.pg.url,
            connect_timeout_seconds=1.0,
            # throughput, not hung-server detection: 10,000-record pages on a loaded machine may take longer
            # than the default command bounds (0.15 s), which would turn a restore into a new outage
            hot_command_timeout_seconds=5.0,
            warm_command_timeout_seconds=5.0,
            # probes only when the benchmark asks (recover_hot / recover_cold), never in the background
            hot_probe_interval_seconds=3600.0,
            hot_probe_max_interval_seconds=3600.0,
            cold_probe_interval_seconds=3600.0,
            cold_probe_max_interval_seconds=3600.0,
        )
        return replace(base, **overrides)

    async def populate(self, sm: StateManager, n: int, version: int = 1) -> None:
        records = _records.hot_set(n, version)
        for start in range(0, n, CHUNK):
            await sm.batch_write(records[start : start + CHUNK])

    async def cleanup(self, bot_id: str, client: aioredis.Redis) -> None:
        await client.connection_pool.disconnect()  # redis-server may have restarted since its last use
        async for name in client.scan_iter(match=f"state:{bot_id}*", count=5000):
            await client.delete(name)
        conn = await asyncpg.connect(self.pg.url)
        try:
            await conn.execute("DELETE FROM state_records WHERE bot_id LIKE $1", bot_id + "%")
        finally:
            await conn.close()

    # --- 1. repair at start -----------------------------------------------------------------------

    async def repair(self, n: int, step: Callable[[str], None]) -> dict[str, Any]:
        bot_id = f"rep-{uuid.uuid4().hex[:8]}"
        s = self.settings(bot_id)
        client = aioredis.Redis.from_url(self.redis.url)
        stale_idx = list(range(0, n, max(1, round(1 / self.args.stale)))) if self.args.stale > 0 else []
        try:
            async with await StateManager.create(s) as sm:
                await self.populate(sm, n)
            no, yes, stale, repaired, floor = [], [], [], [], []
            records = _records.hot_set(n)
            all_names = [f"state:{bot_id}:{w.key}" for w in records]
            conn = await asyncpg.connect(self.pg.url)

            async def create(settings: StateSettings) -> float:
                started = time.perf_counter()
                sm = await StateManager.create(settings)
                elapsed = ms_since(started)
                await sm.close()
                return elapsed

            async def read_floor() -> float:
                # the floor: read the same keys from both tiers (raw MGET of the records, range SELECT of
                # their versions), one after the other
                started = time.perf_counter()
                await client.mget(all_names)
                await conn.fetch(
                    "SELECT key, version, checksum FROM state_records WHERE bot_id = $1 AND key >= $2 "
                    "ORDER BY key LIMIT $3",
                    bot_id,
                    "",
                    n,
                )
                return ms_since(started)

            try:
                # the first round warms up connections and statements; then each round runs the three in a
                # shuffled order, so load from other processes falls on all of them alike
                for r in range(self.args.repeat + 1):
                    step(f"repair {n} keys: round {r}")
                    runs = {
                        "no": lambda: create(replace(s, repair_hot_at_start=False)),
                        "yes": lambda: create(s),
                        "floor": read_floor,
                    }
                    order = list(runs)
                    random.shuffle(order)
                    for what in order:
                        elapsed = await runs[what]()
                        if r:
                            {"no": no, "yes": yes, "floor": floor}[what].append(elapsed)
            finally:
                await conn.close()
            names = [f"state:{bot_id}:{records[i].key}" for i in stale_idx]
            old = dict(zip(names, await client.mget(names), strict=True)) if names else {}
            for r in range(self.args.repeat):
                step(f"repair {n} keys: {len(names)} stale, round {r + 1}")
                async with await StateManager.create(s) as sm:  # WARM moves on ...
                    newer = _records.hot_set(n, r + 2)
                    await sm.batch_write([newer[i] for i in stale_idx])
                if old:
                    await client.mset(old)  # ... while Redis still holds the first version
                started = time.perf_counter()
                sm = await StateManager.create(s)
                elapsed = ms_since(started)
                repaired.append(sm.health().hot_repaired_at_start)
                await sm.close()
                stale.append(elapsed)
        finally:
            await self.cleanup(bot_id, client)
            await client.aclose()
        base, coherent, with_stale, read_floor = stats(no), stats(yes), stats(stale), stats(floor)
        pass_ms = coherent["median_ms"] - base["median_ms"]
        return {
            "keys": n,
            "baseline": base,
            "repair": coherent,
            "repair_stale": with_stale,
            "stale_keys": len(stale_idx),
            "repaired": repaired,
            "pass_ms": pass_ms,
            "pass_ms_per_1000_keys": pass_ms / n * 1000,
            "floor_read": read_floor,
            "pass_vs_floor": pass_ms / read_floor["median_ms"],
            "ratio": coherent["median_ms"] / base["median_ms"],
            "stale_ratio": with_stale["median_ms"] / base["median_ms"],
        }

    # --- 2. Redis outage --------------------------------------------------------------------------

    async def hot_outage(self, n: int, step: Callable[[str], None]) -> dict[str, Any]:
        bot_id = f"hot-{uuid.uuid4().hex[:8]}"
        s = self.settings(bot_id)
        writes = min(self.args.degraded_writes, n)
        restore, restore_inner, moved, floor_mset, floor_full = [], [], [], [], []
        client = aioredis.Redis.from_url(self.redis.url)
        # the floor: the same N records, pre-encoded and packed, into an empty namespace
        floor_bot = bot_id + "-floor"
        now = datetime.now(UTC)
        packed = {}
        for w in _records.hot_set(n):
            data = encode_value(w.value)
            packed[f"state:{floor_bot}:{w.key}"] = pack_record(HotRecord(w.key, 1, checksum(data), data, now))
        conn = await asyncpg.connect(self.pg.url)

        async def floor() -> None:
            await client.connection_pool.disconnect()  # redis-server may have restarted since the last round
            await client.delete(*packed)
            started = time.perf_counter()
            await client.mset(packed)
            elapsed = ms_since(started)
            await client.delete(*packed)
            started = time.perf_counter()
            await conn.fetch(
                "SELECT key, version, checksum, value FROM state_records WHERE bot_id = $1 AND key >= $2 "
                "ORDER BY key LIMIT $3",
                bot_id,
                "",
                n,
            )
            await client.mset(packed)
            full = ms_since(started)
            floor_mset.append(elapsed)
            floor_full.append(full)

        async def outage(sm: StateManager, r: int) -> None:
            self.redis.kill()
            await sm.get_state("orders:pb-00000000")  # detection: served from WARM, now degraded
            if sm.health().hot_state is not HotState.DEGRADED:
                raise RuntimeError("HOT did not degrade after redis-server was killed")
            await sm.batch_write(_records.hot_set(writes, r + 2))
            self.redis.start()
            started = time.perf_counter()
            if not await sm.recover_hot():
                raise RuntimeError(f"recover_hot() failed: {sm.health().last_hot_error}")
            restore.append(ms_since(started))
            rec = sm.health().last_hot_recovery
            assert rec is not None
            restore_inner.append(rec.restore_seconds * 1000)
            moved.append(
                {
                    "keys_restored": rec.keys_restored,
                    "keys_verified": rec.keys_verified,
                    "keys_evicted": rec.keys_evicted,
                    "mismatches_repaired": rec.mismatches_repaired,
                }
            )

        try:
            async with await StateManager.create(s) as sm:
                await self.populate(sm, n)
                await floor()  # warm-up: connections, the statement
                floor_mset.clear()
                floor_full.clear()
                for r in range(self.args.repeat):
                    # the restore and its floor in a shuffled order each round: load falls on both alike
                    step(f"redis outage {n} keys: round {r + 1}")
                    for what in random.sample(["restore", "floor"], 2):
                        await (outage(sm, r) if what == "restore" else floor())
        finally:
            await conn.close()
            await self.cleanup(bot_id, client)
            await client.aclose()
        rec_ms, floor, full = stats(restore), stats(floor_mset), stats(floor_full)
        return {
            "keys": n,
            "degraded_writes": writes,
            "recover_hot": rec_ms,
            "restore_seconds": stats(restore_inner),
            "moved": moved,
            "floor_mset": floor,
            "floor_select_mset": full,
            "restore_ratio": stats(restore_inner)["median_ms"] / full["median_ms"],
            "recover_ratio": rec_ms["median_ms"] / full["median_ms"],
            "ratio_vs_mset": rec_ms["median_ms"] / floor["median_ms"],
        }

    # --- 3. S3 outage -----------------------------------------------------------------------------

    async def cold_outage(self, m: int, step: Callable[[str], None]) -> dict[str, Any]:
        bot_id = f"cold-{uuid.uuid4().hex[:8]}"
        s = self.settings(
            bot_id,
            cold_backend=ColdBackend.S3,
            s3_endpoint_url=self.moto.url,
            s3_bucket=BUCKET,
            **S3_TEST_CREDENTIALS,
        )
        spool = s.spool_dir / bot_id
        first, spooled_write, sync, per_object, objects, nbytes, floor = [], [], [], [], [], [], []
        floor_default: list[float] = []
        floor_concurrent: list[float] = []
        drain: list[float] = []
        blobs: list[bytes] = []
        s3 = boto3.client("s3", endpoint_url=self.moto.url, region_name="us-east-1", **S3_TEST_CREDENTIALS)
        plain = boto3.client("s3", endpoint_url=self.moto.url, region_name="us-east-1", **S3_TEST_CREDENTIALS)
        plain.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)  # as the bot's

        def floors(r: int) -> None:
            kinds = [(plain, floor, 1), (s3, floor_default, 1), (plain, floor_concurrent, DRAIN_CONCURRENCY)]
            for client_, out, in_flight in kinds[r % 3 :] + kinds[: r % 3]:
                out.append(put_floor(client_, f"floor/{bot_id}/{r}/{len(out)}", blobs, in_flight))

        client = aioredis.Redis.from_url(self.redis.url)
        try:
            async with await StateManager.create(s) as sm:
                for r in range(self.args.repeat):
                    step(f"s3 outage {m} objects: round {r + 1}")
                    self.moto.stop()
                    for j in range(m):
                        if j == m - 1 and m > 1:
                            started = time.perf_counter()
                            await sm.checkpoints.create_checkpoint("bench")
                        else:
                            items = {
                                f"archive:r{r}:b{j:05d}:{k}": {"r": r, "b": j, "k": k, "pad": "x" * 40}
                                for k in range(10)
                            }
                            started = time.perf_counter()
                            await sm.batch_set_state(items, StateCategory.ARCHIVE)
                        (first if j == 0 else spooled_write).append(ms_since(started))
                    if sm.health().cold_state is not ColdState.DEGRADED:
                        raise RuntimeError("COLD did not degrade after moto was stopped")
                    blobs = [p.read_bytes() for p in sorted(spool.iterdir()) if p.is_file()]
                    self.moto.start()
                    # untimed, as the drill's sync_ms starts at S3's first answer: the first request after a
                    # start costs moto ~5-15 ms more (it sets up its S3 backend), which would fall on whichever
                    # of the sync and the floor (whose warm-up put is untimed) came first
                    s3.head_bucket(Bucket=BUCKET)
                    if r % 2:  # the floor first in odd rounds, the sync first in even ones
                        floors(r)
                    started = time.perf_counter()
                    if not await sm.recover_cold():
                        raise RuntimeError(f"recover_cold() failed: {sm.health().last_cold_error}")
                    elapsed = ms_since(started)
                    rec = sm.health().last_cold_recovery
                    assert rec is not None
                    sync.append(elapsed)
                    per_object.append(elapsed / max(1, rec.objects_synced))
                    drain.append(rec.sync_seconds * 1000 / max(1, rec.objects_synced))
                    objects.append(rec.objects_synced)
                    nbytes.append(rec.bytes_synced)
                    if not r % 2:
                        floors(r)
        finally:
            await self.cleanup(bot_id, client)
            await client.aclose()
            s3.close()
            plain.close()
        per, fl = stats(per_object), stats(floor)
        return {
            "objects": m,
            "objects_synced": objects,
            "bytes_synced": nbytes,
            "first_write": stats(first),
            "spooled_write": stats(spooled_write) if spooled_write else None,
            "recover_cold": stats(sync),
            "ms_per_object": per,
            "floor_ms_per_object": fl,
            "floor_default_ms_per_object": stats(floor_default),
            "floor_concurrent_ms_per_object": stats(floor_concurrent),
            "drain_ms_per_object": stats(drain),
            "ratio": per["median_ms"] / fl["median_ms"],
            "cold_probe_interval_ms": StateSettings("x", Path(".")).cold_probe_interval_seconds * 1000,
        }


def put_floor(s3: Any, prefix: str, blobs: list[bytes], in_flight: int = 1) -> float:
    """ms per object of a bare boto3 ``put_object`` of each blob (after warm-up puts), one after the other, or
    ``in_flight`` at a time from as many threads (what the server takes at most: the drain's own reference)."""
    if in_flight == 1:
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/warm-up", Body=blobs[0])
        started = time.perf_counter()
        for k, blob in enumerate(blobs):
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{k}", Body=blob)
        return ms_since(started) / max(1, len(blobs))
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=f"{prefix}/warm-up{k}", Body=blobs[0]),
                      range(in_flight)))  # fmt: skip
        started = time.perf_counter()
        list(pool.map(lambda kb: s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{kb[0]}", Body=kb[1]),
                      enumerate(blobs)))  # fmt: skip
        return ms_since(started) / max(1, len(blobs))


def print_tables(repair: list[dict[str, Any]], hot: list[dict[str, Any]], cold: list[dict[str, Any]]) -> None:
    def cell(m: dict[str, float] | None) -> str:
        return "-" if m is None else f"{m['median_ms']:.1f} / {m['p95_ms']:.1f}"

    t = Table(
        title="1. create(): start-up repair vs no repair, and the pass vs reading the same keys (ms: median / p95)"
    )
    for col in (
        "keys",
        "no repair (base)",
        "repair",
        "pass ms",
        "floor read",
        "pass / floor",
        "ratio",
        "stale",
        "repair w/ stale",
        "ratio",
    ):
        t.add_column(col, justify="right")
    for r in repair:
        t.add_row(
            str(r["keys"]),
            cell(r["baseline"]),
            cell(r["repair"]),
            f"{r['pass_ms']:.1f}",
            cell(r["floor_read"]),
            f"{r['pass_vs_floor']:.2f}x",
            f"{r['ratio']:.1f}x",
            str(r["stale_keys"]),
            cell(r["repair_stale"]),
            f"{r['stale_ratio']:.1f}x",
        )
    console.print(t)

    t = Table(
        title="2. Redis outage: the restore and recover_hot() vs the SELECT + MSET floor (ms: median / p95)"
    )
    for col in ("keys", "degraded writes", "recover_hot", "restore", "keys moved", "MSET alone",
                "floor SELECT+MSET", "restore / floor", "recover / floor"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in hot:
        m = r["moved"][-1]
        t.add_row(
            str(r["keys"]),
            str(r["degraded_writes"]),
            cell(r["recover_hot"]),
            cell(r["restore_seconds"]),
            f"{m['keys_restored']} restored / {m['keys_verified']} verified",
            cell(r["floor_mset"]),
            cell(r["floor_select_mset"]),
            f"{r['restore_ratio']:.2f}x",
            f"{r['recover_ratio']:.2f}x",
        )
    console.print(t)

    t = Table(
        title="3. S3 outage: recover_cold() (probe + spool sync) vs the bare sequential put_object floor "
        "(ms: median / p95)"
    )
    for col in ("objects", "synced", "KB", "first write", "spooled write", "recover_cold", "ms/object",
                "drain ms/object", "floor ms/object", "ratio", "stock client floor",
                f"{DRAIN_CONCURRENCY} in flight floor", "probe interval ms"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in cold:
        t.add_row(
            str(r["objects"]),
            str(r["objects_synced"][-1]),
            f"{r['bytes_synced'][-1] / 1024:.1f}",
            cell(r["first_write"]),
            cell(r["spooled_write"]),
            cell(r["recover_cold"]),
            cell(r["ms_per_object"]),
            cell(r["drain_ms_per_object"]),
            cell(r["floor_ms_per_object"]),
            f"{r['ratio']:.2f}x",
            cell(r["floor_default_ms_per_object"]),
            cell(r["floor_concurrent_ms_per_object"]),
            f"{r['cold_probe_interval_ms']:.0f}",
        )
    console.print(t)


async def run(args: argparse.Namespace, bench: Bench) -> tuple[list[Any], list[Any], list[Any]]:
    keys = [int(x) for x in args.keys.split(",")]
    objects = [int(x) for x in args.objects.split(",")]
    repair: list[dict[str, Any]] = []
    hot: list[dict[str, Any]] = []
    cold: list[dict[str, Any]] = []
    parts = set(args.parts.split(","))
    total = len(keys) * (3 * args.repeat + 2) + len(objects) * args.repeat
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("starting", total=total)

        def step(what: str) -> None:
            progress.update(task, description=what)
            progress.advance(task)

        for n in keys:
            if "repair" in parts:
                repair.append(await bench.repair(n, step))
            if "hot" in parts:
                hot.append(await bench.hot_outage(n, step))
        for m in objects if "cold" in parts else ():
            cold.append(await bench.cold_outage(m, step))
    return repair, hot, cold


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", default="1000,10000", help="HOT key counts (repair, Redis outage)")
    parser.add_argument("--objects", default="10,100", help="COLD objects spooled per S3 outage")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--parts", default="repair,hot,cold", help="which of repair,hot,cold to run (comma-separated)"
    )
    parser.add_argument("--stale", type=float, default=0.1, help="fraction of HOT copies made stale")
    parser.add_argument("--degraded-writes", type=int, default=100, help="keys written while Redis is down")
    parser.add_argument(
        "--moto",
        choices=("process", "thread"),
        default="process",
        help="moto in a process of its own (default: as S3 / MinIO is, and as the S3 drill runs it; restarted "
        "with its objects, _chaos.MotoProcess) or in a thread of this one (its CPU then competes with the "
        "bot's under one GIL: several puts in flight cannot gain over sequential ones)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "var" / "benchmarks" / "state_recovery.json")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if not args.parts or not set(args.parts.split(",")) <= {"repair", "hot", "cold"}:
        parser.error(f"--parts: a comma-separated subset of repair,hot,cold, not {args.parts!r}")
    logging.basicConfig(level=logging.ERROR)  # the degraded / recovered warnings are expected here

    moto: MotoServer | MotoProcess = MotoServer()
    if args.moto == "process":
        moto = MotoProcess(Path(tempfile.mkdtemp(prefix="perps-recovery-bench-moto-")))
    redis, pg = RedisServer(), PostgresServer()
    started: list[Any] = []
    try:
        for server in (redis, pg, moto):
            server.start()
            started.append(server)
        moto.create_bucket(BUCKET)
        bench = Bench(args, redis, pg, moto)
        repair, hot, cold = asyncio.run(run(args, bench))
    finally:
        for server in reversed(started):
            server.cleanup() if isinstance(server, PostgresServer) else server.stop()

    print_tables(repair, hot, cold)
    meta = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "services": "throwaway redis-server, PostgreSQL (fsync off), moto S3 server "
        + ("(a process of its own)" if args.moto == "process" else "(in-process thread)"),
        "when": datetime.now(UTC).isoformat(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"meta": meta, "repair": repair, "hot": hot, "cold": cold}, indent=2))
    print(f"wrote {args.output}")
    cp = max(cold, key=lambda r: r["objects"], default=None)
    for n in sorted({r["keys"] for r in repair + hot}):  # one RESULT line per key count (the parts run)
        line = f"RESULT keys={n}"
        for rp in (r for r in repair if r["keys"] == n):
            line += (
                f" repair_ms={rp['repair']['median_ms']:.1f} repair_ratio={rp['ratio']:.2f}"
                f" repair_pass_ms={rp['pass_ms']:.1f} repair_floor_ms={rp['floor_read']['median_ms']:.1f}"
                f" repair_vs_floor={rp['pass_vs_floor']:.2f}"
            )
        for hp in (r for r in hot if r["keys"] == n):
            line += (
                f" hot_restore_ms={hp['restore_seconds']['median_ms']:.1f}"
                f" hot_recover_ms={hp['recover_hot']['median_ms']:.1f}"
                f" hot_floor_ms={hp['floor_select_mset']['median_ms']:.1f} hot_ratio={hp['restore_ratio']:.2f}"
                f" hot_recover_ratio={hp['recover_ratio']:.2f}"
            )
        if cp is not None:
            line += (
                f" cold_sync_ms_per_object={cp['ms_per_object']['median_ms']:.2f}"
                f" cold_floor_ms_per_object={cp['floor_ms_per_object']['median_ms']:.2f}"
            )
        print(line)
    for c in cold:  # one RESULT line per spooled object count
        print(
            f"RESULT bench=state_recovery_cold objects={c['objects']} "
            f"sync_ms={c['recover_cold']['median_ms']:.1f} bytes={int(statistics.median(c['bytes_synced']))} "
            f"sync_ms_per_object={c['ms_per_object']['median_ms']:.2f} "
            f"floor_ms_per_object={c['floor_ms_per_object']['median_ms']:.2f} ratio={c['ratio']:.2f} "
            f"floor_default_ms_per_object={c['floor_default_ms_per_object']['median_ms']:.2f} "
            f"floor_concurrent_ms_per_object={c['floor_concurrent_ms_per_object']['median_ms']:.2f} "
            f"drain_ms_per_object={c['drain_ms_per_object']['median_ms']:.2f} "
            f"cold_probe_interval_ms={c['cold_probe_interval_ms']:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
