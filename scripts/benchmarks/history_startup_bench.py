#!/usr/bin/env python3
"""Start-up with 100,000 historical orders in state against 100, before and after history archiving.

    .venv/bin/python scripts/benchmarks/history_startup_bench.py --history 100000 --live 100 --repeat 5
    .venv/bin/python scripts/benchmarks/history_startup_bench.py --history 2000 --repeat 1 --backends sqlite  # smoke

Per backend -- ``postgres``: Redis HOT + PostgreSQL WARM (throwaway servers started like the test fixtures, or
REDIS_URL / DATABASE_URL); ``sqlite``: the embedded memory HOT + SQLite WARM; COLD is a local directory in both
(start-up never reads COLD) -- two bots:

* ``baseline``: ``--live`` recent terminal orders (each with its DONE intent and one fill), the position they
  make, the reconciliation watermark;
* ``history``: the same plus ``--history`` terminal orders 40 days old (intent DONE, one fill each), measured
  before archiving (what every start did until now), then archived by ``HistoryArchiver`` (default batch:
  ``ARCHIVE_BATCH_ORDERS`` orders per run, run after run until no backlog, as the loop would over its next
  cycles), then measured again.

Start-up = ``StateManager.create()`` (a fresh manager: connections, migrations check, HOT repair pass) +
``OrderTracker.load`` + ``load_risk_engine`` + start-up ``Reconciler.run`` (discovery since the watermark,
fills of every known order, position comparison, one flush) against an in-memory exchange that knows every
order and fill (indexed: the exchange's own time is not measured; its ``list_fills`` calls are counted -- each
one is a network round trip to Coinbase). One warm-up round, then median / p95 of ``--repeat``; the baseline
and the archived history are measured round by round in turn, so both see the same machine load. On
PostgreSQL the archived history is measured twice: right after the last move (the deleted rows are dead
tuples whose index entries a key-range listing still visits) and once autovacuum has removed them (waited for
up to ``--vacuum-wait`` seconds, else a VACUUM; the JSON says which).

Writes var/benchmarks/history_startup.json and ends with one RESULT line (the postgres backend when run):
target: start-up with the archived history within 1.5x of the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import asyncpg  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from scripts.benchmarks._servers import state_servers, write_results  # noqa: E402

from bot_v2.domain import (  # noqa: E402
    Balance,
    CancelResult,
    ClientOrderId,
    Fill,
    Liquidity,
    Order,
    OrderId,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
)
from bot_v2.monitoring.events import EventStore  # noqa: E402
from bot_v2.monitoring.metrics import BotMetrics  # noqa: E402
from bot_v2.orchestration import keys  # noqa: E402
from bot_v2.orchestration.history import ARCHIVE_BATCH_ORDERS, HistoryArchiver  # noqa: E402
from bot_v2.orchestration.ledger import PositionBook  # noqa: E402
from bot_v2.orchestration.reconcile import Reconciler, load_risk_engine  # noqa: E402
from bot_v2.orchestration.records import IntentRecord, IntentStatus, OrderRecord, fill_to_dict  # noqa: E402
from bot_v2.orchestration.tracking import OrderTracker  # noqa: E402
from bot_v2.risk import RiskConfig  # noqa: E402
from bot_v2.state import StateCategory, StateManager, StateWrite  # noqa: E402
from bot_v2.state.settings import HotBackend, StateSettings, WarmBackend  # noqa: E402

SYMBOL = Symbol("BTC-USD")
PREFIX = "pb-"
TARGET_RATIO = 1.5
SEED_CHUNK = 3000  # StateWrites per batch_write while seeding
console = Console(width=160)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stats(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples), "p95_ms": pct(samples, 0.95), "runs": len(samples)}


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class Exchange:
    """The exchange side of start-up reconciliation, in memory and indexed (only what ``Reconciler`` calls)."""

    def __init__(self) -> None:
        self.orders: dict[OrderId, Order] = {}
        self.open: dict[OrderId, Order] = {}
        self.fills: dict[OrderId, list[Fill]] = {}
        self.created: list[tuple[datetime, OrderId]] = []
        self.base = Decimal(0)
        self.list_fills_calls = 0

    def add(self, order: Order, fills: Sequence[Fill]) -> None:
        assert order.created_at is not None
        self.orders[order.order_id] = order
        if not order.status.is_terminal:
            self.open[order.order_id] = order
        self.fills[order.order_id] = list(fills)
        bisect.insort(self.created, (order.created_at, order.order_id))
        self.base += sum((f.quantity * f.side.sign for f in fills), start=Decimal(0))

    async def list_orders(
        self,
        statuses: Sequence[OrderStatus] | None = None,
        symbols: Sequence[Symbol] | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[Order]:
        if statuses is not None and since is None:  # the open orders (every order here is terminal)
            return [o for o in self.open.values() if o.status in statuses]
        start = 0 if since is None else bisect.bisect_left(self.created, (since, OrderId("")))
        found = [self.orders[oid] for _, oid in self.created[start:]]
        return [o for o in found if statuses is None or o.status in statuses]

    async def list_fills(
        self,
        order_ids: Sequence[OrderId] | None = None,
        symbols: Sequence[Symbol] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Fill]:
        self.list_fills_calls += 1
        ids = order_ids if order_ids is not None else list(self.fills)
        return [f for oid in ids for f in self.fills.get(oid, ())]

    async def get_order(self, order_id: OrderId) -> Order:
        return self.orders[order_id]

    async def list_balances(self) -> list[Balance]:
        return [Balance("USD", Decimal(10**9)), Balance("BTC", self.base)]

    async def list_positions(self) -> list[Position]:
        return []

    async def cancel_orders(self, order_ids: Sequence[OrderId]) -> list[CancelResult]:
        return []


@dataclass
class Bot:
    """One bot's state settings and the exchange that knows its orders."""

    name: str
    settings: StateSettings
    exchange: Exchange = field(default_factory=Exchange)
    book: PositionBook = field(default_factory=PositionBook)
    events: Path = Path()


def coid_at(when: datetime, i: int) -> ClientOrderId:
    """A time-ordered client order id like ``execution.new_client_order_id``'s."""
    millis = int(when.timestamp() * 1000)
    return ClientOrderId(f"{PREFIX}{millis:012x}{i:020x}")


def order_records(bot: Bot, when: datetime, i: int) -> list[StateWrite]:
    """A filled market order at ``when``: its intent (DONE), order and one fill, on the exchange too."""
    coid = coid_at(when, i)
    oid = OrderId(f"o-{coid}")
    qty = Decimal("0.001")
    order = Order(
        order_id=oid,
        client_order_id=coid,
        symbol=SYMBOL,
        side=Side.BUY if i % 3 else Side.SELL,
        order_type=OrderType.MARKET,
        status=OrderStatus.FILLED,
        quantity=qty,
        filled_quantity=qty,
        average_fill_price=Decimal(60_000 + i % 1000),
        created_at=when,
    )
    fill = Fill(
        trade_id=TradeId(f"t-{uuid.UUID(int=i).hex}-{coid[-8:]}"),
        order_id=oid,
        symbol=SYMBOL,
        side=order.side,
        price=Decimal(60_000 + i % 1000),
        quantity=qty,
        commission=Decimal("0.36"),
        liquidity=Liquidity.TAKER,
        trade_time=when,
        client_order_id=coid,
    )
    intent = IntentRecord(
        client_order_id=coid,
        symbol=SYMBOL,
        side=order.side,
        order_type=OrderType.MARKET,
        quantity=qty,
        limit_price=None,
        time_in_force=TimeInForce.GTC,
        reduce_only=False,
        created_at=when,
        status=IntentStatus.DONE,
        order_id=oid,
        updated_at=when,
    )
    bot.exchange.add(order, [fill])
    bot.book.apply(fill)
    return [
        StateWrite(keys.intent_key(coid), intent.to_dict(), StateCategory.INTENTS),
        StateWrite(keys.order_key(coid), OrderRecord.from_order(order, when).to_dict(), StateCategory.ORDERS),
        StateWrite(keys.fill_key(fill.trade_id), fill_to_dict(fill), StateCategory.FILLS),
    ]


async def seed(bot: Bot, history: int, live: int, now: datetime, step: Callable[[str], None]) -> None:
    """``history`` orders 40 days old, ``live`` orders a day old, the position and the watermark."""
    old_start = now - timedelta(days=40)
    async with await StateManager.create(bot.settings) as sm:
        writes: list[StateWrite] = []
        total = history + live
        for i in range(total):
            when = (
                old_start + timedelta(seconds=i)
                if i < history
                else now - timedelta(days=1, seconds=total - i)
            )
            writes += order_records(bot, when, i)
            if len(writes) >= SEED_CHUNK:
                await sm.batch_write(writes)
                writes = []
                if (i + 1) % 20_000 < SEED_CHUNK // 3:
                    step(f"{bot.name}: seeded {i + 1:,} orders")
        for position in bot.book.take_dirty():
            writes.append(
                StateWrite(keys.position_key(position.symbol), position.to_dict(), StateCategory.POSITIONS)
            )
        writes.append(
            StateWrite(keys.WATERMARK_KEY, {"watermark": now, "updated_at": now}, StateCategory.METADATA)
        )
        await sm.batch_write(writes)


async def start_up(bot: Bot) -> dict[str, Any]:
    """One start: create + load + risk engine + start-up reconciliation; ms of each step."""
    now = datetime.now(UTC)
    calls = bot.exchange.list_fills_calls
    t0 = time.perf_counter()
    sm = await StateManager.create(bot.settings)
    t1 = time.perf_counter()
    events = EventStore(bot.events)
    try:
        tracker = OrderTracker(BotMetrics())
        await tracker.load(sm)
        t2 = time.perf_counter()
        risk, error = await load_risk_engine(sm, RiskConfig(), now)
        reconciler = Reconciler(
            broker=bot.exchange,  # type: ignore[arg-type]  # the calls Reconciler makes
            state=sm,
            tracker=tracker,
            events=events,
            metrics=BotMetrics(),
            symbols=[SYMBOL],
            client_id_prefix=PREFIX,
            cancel_open_orders_after_crash=False,
            spot_base_currencies={SYMBOL: "BTC"},
        )
        report = await reconciler.run(risk, error, now)
        t3 = time.perf_counter()
        # a clean stop: no "unclean shutdown" next time (not timed)
        await sm.delete_state(keys.RUNNING_KEY)
    finally:
        events.close()
        await sm.close()
    if not report.coherent or report.missed_fills:
        raise RuntimeError(f"{bot.name}: start-up not coherent: {report.to_dict()}")
    return {
        "create_ms": (t1 - t0) * 1000,
        "load_ms": (t2 - t1) * 1000,
        "reconcile_ms": (t3 - t2) * 1000,
        "total_ms": (t3 - t0) * 1000,
        "live_orders": len(tracker.order_ids),
        "list_fills_calls": bot.exchange.list_fills_calls - calls,
    }


async def measure(bot: Bot, repeat: int, label: str, step: Callable[[str], None]) -> dict[str, Any]:
    rounds = []
    for r in range(repeat + 1):  # the first round warms up connections, statements and caches
        step(f"{bot.name}: start-up {label}, round {r}")
        result = await start_up(bot)
        if r:
            rounds.append(result)
    return summarize(rounds, label)


async def measure_pair(
    base: Bot, hist: Bot, repeat: int, step: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The baseline and the archived history, round by round in turn: both see the same machine load."""
    rounds: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for r in range(repeat + 1):
        for bot, into in ((base, rounds[0]), (hist, rounds[1])):
            step(f"{bot.name}: start-up, round {r}")
            result = await start_up(bot)
            if r:
                into.append(result)
    return summarize(rounds[0], "baseline"), summarize(rounds[1], "history, archived")


def summarize(rounds: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return {
        "scenario": label,
        "create": stats([r["create_ms"] for r in rounds]),
        "load": stats([r["load_ms"] for r in rounds]),
        "reconcile": stats([r["reconcile_ms"] for r in rounds]),
        "total": stats([r["total_ms"] for r in rounds]),
        "live_orders": rounds[-1]["live_orders"],
        "list_fills_calls": rounds[-1]["list_fills_calls"],
    }


async def archive(bot: Bot, batch: int, step: Callable[[str], None]) -> dict[str, Any]:
    """Archive until no backlog remains; every run timed (each is one pause of the loop)."""
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    async with await StateManager.create(bot.settings) as sm:
        tracker = OrderTracker(BotMetrics())
        await tracker.load(sm)
        archiver = HistoryArchiver(sm, tracker, retention_days=7, batch_size=batch)
        while True:
            report = await archiver.run(datetime.now(UTC))
            runs.append(report.to_dict())
            if len(runs) % 20 == 1:
                step(
                    f"{bot.name}: archiving, run {len(runs)}, {sum(r['orders'] for r in runs):,} orders moved"
                )
            if not report.backlog:
                break
        live = len(await sm.get_keys_by_pattern(keys.ORDER_PREFIX + "*"))
        archived = len(await sm.get_keys_by_pattern(keys.ARCHIVE_PREFIX + keys.ORDER_PREFIX + "*"))
    total = ms_since(started)
    ms = [r["duration_ms"] for r in runs]
    moving = [r["duration_ms"] for r in runs if r["orders"]]
    listing = [r["duration_ms"] for r in runs if r["skipped"] == "listed the live keys"]
    indexing = [r["duration_ms"] for r in runs if r["fills_indexed"] and not r["orders"]]
    return {
        "batch": batch,
        "runs": len(runs),
        "runs_moving": len(moving),
        "orders": sum(r["orders"] for r in runs),
        "keys_moved": sum(r["keys_moved"] for r in runs),
        "total_ms": total,
        "run_ms": stats(ms),
        "moving_run_ms": stats(moving) if moving else None,
        "listing_run_ms": stats(listing) if listing else None,
        "indexing_run_ms": stats(indexing) if indexing else None,
        "max_run_ms": max(ms),
        "run_ms_each": [round(x, 1) for x in ms],
        "live_orders_after": live,
        "archived_orders": archived,
    }


async def wait_for_vacuum(
    database_url: str, wait_seconds: float, step: Callable[[str], None]
) -> dict[str, Any]:
    """Wait until autovacuum has cleared the rows the archiving deleted (PostgreSQL keeps dead rows, and their
    index entries, until VACUUM: a key-range listing still visits them); VACUUM ourselves after ``wait_seconds``."""
    query = "SELECT n_live_tup, n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = 'state_records'"
    conn = await asyncpg.connect(database_url)
    try:
        first = await conn.fetchrow(query)
        started = time.perf_counter()
        step(f"postgres: waiting for autovacuum ({first['n_dead_tup']:,} dead rows)")
        while time.perf_counter() - started < wait_seconds:
            row = await conn.fetchrow(query)
            if row["autovacuum_count"] > first["autovacuum_count"] or row["n_dead_tup"] < 1000:
                return {
                    "by": "autovacuum",
                    "waited_s": time.perf_counter() - started,
                    "dead_before": first[1],
                }
            await asyncio.sleep(2)
        await conn.execute("VACUUM state_records")
        return {
            "by": "VACUUM (autovacuum not seen)",
            "waited_s": time.perf_counter() - started,
            "dead_before": first[1],
        }
    finally:
        await conn.close()


async def cleanup(bot: Bot, redis_url: str | None, database_url: str | None) -> None:
    bot_id = bot.settings.bot_id
    if redis_url and bot.settings.hot_backend is HotBackend.REDIS:
        client = aioredis.Redis.from_url(redis_url)
        try:
            async for name in client.scan_iter(match=f"state:{bot_id}:*", count=5000):
                await client.delete(name)
        finally:
            await client.aclose()
    if database_url and bot.settings.warm_backend is WarmBackend.POSTGRES:
        conn = await asyncpg.connect(database_url)
        try:
            for table in ("state_records", "state_checkpoints", "state_leases"):
                try:
                    await conn.execute(f"DELETE FROM {table} WHERE bot_id = $1", bot_id)
                except asyncpg.UndefinedTableError:
                    continue
        finally:
            await conn.close()


async def run_backend(
    backend: str, args: argparse.Namespace, urls: tuple[str, str], step: Callable[[str], None]
) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"perps-history-bench-{backend}-"))
    tag = uuid.uuid4().hex[:6]

    def bot(name: str) -> Bot:
        bot_id = f"hist-{name}-{tag}"
        settings = StateSettings(bot_id=bot_id, data_dir=data_dir / bot_id)
        if backend == "postgres":
            settings = StateSettings(
                bot_id=bot_id,
                data_dir=data_dir / bot_id,
                hot_backend=HotBackend.REDIS,
                warm_backend=WarmBackend.POSTGRES,
                redis_url=urls[0],
                database_url=urls[1],
            )
        return Bot(name=f"{backend}/{name}", settings=settings, events=data_dir / f"{bot_id}.events.jsonl")

    base, hist = bot("base"), bot("history")
    now = datetime.now(UTC)
    try:
        await seed(base, 0, args.live, now, step)
        await seed(hist, args.history, args.live, now, step)
        before = None
        if args.unarchived_repeat > 0:
            before = await measure(hist, args.unarchived_repeat, "history, not archived", step)
        archived_run = await archive(hist, args.batch, step)
        unvacuumed = vacuum = None
        if backend == "postgres":
            unvacuumed = await measure(hist, args.repeat, "history, archived, dead rows not vacuumed", step)
            vacuum = await wait_for_vacuum(urls[1], args.vacuum_wait, step)
        baseline, after = await measure_pair(base, hist, args.repeat, step)
    finally:
        await cleanup(base, *urls)
        await cleanup(hist, *urls)
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "backend": backend,
        "history": args.history,
        "live": args.live,
        "baseline": baseline,
        "unarchived": before,
        "archiving": archived_run,
        "archived_unvacuumed": unvacuumed,
        "vacuum": vacuum,
        "archived": after,
        "ratio": after["total"]["median_ms"] / baseline["total"]["median_ms"],
        "unvacuumed_ratio": None
        if unvacuumed is None
        else unvacuumed["total"]["median_ms"] / baseline["total"]["median_ms"],
        "unarchived_ratio": None
        if before is None
        else before["total"]["median_ms"] / baseline["total"]["median_ms"],
    }


def print_tables(results: list[dict[str, Any]]) -> None:
    def cell(m: dict[str, float] | None) -> str:
        return "-" if m is None else f"{m['median_ms']:.1f} / {m['p95_ms']:.1f}"

    t = Table(
        title="Start-up: StateManager.create + OrderTracker.load + start-up reconciliation (ms: median / p95)"
    )
    for col in ("backend", "scenario", "orders in state", "live orders", "create", "load", "reconcile",
                "start-up", "list_fills calls", "vs baseline"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in results:
        rows = [
            (r["baseline"], f"{r['live']:,}", 1.0),
            (r["unarchived"], f"{r['history'] + r['live']:,}", r["unarchived_ratio"]),
            (
                r["archived_unvacuumed"],
                f"{r['live']:,} + {r['archiving']['archived_orders']:,} archived",
                r["unvacuumed_ratio"],
            ),
            (r["archived"], f"{r['live']:,} + {r['archiving']['archived_orders']:,} archived", r["ratio"]),
        ]
        for m, orders, ratio in rows:
            if m is None:
                continue
            t.add_row(
                r["backend"],
                m["scenario"],
                orders,
                str(m["live_orders"]),
                cell(m["create"]),
                cell(m["load"]),
                cell(m["reconcile"]),
                cell(m["total"]),
                str(m["list_fills_calls"]),
                f"{ratio:.2f}x",
            )
    console.print(t)

    t = Table(
        title="Archiving the history: HistoryArchiver.run until no backlog (each run is one pause of the loop)"
    )
    for col in ("backend", "orders archived", "keys moved", "batch", "runs (moving)", "total s", "orders/s",
                "listing run ms", "indexing runs ms", "moving runs ms", "longest run ms",
                "live orders left"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in results:
        a = r["archiving"]
        t.add_row(
            r["backend"],
            f"{a['orders']:,}",
            f"{a['keys_moved']:,}",
            str(a["batch"]),
            f"{a['runs']} ({a['runs_moving']})",
            f"{a['total_ms'] / 1000:.1f}",
            f"{a['orders'] / (a['total_ms'] / 1000):,.0f}",
            cell(a["listing_run_ms"]),
            cell(a["indexing_run_ms"]),
            cell(a["moving_run_ms"]),
            f"{a['max_run_ms']:.1f}",
            str(a["live_orders_after"]),
        )
    console.print(t)


async def run(args: argparse.Namespace, urls: tuple[str, str]) -> list[dict[str, Any]]:
    err = Console(stderr=True)

    def step(what: str) -> None:
        err.print(f"[dim]{datetime.now(UTC):%H:%M:%S}[/] {what}")

    return [await run_backend(backend, args, urls, step) for backend in args.backends.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, default=100_000, help="old terminal orders (+ intents, fills)")
    parser.add_argument("--live", type=int, default=100, help="recent orders in both bots (the baseline)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--unarchived-repeat", type=int, default=2, help="start-ups before archiving (0: skip)"
    )
    parser.add_argument("--batch", type=int, default=ARCHIVE_BATCH_ORDERS, help="orders per archiving run")
    parser.add_argument("--vacuum-wait", type=float, default=300, help="seconds to wait for autovacuum")
    parser.add_argument("--backends", default="postgres,sqlite", help="postgres (Redis + PostgreSQL), sqlite")
    parser.add_argument("--output", type=Path, default=ROOT / "var" / "benchmarks" / "history_startup.json")
    args = parser.parse_args()
    if args.repeat < 1 or args.history < 1 or args.live < 1:
        parser.error("--repeat, --history and --live must be >= 1")
    if not set(args.backends.split(",")) <= {"postgres", "sqlite"}:
        parser.error("--backends: postgres and/or sqlite")
    logging.basicConfig(level=logging.ERROR)

    if "postgres" in args.backends:
        with state_servers() as (redis_url, database_url, throwaway):
            results = asyncio.run(run(args, (redis_url, database_url)))
    else:
        throwaway = True
        results = asyncio.run(run(args, ("", "")))
    print_tables(results)
    write_results(args.output, results, throwaway)
    r = next((x for x in results if x["backend"] == "postgres"), results[0])
    a = r["archiving"]
    print(
        f"RESULT bench=history_startup backend={r['backend']} history={r['history']} live={r['live']} "
        f"baseline_ms={r['baseline']['total']['median_ms']:.1f} "
        f"archived_ms={r['archived']['total']['median_ms']:.1f} ratio={r['ratio']:.2f} target={TARGET_RATIO} "
        f"ok={str(r['ratio'] <= TARGET_RATIO).lower()} "
        f"unvacuumed_ratio={r['unvacuumed_ratio'] if r['unvacuumed_ratio'] is not None else float('nan'):.2f} "
        f"vacuum={(r['vacuum'] or {}).get('by', '-').split(' ')[0]} "
        f"unarchived_ms={r['unarchived']['total']['median_ms'] if r['unarchived'] else float('nan'):.1f} "
        f"archive_orders={a['orders']} archive_s={a['total_ms'] / 1000:.1f} archive_run_max_ms={a['max_run_ms']:.1f}"
    )
    return 0 if r["ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
