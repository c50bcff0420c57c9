"""Start the simulated exchange: as an async context manager, or on its own loop in a daemon thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from bot_v2.brokerages.simulated.admin import admin_middleware
from bot_v2.brokerages.simulated.auth import ApiKey, KeyRegistry, load_or_create_key
from bot_v2.brokerages.simulated.certs import ensure_tls_files
from bot_v2.brokerages.simulated.engine import Engine, EngineConfig
from bot_v2.brokerages.simulated.feed import Feed, run_heartbeats
from bot_v2.brokerages.simulated.fees import DEFAULT_FEE_TIERS, FeeTier
from bot_v2.brokerages.simulated.models import Clock, SystemClock
from bot_v2.brokerages.simulated.persistence import load_state, save_state
from bot_v2.brokerages.simulated.products import DEFAULT_PRODUCTS, ProductSpec
from bot_v2.brokerages.simulated.routes import add_routes
from bot_v2.brokerages.simulated.server import ServerState, TokenBucket, build_app

__all__ = [
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorControl",
    "run_simulator_in_thread",
    "start_simulator",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
KEY_FILE = "key.json"
CONTROL_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class SimulatorConfig:
    """How to run the simulated exchange. ``tick_seconds <= 0`` disables the background price walk.

    With ``websocket`` on, the WebSocket feed listens on a second port (see ``ws_url``), over TLS with the REST
    certificate and CA, or over plain ws:// when ``websocket_plain`` is set. With ``admin_token`` set, the control
    switches are served too (``POST /__simulator/control/<switch>``, see ``admin.py``); the standalone process
    generates one per run.
    """

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 42
    tick_seconds: float = 0.25
    auth_required: bool = True
    rate_limit_per_second: float | None = 30.0
    starting_balances: Mapping[str, Decimal | int | str] | None = None
    products: tuple[ProductSpec, ...] = DEFAULT_PRODUCTS
    fee_tiers: tuple[FeeTier, ...] = DEFAULT_FEE_TIERS
    persist_interval_seconds: float = 5.0
    history_minutes: int = 300
    websocket: bool = True
    websocket_plain: bool = False
    #: with a token, the REST server also answers the control routes (``admin.py``) to requests carrying it
    admin_token: str | None = field(default=None, repr=False)
    clock: Clock = field(default_factory=SystemClock, repr=False, compare=False)

    def engine_config(self) -> EngineConfig:
        balances = None
        if self.starting_balances is not None:
            balances = {ccy: Decimal(str(v)) for ccy, v in self.starting_balances.items()}
        return EngineConfig(
            seed=self.seed,
            step_seconds=self.tick_seconds if self.tick_seconds > 0 else 1.0,
            starting_balances=balances,
            products=self.products,
            fee_tiers=self.fee_tiers,
            history_minutes=self.history_minutes,
        )


class SimulatorService:
    """The engine, the HTTPS server and the tick task, all on one event loop."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.state_dir = config.state_dir
        self.engine = Engine(config.engine_config(), config.clock)
        self.keys = KeyRegistry()
        self.state = ServerState(
            engine=self.engine,
            keys=self.keys,
            auth_required=config.auth_required,
            limiter=TokenBucket(config.rate_limit_per_second),
            persist=self.persist,
        )
        self.feed = Feed(self.engine, self.keys, config.auth_required)
        self.state.publish = self.feed.publish
        self.ticking = config.tick_seconds > 0
        self.port = 0
        self.ws_port: int | None = None
        self._ws_runner: web.AppRunner | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.api_key: ApiKey | None = None
        self._runner: web.AppRunner | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._last_save = 0.0
        self._snapshot_version = 0
        self._written_version = 0
        self._save_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()
        self.control: SimulatorControl | None = None

    def _control(self) -> SimulatorControl:
        assert self.control is not None, "service not started"
        return self.control

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tls = ensure_tls_files(self.state_dir)
        self.api_key = load_or_create_key(self.state_dir / KEY_FILE)
        self.keys.register(self.api_key.name, self.api_key.public_pem())
        saved = load_state(self.state_dir)
        if saved is not None:
            self.engine.load_state(saved)
        self.control = SimulatorControl(self, asyncio.get_running_loop(), threading.get_ident())
        outer = (
            []
            if self.config.admin_token is None
            else [admin_middleware(self.config.admin_token, self._control)]
        )
        app = build_app(self.state, add_routes, outer_middlewares=outer)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.config.host, self.config.port, ssl_context=tls.server_context())
        await site.start()
        self.port = int(runner.addresses[0][1])
        self.state.hosts = (f"{self.config.host}:{self.port}", f"localhost:{self.port}")
        if self.config.websocket:
            await self._start_websocket(None if self.config.websocket_plain else tls.server_context())
        await self.persist(force=True)
        if self.config.tick_seconds > 0:
            self._tick_task = asyncio.create_task(self._tick_loop(), name="simulator-tick")
        log.info("simulator listening on %s:%s", self.config.host, self.port)

    async def _start_websocket(self, ssl_context: ssl.SSLContext | None) -> None:
        app = web.Application()
        app.router.add_get("/", self.feed.handle)
        app.router.add_get("/ws", self.feed.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._ws_runner = runner
        await web.TCPSite(runner, self.config.host, 0, ssl_context=ssl_context).start()
        self.ws_port = int(runner.addresses[0][1])
        self._heartbeat_task = asyncio.create_task(run_heartbeats(self.feed), name="simulator-heartbeats")

    async def close(self) -> None:
        for task in (self._tick_task, self._heartbeat_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tick_task = self._heartbeat_task = None
        if self._ws_runner is not None:
            await self.feed.close_all(code=1001, message="simulator stopping")
            await self._ws_runner.cleanup()
            self._ws_runner = None
        if self._runner is not None:
            # A TLS close waits for the peer's close_notify; a client that never sends it would leave the
            # socket open after this loop ends, so abort whatever cleanup() left half-closed.
            server = self._runner.server
            transports = [h.transport for h in server.connections] if server is not None else []
            await self._runner.cleanup()
            for transport in transports:
                if transport is not None:
                    transport.abort()
            self._runner = None
        await self._drain_writes()
        await self.persist(force=True)

    def _snapshot(self, force: bool) -> tuple[int, dict[str, Any]] | None:
        """Snapshot on the loop when due: at once after account changes, else once per interval."""
        now = time.monotonic()
        if not (force or self.engine.dirty or now - self._last_save >= self.config.persist_interval_seconds):
            return None
        self._snapshot_version += 1
        self._last_save = now
        self.engine.dirty = False
        return self._snapshot_version, self.engine.to_state()

    async def persist(self, force: bool = False) -> None:
        """Write a due snapshot from a worker thread, never an older one over a newer one."""
        snapshot = self._snapshot(force)
        if snapshot is None:
            return
        task = asyncio.create_task(self._write(*snapshot))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        await asyncio.shield(task)

    def schedule_persist(self) -> None:
        """Persist and publish from synchronous code running on the loop (control hooks)."""
        task = asyncio.get_running_loop().create_task(self._persist_and_publish())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _persist_and_publish(self) -> None:
        await self.persist()
        await self.feed.publish()

    async def _write(self, version: int, state: dict[str, Any]) -> None:
        async with self._save_lock:
            if version > self._written_version:
                await asyncio.to_thread(save_state, self.state_dir, state)
                self._written_version = version

    async def _drain_writes(self) -> None:
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            if self.ticking:
                self.engine.advance(1)
            await self.persist()
            await self.feed.publish()


class SimulatorControl:
    """Thread-safe test hooks; each call runs on the simulator's loop and waits for the result."""

    def __init__(self, service: SimulatorService, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        self._service = service
        self._loop = loop
        self._loop_thread = loop_thread

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the simulator's loop (directly when already on it) and return its result."""
        if threading.get_ident() == self._loop_thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=CONTROL_TIMEOUT_SECONDS)

    def _engine_call(self, fn: Callable[[Engine], T]) -> T:
        def run() -> T:
            result = fn(self._service.engine)
            self._service.schedule_persist()
            return result

        return self.call(run)

    def set_price(self, symbol: str, price: Decimal | str) -> None:
        """Move ``symbol`` to ``price`` and match resting orders against it."""
        self._engine_call(lambda e: e.set_price(symbol, Decimal(str(price))))

    def advance(self, steps: int = 1) -> None:
        """Step the price walk ``steps`` times (each step also matches orders)."""
        self._engine_call(lambda e: e.advance(steps))

    def price(self, symbol: str) -> Decimal:
        return self.call(lambda: self._service.engine.market.last_price(symbol))

    def set_ticking(self, enabled: bool) -> None:
        """Pause or resume the background price walk."""

        def run() -> None:
            self._service.ticking = enabled

        self.call(run)

    def set_latency(self, seconds: float) -> None:
        self.call(lambda: setattr(self._service.state.faults, "latency_seconds", float(seconds)))

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests with HTTP ``status``."""

        def run() -> None:
            faults = self._service.state.faults
            faults.fail_remaining, faults.fail_status = n, status

        self.call(run)

    def drop_next(self, n: int) -> None:
        """Close the connection without answering the next ``n`` requests."""
        self.call(lambda: setattr(self._service.state.faults, "drop_remaining", n))

    def lose_acks_next(self, n: int, land_after_seconds: float = 0.0) -> None:
        """Create the orders of the next ``n`` create-order requests but never answer them (the connection is
        closed, as on a timeout); each order lands ``land_after_seconds`` after its connection closed."""

        def run() -> None:
            faults = self._service.state.faults
            faults.lost_acks_remaining, faults.ack_land_after_seconds = n, land_after_seconds

        self.call(run)

    def malformed_next(self, n: int, kind: str = "random", seed: int = 0) -> None:
        """Handle the next ``n`` requests, then damage their JSON answers ``kind``'s way (``malform.KINDS`` or
        ``random``): broken JSON, missing fields, nulls, wrong types, an empty object."""

        def run() -> None:
            faults = self._service.state.faults
            faults.malformed_remaining, faults.malformed_kind = n, kind
            faults.malformed_rng = random.Random(seed)

        self.call(run)

    def set_rate_limit(self, per_second: float | None) -> None:
        """Change the token bucket rate (None or 0: unlimited); buckets start full."""
        self.call(lambda: self._service.state.limiter.set_rate(per_second))

    def reset_faults(self) -> None:
        """Clear latency, pending failures and drops, the feed's faults, and restore the configured rate limit."""

        def run() -> None:
            self._service.state.faults.reset()
            self._service.feed.reset_faults()
            self._service.state.limiter.set_rate(self._service.config.rate_limit_per_second)

        self.call(run)

    def close_websockets(self, code: int = 1011) -> None:
        """Close every WebSocket connection (1011: the SDK reconnects; 1000: it does not)."""
        future = asyncio.run_coroutine_threadsafe(self._service.feed.close_all(code), self._loop)
        if threading.get_ident() == self._loop_thread:
            return  # scheduled; it runs once the caller yields to the loop
        future.result(timeout=CONTROL_TIMEOUT_SECONDS)

    def refuse_websockets(self, refusing: bool = True) -> None:
        """Answer new WebSocket upgrades with 503 while ``refusing`` (with ``close_websockets``: a feed outage)."""
        self.call(lambda: setattr(self._service.feed.faults, "refusing", refusing))

    def stall_websockets(self, stalled: bool = True) -> None:
        """Keep every socket open but send nothing (no heartbeats either) while ``stalled``."""
        self.call(lambda: self._service.feed.set_stalled(stalled))

    def skip_websocket_sequence(self, n: int = 1) -> None:
        """Make the next ``n`` feed messages skip one ``sequence_num`` each (as if a message were lost)."""
        self.call(lambda: setattr(self._service.feed.faults, "skip_sequences", n))

    def websocket_connections(self) -> int:
        """WebSocket connections accepted since the simulator started."""
        return self.call(lambda: self._service.feed.connections)

    def register_key(self, name: str, public_pem: str) -> None:
        """Accept JWTs signed by this key name from now on."""
        self._service.keys.register(name, public_pem)


class RunningSimulator:
    """A started simulator: where to reach it, what to trust, which key to use, and its control hooks."""

    def __init__(
        self,
        service: SimulatorService,
        control: SimulatorControl,
        stopper: Callable[[], None] | None = None,
    ) -> None:
        key = service.api_key
        assert key is not None, "service not started"
        self.config = service.config
        self.state_dir = service.state_dir
        self.port = service.port
        self.base_url = f"{service.config.host}:{service.port}"
        self.ca_path = service.state_dir / "ca.pem"
        self.key_file = service.state_dir / KEY_FILE
        self.api_key = key.name
        self.api_secret = key.private_pem
        scheme = "ws" if service.config.websocket_plain else "wss"
        self.ws_url: str | None = (
            f"{scheme}://{service.config.host}:{service.ws_port}/ws" if service.ws_port is not None else None
        )
        self.admin_token = service.config.admin_token  # the control routes' credential (None: not served)
        self.control = control
        self._stopper = stopper

    def stop(self) -> None:
        """Stop serving and persist the exchange state (idempotent)."""
        if self._stopper is not None:
            stopper, self._stopper = self._stopper, None
            stopper()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningSimulator(base_url={self.base_url!r}, state_dir={str(self.state_dir)!r})"


@contextlib.asynccontextmanager
async def start_simulator(config: SimulatorConfig) -> AsyncIterator[RunningSimulator]:
    """Run the simulator on the current event loop for the duration of the ``async with`` block."""
    service = SimulatorService(config)
    await service.start()
    try:
        control = SimulatorControl(service, asyncio.get_running_loop(), threading.get_ident())
        yield RunningSimulator(service, control)
    finally:
        await service.close()


def run_simulator_in_thread(
    config: SimulatorConfig, startup_timeout_seconds: float = 30.0
) -> RunningSimulator:
    """Start the simulator on its own event loop in a daemon thread; return once it is serving."""
    ready = threading.Event()
    started: dict[str, object] = {}

    async def serve() -> None:
        service = SimulatorService(config)
        try:
            await service.start()
        except BaseException as exc:
            started["error"] = exc
            ready.set()
            await service.close()
            return
        stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        started["running"] = RunningSimulator(
            service,
            SimulatorControl(service, loop, threading.get_ident()),
            stopper=lambda: _stop_thread(loop, stop_event, thread),
        )
        ready.set()
        try:
            await stop_event.wait()
        finally:
            await service.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="simulated-exchange", daemon=True)
    thread.start()
    if not ready.wait(startup_timeout_seconds):
        raise TimeoutError(f"simulator did not start within {startup_timeout_seconds}s")
    error = started.get("error")
    if isinstance(error, BaseException):
        thread.join(startup_timeout_seconds)
        raise RuntimeError(f"simulator failed to start: {error}") from error
    running = started["running"]
    assert isinstance(running, RunningSimulator)
    return running


def _stop_thread(
    loop: asyncio.AbstractEventLoop, stop_event: asyncio.Event, thread: threading.Thread
) -> None:
    if threading.current_thread() is thread:
        raise RuntimeError("stop() called from the simulator's own thread")
    with contextlib.suppress(RuntimeError):  # loop already closed
        loop.call_soon_threadsafe(stop_event.set)
    thread.join(CONTROL_TIMEOUT_SECONDS)
