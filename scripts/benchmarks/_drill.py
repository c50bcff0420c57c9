"""Shared parts of the failover drills (``scripts/benchmarks/*_failover_drill.py``, ``engine_crash_drill.py``).

* throwaway services (tests/fixtures/services.py): the tier a drill breaks must be one the drill owns, so a
  ``REDIS_URL`` / ``DATABASE_URL`` / ``S3_ENDPOINT_URL`` for THAT tier is refused; the other tiers may be
  external;
* dev-profile settings on real Redis + PostgreSQL (+ S3), an in-process bot (``run_bot`` with a stop event)
  and a ``HealthPoller`` that reads ``health.json`` every ``poll_seconds`` and keeps one sample per cycle;
* ``Flipper``: a strategy that trades a small size every cycle (buy when flat, sell when long), so every
  cycle writes intents, orders and fills -- the state paths a failover must keep safe; ``Ladder``: buys
  12 steps, then sells them back a step a cycle (a position that takes several orders to reduce);
* statistics, the rich tables, the JSON file and the ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for _path in (str(ROOT), str(ROOT / "src")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.fixtures.services import (  # noqa: E402
    S3_TEST_CREDENTIALS,
    ExternalService,
    MotoServer,
    PostgresServer,
    RedisServer,
)

from bot_v2.config import BotSettings, load_settings  # noqa: E402
from bot_v2.domain import Position  # noqa: E402
from bot_v2.monitoring.metrics import BotMetrics  # noqa: E402
from bot_v2.orchestration.bot import BotRunSummary, run_bot  # noqa: E402
from bot_v2.orchestration.wiring import Runtime, open_runtime  # noqa: E402
from bot_v2.state import StateWrite  # noqa: E402
from bot_v2.strategies import Decision, MarketView  # noqa: E402

#: JSON and logs go here; DRILL_OUT_DIR moves them (tests: several runs at once must not share files)
BENCH_DIR = Path(os.environ.get("DRILL_OUT_DIR") or ROOT / "var" / "benchmarks")
S3_DRILL_BUCKET = "perps-drill"
console = Console(width=None if sys.stdout.isatty() else 160)

#: Guards that would trip on the simulator's walk or on a burst of retryable errors are off: a drill measures
#: the state tiers, not the risk policy (with them on, an outage can legitimately move the bot to REDUCE_ONLY).
QUIET_RISK_ENV = {
    "RISK_VOLATILITY_WARN_PCT": "none",
    "RISK_VOLATILITY_REDUCE_ONLY_PCT": "none",
    "RISK_VOLATILITY_HALT_PCT": "none",
    "RISK_MAX_SLIPPAGE_BPS": "none",
    "RISK_ERROR_RATE_REDUCE_ONLY_PCT": "none",
    "RISK_ERROR_RATE_HALT_PCT": "none",
    "RISK_MAX_DRAWDOWN_PCT": "none",
}


class DrillRefused(SystemExit):
    """The drill cannot run as configured (exit code 2, a clear message)."""

    def __init__(self, message: str) -> None:
        console.print(f"[bold red]refused:[/] {message}")
        super().__init__(2)


# --- services ---------------------------------------------------------------------------------------------


@dataclass
class Services:
    redis: RedisServer | ExternalService
    postgres: PostgresServer | ExternalService
    s3: MotoServer | ExternalService | None = None
    owned: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for service in reversed(self.owned):
            with contextlib.suppress(Exception):
                if isinstance(service, PostgresServer):
                    service.cleanup()
                else:
                    service.stop()


def start_services(breaks: str, *, with_s3: bool = False, s3_process: bool = False) -> Services:
    """Start throwaway services; ``breaks`` (redis / postgres / s3 / none) must not come from the environment.
    PostgreSQL runs durable (fsync and synchronous_commit on, unlike the test fixtures): a drill that SIGKILLs
    it must not lose commits to the test-only ``synchronous_commit=off``. ``s3_process``: moto in a process
    of its own (``_chaos.MotoProcess``: it can be SIGSTOPped; the default runs in a thread of this one)."""
    env_var = {"redis": "REDIS_URL", "postgres": "DATABASE_URL", "s3": "S3_ENDPOINT_URL"}.get(breaks)
    if env_var and os.environ.get(env_var):
        raise DrillRefused(
            f"{env_var} is set: this drill kills the {breaks} server, and a server given by URL is not ours "
            f"to kill. Unset {env_var} (the drill starts a throwaway one); the other tiers may stay external."
        )
    owned: list[Any] = []
    try:
        redis: RedisServer | ExternalService
        if os.environ.get("REDIS_URL"):
            redis = ExternalService(os.environ["REDIS_URL"])
        else:
            redis = RedisServer()
            redis.start()
            owned.append(redis)
        postgres: PostgresServer | ExternalService
        if os.environ.get("DATABASE_URL"):
            postgres = ExternalService(os.environ["DATABASE_URL"])
        else:
            postgres = PostgresServer(durable=True)
            owned.append(postgres)
            postgres.start()
        s3: MotoServer | ExternalService | None = None
        if with_s3:
            if os.environ.get("S3_ENDPOINT_URL"):
                s3 = ExternalService(os.environ["S3_ENDPOINT_URL"])
            elif s3_process:
                from _chaos import MotoProcess

                moto = MotoProcess(Path(tempfile.mkdtemp(prefix="perps-drill-moto-")))
                owned.append(moto)
                moto.start()
                moto.create_bucket(S3_DRILL_BUCKET)
                s3 = moto  # type: ignore[assignment]
            else:
                s3 = MotoServer()
                s3.start()
                owned.append(s3)
                s3.create_bucket(S3_DRILL_BUCKET)
    except BaseException:
        Services(None, None, None, owned).close()  # type: ignore[arg-type]
        raise
    return Services(redis, postgres, s3, owned)


def drill_env(
    services: Services, data_dir: Path, bot_id: str, interval: float, **extra: str
) -> dict[str, str]:
    """Environment for a dev-profile bot (in-process simulator) on the real state services."""
    env = {
        "REDIS_URL": services.redis.url,
        "DATABASE_URL": services.postgres.url,
        "PERPS_DATA_DIR": str(data_dir),
        "PERPS_BOT_ID": bot_id,
        "PERPS_SYMBOLS": "BTC-USD",
        "PERPS_INTERVAL_SECONDS": str(interval),
        "SIM_TICK_SECONDS": "0.05",
        **QUIET_RISK_ENV,
    }
    if services.s3 is not None:
        env["S3_ENDPOINT_URL"] = services.s3.url
        env["S3_BUCKET"] = os.environ.get("S3_BUCKET", S3_DRILL_BUCKET)
        if not services.s3.external:
            env["AWS_ACCESS_KEY_ID"] = S3_TEST_CREDENTIALS["aws_access_key_id"]
            env["AWS_SECRET_ACCESS_KEY"] = S3_TEST_CREDENTIALS["aws_secret_access_key"]
    env.update(extra)
    return env


def drill_settings(env: dict[str, str], root: Path) -> BotSettings:
    return load_settings("dev", env, root=root)


# --- the bot ----------------------------------------------------------------------------------------------


class Flipper:
    """Trades ``quantity`` every cycle: buy when flat, sell when long (bounded position, constant order flow)."""

    name = "drill_flipper"

    def __init__(self, quantity: Decimal = Decimal("0.001")) -> None:
        self.quantity = quantity

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        if position is not None and position.quantity > 0:
            return Decision.sell(view.symbol, min(position.quantity, self.quantity), "drill flip")
        return Decision.buy(view.symbol, self.quantity, "drill flip")


class Ladder:
    """Buys ``quantity`` each cycle up to ``steps`` x quantity, then sells it back a step a cycle: a position
    that takes several orders to reduce, so an outage that starts while long has reducing orders to send."""

    name = "drill_ladder"

    def __init__(self, quantity: Decimal = Decimal("0.001"), steps: int = 12) -> None:
        self.quantity = quantity
        self.steps = steps
        self.selling = False

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        held = position.quantity if position is not None else Decimal(0)
        if held >= self.quantity * self.steps:
            self.selling = True
        elif held <= 0:
            self.selling = False
        if self.selling:
            return Decision.sell(view.symbol, min(held, self.quantity), "drill ladder down")
        return Decision.buy(view.symbol, self.quantity, "drill ladder up")


async def position(state: Any, symbol: str = "BTC-USD") -> Decimal:
    """The bot's stored position in ``symbol`` (0 when flat)."""
    value = await state.get_state(f"positions:{symbol}")
    return Decimal(str(value.get("quantity", 0))) if isinstance(value, dict) else Decimal(0)


def unwinding(state: Any, ladder: Ladder, steps_left: int = 10) -> Callable[[], Awaitable[bool]]:
    """The ladder is selling and has at least ``steps_left`` steps left: an outage that starts now has
    reducing orders to send."""

    async def check() -> bool:
        return ladder.selling and await position(state) >= ladder.quantity * steps_left

    return check


@dataclass(frozen=True)
class CycleSample:
    cycle: int
    ok: bool
    ms: float | None
    message: str
    trading_state: str
    seen: float  # time.monotonic() when the poller saw it
    wall_ms: float | None = None  # health written - cycle started: every cycle's length, failed ones too


def read_health(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, ValueError):
        return {}


def _wall_ms(health: dict[str, Any]) -> float | None:
    """How long the last cycle took, from its start to its health write (a failed cycle has no last_cycle_ms)."""
    try:
        started = datetime.fromisoformat(str(health["last_cycle_at"]))
        written = datetime.fromisoformat(str(health["timestamp"]))
    except (KeyError, ValueError):
        return None
    return round((written - started).total_seconds() * 1000, 1)


class BackgroundTask:
    """``_run()`` as a task of the drill's event loop: ``start()``, then ``await stop()`` cancels it and waits."""

    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError


class HealthPoller(BackgroundTask):
    """Reads ``health.json`` every ``poll_seconds``; one ``CycleSample`` per new ``last_cycle``."""

    def __init__(self, path: Path, poll_seconds: float, pid: int | None = None) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self.pid = pid
        self.samples: list[CycleSample] = []
        self.missed = 0  # cycles that came and went between two polls (latency unknown)
        self._last = 0

    def poll_once(self) -> None:
        health = read_health(self.path)
        cycle = int(health.get("last_cycle") or 0)
        if self.pid is not None and health.get("pid") != self.pid:
            return
        if cycle > self._last:
            self.missed += max(0, cycle - self._last - 1) if self._last else 0
            self._last = cycle
            ms = health.get("last_cycle_ms")
            self.samples.append(
                CycleSample(
                    cycle,
                    bool(health.get("ok")),
                    float(ms) if ms is not None else None,
                    str(health.get("message", "")),
                    str(health.get("trading_state", "")),
                    time.monotonic(),
                    _wall_ms(health),
                )
            )

    async def _run(self) -> None:
        while True:
            self.poll_once()
            await asyncio.sleep(self.poll_seconds)

    @property
    def last(self) -> CycleSample | None:
        return self.samples[-1] if self.samples else None

    def since(self, t: float) -> list[CycleSample]:
        return [s for s in self.samples if s.seen >= t]

    async def wait_cycles(
        self, count: int, *, after: float | None = None, ok: bool | None = None, within: float = 60
    ) -> list[CycleSample]:
        """Wait until ``count`` cycles (matching ``ok`` when given) were seen after ``after`` (default: now)."""
        start = time.monotonic() if after is None else after

        def matching() -> list[CycleSample]:
            return [s for s in self.since(start) if ok is None or s.ok is ok]

        await wait_until(lambda: len(matching()) >= count, within, self.poll_seconds, f"{count} cycles")
        return matching()


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], within: float, interval: float, what: str
) -> float:
    """Poll ``check`` every ``interval`` s; return time.monotonic() when it first held (TimeoutError after)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        now = time.monotonic()
        if result:
            return now
        if now > deadline:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class RunningBot:
    settings: BotSettings
    runtime: Runtime
    task: asyncio.Task[BotRunSummary]
    stop: asyncio.Event
    poller: HealthPoller
    metrics: BotMetrics

    @property
    def state(self) -> Any:
        return self.runtime.state

    def orders_placed(self) -> int:
        return int(counter_total(self.metrics.orders, outcome="placed"))

    def check_alive(self) -> None:
        if self.task.done():
            exc = self.task.exception()
            raise RuntimeError(f"the bot stopped: {exc!r}" if exc else "the bot stopped")


@contextlib.asynccontextmanager
async def running_bot(
    settings: BotSettings, poll_seconds: float, strategy: Any = None
) -> AsyncIterator[RunningBot]:
    """open_runtime + run_bot(stop_event=...) in this event loop, a health poller, 2 healthy cycles first
    (``strategy`` default: a ``Flipper``)."""
    async with open_runtime(settings) as runtime:
        unthrottle(runtime)
        async with bot_in_loop(settings, runtime, poll_seconds, strategy or Flipper(), BotMetrics()) as bot:
            yield bot


def unthrottle(runtime: Runtime) -> None:
    """The in-process exchange allows 30 req/s; a drill trades every 0.1 s: no limit."""
    control = getattr(runtime.simulator, "control", None)
    if control is not None:
        control.set_rate_limit(None)


@contextlib.asynccontextmanager
async def bot_in_loop(
    settings: BotSettings,
    runtime: Runtime,
    poll_seconds: float,
    strategy: Any,
    metrics: BotMetrics,
    lease: Any = None,
) -> AsyncIterator[RunningBot]:
    """run_bot on ``runtime`` as a task of this event loop with a health poller; yields once 2 cycles were
    healthy; at the end stops the loop (waiting up to 60 s) and the poller."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_bot(runtime, stop_event=stop, strategy=strategy, metrics=metrics, lease=lease)
    )
    poller = HealthPoller(settings.health_path, poll_seconds)
    poller.start()
    bot = RunningBot(settings, runtime, task, stop, poller, metrics)
    try:
        await wait_until(
            lambda: task.done() or len([s for s in poller.samples if s.ok]) >= 2,
            60,
            poll_seconds,
            "start",
        )
        bot.check_alive()
        yield bot
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
        await poller.stop()


def counter_total(counter: Any, **labels: str) -> float:
    total = 0.0
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def configure_logging(name: str) -> Path:
    """Bot logs of a drill go to var/benchmarks/<name>.log (the console is the drill's own report)."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"{name}.log"
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sdk = logging.getLogger("coinbase.RESTClient")  # the SDK adds its own stderr handler
    sdk.handlers[:] = []
    sdk.propagate = True
    return path


# --- statistics and output --------------------------------------------------------------------------------


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def pct(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def med(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def top(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(max(present), 2) if present else None


def latency(samples: Iterable[CycleSample]) -> dict[str, float | int | None]:
    values = [s.ms for s in samples if s.ms is not None]
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2) if values else None,
        "p95_ms": round(p, 2) if (p := pct(values, 0.95)) is not None else None,
        "max_ms": round(max(values), 2) if values else None,
    }


def mm(summary: dict[str, Any], key: str) -> list[Any]:
    """[median, max] of a ``{"median": .., "max": ..}`` summary entry (a table row's two cells)."""
    return [summary[key]["median"], summary[key]["max"]]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    out = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*(fmt(v) for v in row))
    return out


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in load] if load else None,
        "platform": platform.platform(),
    }


def write_json(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    path = out or BENCH_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"drill": name, "finished_at": datetime.now(UTC).isoformat(), "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def result_line(name: str, rounds: int, **fields: Any) -> str:
    parts = [f"drill={name}", f"rounds={rounds}"]
    for key, value in fields.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "na"
        elif isinstance(value, float):
            text = f"{value:.1f}"
        else:
            text = str(value)
        parts.append(f"{key}={text}")
    return "RESULT " + " ".join(parts)


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """The drill's command line: its module doc's first paragraph as the description, the whole as the epilog."""
    return argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        epilog=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run_main(run: Callable[[], Awaitable[int]], label: str) -> None:
    """Exit with ``run()``'s code; SIGTERM cancels it like SIGINT, so its cleanup stops every process it
    started, and an interrupted run exits 130 with one line saying so."""

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run()

    try:
        raise SystemExit(asyncio.run(main()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"{label}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


RoundFn = Callable[["RunningBot", Any, Any, int], Awaitable[dict[str, Any]]]


async def run_rounds(
    name: str,
    breaks: str,
    args: Any,
    one_round: RoundFn,
    step: str,
    *,
    with_s3: bool = False,
    s3_process: bool = False,
    extra_env: dict[str, str] | None = None,
    banner: str = "",
) -> tuple[list[dict[str, Any]], int]:
    """Start the services, run a real bot, and call ``one_round(bot, service_to_break, args, n)`` per round.

    Returns the rounds and the number of orders the bot placed. ``breaks`` names the service handle to pass
    (``redis``, ``postgres`` or ``s3``); everything is stopped and removed at the end.
    """
    log = configure_logging(name)
    services = start_services(breaks, with_s3=with_s3, s3_process=s3_process)
    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="perps-drill-") as tmp:
            root = Path(tmp)
            bot_id = f"drill-{uuid.uuid4().hex[:8]}"
            env = drill_env(services, root / "data", bot_id, args.interval, **(extra_env or {}))
            settings = drill_settings(env, root)
            console.print(
                f"{name.replace('_', ' ')}: {args.rounds} round(s), interval {args.interval}s, "
                f"poll {args.poll_ms} ms{banner}, bot log {log}"
            )
            async with running_bot(settings, args.poll_ms / 1000) as bot:
                with Progress(console=console, transient=True) as progress:
                    task = progress.add_task("rounds", total=args.rounds)
                    for n in range(1, args.rounds + 1):
                        progress.update(task, description=f"round {n}: {step}")
                        rounds.append(await one_round(bot, getattr(services, breaks), args, n))
                        progress.advance(task)
                orders = bot.orders_placed()
    finally:
        services.close()
    return rounds, orders


# --- outages: kill or hang, realistic size ---------------------------------------------------------------


def add_outage_args(parser: Any, *, keys: int = 1000) -> None:
    """``--mode kill|hang`` and ``--keys N``, the same on every drill."""
    parser.add_argument(
        "--mode",
        choices=("kill", "hang"),
        default="kill",
        help="kill: SIGKILL the server, start it again; hang: SIGSTOP it for the outage, SIGCONT to end it",
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=keys,
        help=f"realistic mixed records (_records.py) in the bot's state before round 1 (default {keys})",
    )


class Outage:
    """Breaks a server the drill owns: ``kill`` (SIGKILL, then start it again) or ``hang`` (SIGSTOP: it keeps
    its connections and answers nothing, then SIGCONT). PostgreSQL: every process of the cluster."""

    def __init__(self, server: Any, mode: str) -> None:
        self.server = server
        self.mode = mode
        self.active = False

    async def begin(self) -> None:
        """In a thread: the bot shares this event loop and must keep cycling meanwhile."""
        if self.mode == "hang":
            await asyncio.to_thread(self.server.send_signal, signal.SIGSTOP)
        else:
            await asyncio.to_thread(self.server.kill)
        self.active = True

    async def end(self) -> None:
        """Kill: start it (returns once it answers); hang: SIGCONT (it answers at once). In a thread (a
        PostgreSQL start takes a second or more: run inline it would stall the bot's loop as long)."""
        if self.mode == "hang":
            await asyncio.to_thread(self.server.send_signal, signal.SIGCONT)
        else:
            await asyncio.to_thread(self.server.start)
        self.active = False

    def release(self) -> None:
        """Never leave a stopped server behind (a drill that failed mid-outage)."""
        if self.active and self.mode == "hang":
            with contextlib.suppress(Exception):
                self.server.send_signal(signal.SIGCONT)
        self.active = False


async def seed(state: Any, keys: int, namespace: str = "drill:") -> None:
    """``keys`` realistic hot-set records (``_records.hot_set``, their categories kept), written through the
    bot's StateManager in batches of 1,000. Their keys start with ``namespace``: the bot's own loaders
    (``orders:*``, ``positions:*``) must not read them as its orders and positions at a restart."""
    import _records

    records = [StateWrite(namespace + w.key, w.value, w.category) for w in _records.hot_set(keys)]
    for start in range(0, len(records), 1000):
        await state.batch_write(records[start : start + 1000])


class LoopStall(BackgroundTask):
    """The longest the drill's event loop (the bot's too: it runs in-process) was late for a 5 ms timer: a
    call that blocks the loop shows here, one that awaits a hung server shows in the cycle's length."""

    def __init__(self) -> None:
        self.max_ms = 0.0

    def reset(self) -> None:
        self.max_ms = 0.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            self.max_ms = max(self.max_ms, (loop.time() - due) * 1000)


def outage_cycles(samples: Iterable[CycleSample]) -> dict[str, float | None]:
    """The longest cycle (start -> health written, failed ones included) among ``samples``."""
    walls = [s.wall_ms for s in samples if s.wall_ms is not None]
    return {"max_cycle_ms": round(max(walls), 1) if walls else None}
