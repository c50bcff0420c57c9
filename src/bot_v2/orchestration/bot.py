"""``run_bot``: the bot's lifecycle around the trading loop.

start: load state -> restore guard state and safety mode -> reconcile with the exchange -> running marker,
       while the strategy's price history warms up beside it (stored history, candles) -> load acknowledged
       clear requests.
run:   ``Cadence`` calls ``TradingCycle.run`` every ``interval_seconds`` (start to start); ``once`` runs one.
       After a cycle (its state batch flushed, its latency measured) a background checkpoint starts when
       ``checkpoint_interval_seconds`` have passed since the newest stored one (``checkpointing.py``), and
       old terminal history is archived about once an hour (``history.py``).
stop:  SIGINT/SIGTERM (or ``stop_event``) stop intake -> the cycle in flight finishes (drain) -> open orders
       cancelled or kept per ``shutdown_order_policy`` -> final sync and ONE state flush -> running marker
       removed -> "shutdown" checkpoint -> health/events closed. Connections are closed by ``open_runtime``'s
       exit stack.

Ownership: with a ``LeaseKeeper`` (``orchestration/lease.py``; every real run has one) the renewal task runs for
the whole run, each completed cycle is its watchdog heartbeat, and losing the lease ends the run: fenced ->
no exchange call and no state write after that moment (no shutdown bookkeeping at all; the new holder
reconciles); asked to step down -> the cycle in flight finishes, open orders are KEPT for the next holder,
one flush, the running marker is removed, and the caller releases the lease.

The error policy is the ``except`` clauses of ``_run_cycle``, in one place:

* ``RetryableError`` (exchange down, rate limit, state tier down): counted (the error-rate guard sees it),
  the cycle's state writes stay queued, the next cycle retries.
* ``ExchangeProtocolError`` (an answer the adapter cannot read: broken JSON, a missing field): retried like
  a retryable error until it has lasted ``PROTOCOL_ERROR_CYCLES`` cycles in a row and
  ``PROTOCOL_ERROR_SECONDS`` -- a garbled answer (a proxy, a truncated body) must not stop a bot -- then a
  halt (the API may have changed under us).
* ``HaltError`` and any unexpected exception: trading halts -- the loop stops, shuts down in order, and the
  summary reports the error (the CLI maps it to an exit code). Never logged-and-ignored.
* ``FencedError`` (a newer lease epoch exists): one ERROR line, the loop stops, nothing more is sent or written.
* ``CancelledError`` is never caught.
* A failed checkpoint is a WARNING + ``checkpoint_failed`` event; trading continues (WARM is the durable copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot_v2.config.hashing import config_hash
from bot_v2.domain import OrderId, OrderRequest, Symbol, utc_now
from bot_v2.errors import (
    ConfigError,
    ExchangeProtocolError,
    FencedError,
    RetryableError,
    UnknownSymbolError,
    one_line,
)
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.health import HealthStatus, write_health_async
from bot_v2.monitoring.metrics import METRICS, BotMetrics
from bot_v2.orchestration import keys, oplog
from bot_v2.orchestration.alerting import AlertWatcher, current_alerts
from bot_v2.orchestration.cadence import Cadence
from bot_v2.orchestration.checkpointing import CheckpointScheduler, CheckpointSource
from bot_v2.orchestration.concurrency import cancel_and_wait
from bot_v2.orchestration.controls import ControlWatcher
from bot_v2.orchestration.crashpoints import crash_point_from_env
from bot_v2.orchestration.cycle import CycleReport, SymbolRow, TradingCycle, safety_value
from bot_v2.orchestration.emergency import EmergencyDesk
from bot_v2.orchestration.execution import OrderExecutor
from bot_v2.orchestration.history import HistoryArchiver
from bot_v2.orchestration.lease import LeaseKeeper
from bot_v2.orchestration.market import (
    CycleOutcomes,
    fetch_market,
    risk_snapshot,
    unbooked_requests,
    with_resting,
)
from bot_v2.orchestration.marketfeed import open_feed
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.orchestration.reconcile import Reconciler, load_risk_engine
from bot_v2.orchestration.tierwatch import TierWatcher, is_warm_outage
from bot_v2.orchestration.tracking import OrderTracker
from bot_v2.orchestration.warmup import persist_history, warm_start
from bot_v2.orchestration.warmwatch import WarmWatcher
from bot_v2.orchestration.wiring import Runtime
from bot_v2.risk import GuardResult, RiskEngine, unhealthy_reasons
from bot_v2.state import StateManager
from bot_v2.strategies import PriceHistory, Strategy, create_strategy

logger = logging.getLogger(__name__)

#: How long unreadable exchange answers (ExchangeProtocolError) may go on before trading halts: at least
#: this many cycles in a row AND this many seconds since the first -- a garbled answer or a short burst of
#: them is retried like an outage; garbage that persists looks like an API change, not noise.
PROTOCOL_ERROR_CYCLES = 3
PROTOCOL_ERROR_SECONDS = 10.0

__all__ = ["BotRunSummary", "OrderEvaluation", "SymbolRow", "evaluate_order", "load_trading_state", "run_bot"]

_MIN_HISTORY = 30
_DRAIN_TIMEOUT_SECONDS = 30.0


@dataclass(slots=True)
class BotRunSummary:
    """What a run did. ``rows``: per symbol, the last cycle that acted (else the last cycle)."""

    rows: list[SymbolRow] = field(default_factory=list)
    cycles: int = 0
    trading_state: str = "ACTIVE"
    errors: list[str] = field(default_factory=list)
    orders_placed: int = 0
    fills: int = 0
    halted: bool = False
    stopped_by: str = ""
    reconciliation: dict[str, Any] | None = None
    warm_start: dict[str, Any] | None = None
    fenced: bool = False  # a newer lease holder took over: this run sent and wrote nothing after that
    stepped_down: bool = False  # handed over on request (--step-down): open orders kept for the next holder
    reasons: list[str] = field(default_factory=list)  # the risk engine's active reason codes at the end

    def record(self, report: CycleReport) -> None:
        by_symbol = {row.symbol: row for row in self.rows}
        for row in report.rows:
            previous = by_symbol.get(row.symbol)
            if previous is None or row.action != "skipped" or previous.action == "skipped":
                by_symbol[row.symbol] = row
            else:
                by_symbol[row.symbol] = dataclasses.replace(previous, mark=row.mark, position=row.position)
        self.rows = list(by_symbol.values())
        self.orders_placed += report.orders_placed
        self.fills += report.new_fills


async def run_bot(
    runtime: Runtime,
    *,
    once: bool = False,
    max_cycles: int | None = None,
    stop_event: asyncio.Event | None = None,
    strategy: Strategy | None = None,
    metrics: BotMetrics | None = None,
    checkpoints: CheckpointSource | None = None,
    lease: LeaseKeeper | None = None,
) -> BotRunSummary:
    """Run the trading loop until stopped; ``once`` runs one cycle. Installs SIGINT/SIGTERM handlers when
    called from the main thread. ``strategy`` overrides the one named in the settings (tests, tools);
    ``checkpoints`` the state's checkpoint store (default ``runtime.state.checkpoints`` when the state is a
    ``StateManager``; a state without one runs without checkpoints). ``lease``: the lease this process holds
    (renewed here for the whole run; the caller acquired it and releases it)."""
    renewal: asyncio.Task[None] | None = None
    stop = stop_event or asyncio.Event()
    if lease is not None:
        renewal = asyncio.get_running_loop().create_task(_keep_lease(lease, stop), name="lease-renewal")
    try:
        return await _run_bot(runtime, once, max_cycles, stop, strategy, metrics, checkpoints, lease)
    finally:
        if renewal is not None:
            await cancel_and_wait(renewal)


async def _keep_lease(lease: LeaseKeeper, stop: asyncio.Event) -> None:
    """Renew until the lease is lost (fenced) or handed over, then stop the loop."""
    await lease.run()
    stop.set()


async def _run_bot(
    runtime: Runtime,
    once: bool,
    max_cycles: int | None,
    stop: asyncio.Event,
    strategy: Strategy | None,
    metrics: BotMetrics | None,
    checkpoints: CheckpointSource | None,
    lease: LeaseKeeper | None,
) -> BotRunSummary:
    settings = runtime.settings
    if runtime.state is None:
        raise ConfigError("run_bot: the trading loop needs the state layer (open_runtime(with_state=True))")
    state: StateStore = runtime.state
    metrics = metrics or METRICS
    beat = lease.heartbeat if lease is not None else (lambda: None)
    events = EventStore(settings.events_path)
    crash_point = crash_point_from_env()  # read once, at start (test-only hook)
    strategy = strategy or create_strategy(settings.strategy, settings.strategy_params)
    summary = BotRunSummary()
    now = utc_now()

    products = {p.symbol: p for p in await runtime.broker.list_products(settings.symbols)}
    missing = [s for s in settings.symbols if s not in products]
    if missing:
        raise UnknownSymbolError(f"--symbols: not listed by the exchange: {', '.join(missing)}")
    tracker = OrderTracker(
        metrics,
        contract_sizes={s: p.contract_size for s, p in products.items()},
        intent_grace_seconds=settings.intent_grace_seconds,
    )
    await tracker.load(state)
    beat()
    risk, guard_error = await load_risk_engine(state, settings.risk, now)
    await events.emit(
        EventType.BOT_STARTED,
        now,
        bot_id=settings.bot_id,
        profile=settings.profile,
        symbols=settings.symbols,
        dry_run=settings.dry_run,
        strategy=strategy.name,
        pid=os.getpid(),
        config_hash=config_hash(settings),
    )
    reconciler = Reconciler(
        broker=runtime.broker,
        state=state,
        tracker=tracker,
        events=events,
        metrics=metrics,
        symbols=settings.symbols,
        client_id_prefix=settings.client_id_prefix,
        cancel_open_orders_after_crash=settings.shutdown_order_policy.value == "cancel",
        derivative_symbols=[s for s, p in products.items() if p.is_derivative],
        spot_base_currencies={s: p.base_currency for s, p in products.items() if not p.is_derivative},
        mismatch_state=settings.reconcile_mismatch_action.trading_state,
    )
    # the warm start (stored history + candles) and reconciliation touch different keys: run them together,
    # so a standby's takeover (and any restart) waits for the longer of the two, not their sum
    warming = asyncio.get_running_loop().create_task(
        _warm_history(runtime, state, strategy, events, summary, now), name="warm-start"
    )
    try:
        report = await reconciler.run(risk, guard_error, now)
    except BaseException:
        warming.cancel()
        with contextlib.suppress(BaseException):
            await warming
        raise
    summary.reconciliation = report.to_dict()
    history = await warming
    beat()
    executor = OrderExecutor(
        broker=runtime.broker,
        state=state,
        risk=risk,
        tracker=tracker,
        events=events,
        metrics=metrics,
        client_id_prefix=settings.client_id_prefix,
        crash_point=crash_point,
    )
    cycle = TradingCycle(
        symbols=settings.symbols,
        products=products,
        broker=runtime.broker,
        state=state,
        risk=risk,
        strategy=strategy,
        tracker=tracker,
        executor=executor,
        controls=await _control_watcher(state, events, now),
        history=history,
        events=events,
        metrics=metrics,
        derivatives=settings.enable_derivatives,
        reconciler=reconciler,
        reconcile_every_cycles=settings.reconcile_every_cycles,
        emergency=EmergencyDesk(settings.client_id_prefix),
        feed=open_feed(
            runtime.exchange,
            settings.symbols,
            tracker=tracker,
            events=events,
            metrics=metrics,
            user_channel=not settings.dry_run,  # paper fills never reach the exchange's user channel
            rest_sync_seconds=settings.ws_rest_sync_seconds,
        ),
    )
    if cycle.feed is not None:
        cycle.feed.start(cycle.book_orders)
    scheduler = await _checkpoint_scheduler(runtime, checkpoints, events, metrics)
    archiver = (
        HistoryArchiver(state, tracker, retention_days=settings.history_retention_days, events=events)
        if isinstance(state, StateManager)
        else None
    )
    limit = 1 if once else max_cycles
    beat()
    lifecycle = _Lifecycle(
        runtime, cycle, events, summary, metrics, scheduler, last_cycle=limit, lease=lease, archiver=archiver
    )
    removers = _install_signal_handlers(stop)
    try:
        cadence = Cadence(settings.interval_seconds)
        await cadence.run(lifecycle.run_cycle, stop, limit)
        summary.stepped_down = lease is not None and lease.handover_requested and not lease.fenced
        summary.fenced = summary.fenced or (lease is not None and lease.fenced)
        summary.stopped_by = (
            "fenced"
            if summary.fenced
            else "step_down"
            if summary.stepped_down
            else "halt"
            if summary.halted
            else "signal"
            if stop.is_set()
            else "once"
            if once
            else "max_cycles"
        )
    finally:
        for remove in removers:
            remove()
        if cycle.feed is not None:  # before the final sync: no booking between cycles from now on
            await cycle.feed.close()
        await lifecycle.shutdown()
    summary.cycles = cadence.stats.cycles
    summary.trading_state = "HALTED" if summary.halted else risk.state.value
    summary.reasons = [code.value for code in risk.reasons]
    return summary


async def _checkpoint_scheduler(
    runtime: Runtime, checkpoints: CheckpointSource | None, events: EventStore, metrics: BotMetrics
) -> CheckpointScheduler | None:
    """The loop's checkpoint scheduler, primed with the newest stored checkpoint (None: no store)."""
    if checkpoints is None and isinstance(runtime.state, StateManager):
        checkpoints = runtime.state.checkpoints
    if checkpoints is None:
        logger.info("checkpoints: the state store has none; running without periodic checkpoints")
        return None
    scheduler = CheckpointScheduler(
        checkpoints,
        interval_seconds=runtime.settings.state.checkpoint_interval_seconds,
        events=events,
        metrics=metrics,
    )
    await scheduler.load()
    return scheduler


async def _warm_history(
    runtime: Runtime,
    state: StateStore,
    strategy: Strategy,
    events: EventStore,
    summary: BotRunSummary,
    now: datetime,
) -> PriceHistory:
    """The strategy's price history, warmed from the last clean stop and candles (``warmup.py``)."""
    symbols = runtime.settings.symbols
    history = PriceHistory(max(strategy.required_history + 5, _MIN_HISTORY))
    warm = await warm_start(runtime.broker, state, history, symbols, now)
    summary.warm_start = warm.to_dict()
    await events.emit(
        EventType.WARM_START,
        now,
        samples={s: len(history.mids(s)) for s in symbols},
        required=strategy.required_history,
        **warm.to_dict(),
    )
    return history


async def _control_watcher(state: StateStore, events: EventStore, now: datetime) -> ControlWatcher:
    """A watcher that knows which clear requests earlier runs applied (an unreadable record is reported)."""
    controls = ControlWatcher()
    error = await controls.load_acknowledged(state)
    if error is not None:
        await events.emit(
            EventType.CONTROL_REJECTED,
            now,
            key=keys.CLEAR_ACK_KEY,
            error=error,
            kept="pending clear requests taken as applied",
        )
    error = await controls.load_reconcile_acknowledged(state)
    if error is not None:
        await events.emit(
            EventType.CONTROL_REJECTED,
            now,
            key=keys.RECONCILE_ACK_KEY,
            error=error,
            kept="the pending reconcile request taken as run (start-up reconciled)",
        )
    return controls


def _row_text(row: SymbolRow) -> str:
    mark = "-" if row.mark is None else f"{row.mark.normalize():f}"
    text = f"{row.symbol} {mark} {row.decision} {row.action}"
    return f"{text} ({row.verdict})" if row.action == "denied" else text


class _Lifecycle:
    """The loop's error policy, its checkpoints and the ordered shutdown."""

    def __init__(
        self,
        runtime: Runtime,
        cycle: TradingCycle,
        events: EventStore,
        summary: BotRunSummary,
        metrics: BotMetrics,
        checkpoints: CheckpointScheduler | None = None,
        last_cycle: int | None = None,
        lease: LeaseKeeper | None = None,
        archiver: HistoryArchiver | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.cycle = cycle
        self.events = events
        self.summary = summary
        self.metrics = metrics
        self.checkpoints = checkpoints
        self.last_cycle = last_cycle  # the shutdown checkpoint covers the last cycle of a bounded run
        self.last_report: CycleReport | None = None
        self.lease = lease
        self.archiver = archiver
        self.tiers = TierWatcher(events, metrics, runtime.settings.state)
        self.config_hash = config_hash(runtime.settings)
        self.alerts = AlertWatcher(events, metrics)
        self.warm = WarmWatcher(events, metrics)
        self.protocol_errors = 0  # cycles in a row that met an answer the adapter could not read...
        self.protocol_errors_since = 0.0  # ...the first of them (time.monotonic())

    async def run_cycle(self, number: int) -> bool:
        """One cycle under the error policy; False stops the loop (halt)."""
        now = utc_now()
        self.summary.cycles = number
        try:
            report = await self.cycle.run(number, now)
        except FencedError as exc:  # replaced by a newer holder: stop at once, send and write nothing more
            self.summary.fenced = True
            self._count_error("fenced", exc)
            if self.lease is not None:
                await self.lease.fence(exc.one_line())
            else:
                logger.error(
                    "cycle %d: %s -- stopping: a newer lease holder trades now", number, exc.one_line()
                )
            return False
        except (RetryableError, ExchangeProtocolError) as exc:
            if isinstance(exc, ExchangeProtocolError) and self._protocol_error_persists():
                return await self._halt(exc, number, now)
            self._count_error("retryable", exc)
            if is_warm_outage(exc):
                self.tiers.warm_failed(now)
            self.cycle.outcomes.record(False)
            await self.events.emit(
                EventType.CYCLE_ERROR, now, cycle=number, error=exc.one_line(), policy="retry"
            )
            logger.warning("cycle %d: %s (retrying next cycle)", number, exc.one_line())
            await self._health(False, f"cycle {number} failed: {exc.one_line()}", number, now)
            self._heartbeat()
            await self._periodic_checkpoint(number)
            return True
        except Exception as exc:  # HaltError and anything unexpected: stop trading, never ignore
            return await self._halt(exc, number, now)
        self.protocol_errors = 0
        self.last_report = report
        self.summary.record(report)
        state = self.cycle.risk.state.value
        logger.info(
            "cycle %d: %s | %s | orders %d, fills %d | %.1f ms",
            number,
            "; ".join(_row_text(row) for row in report.rows) or "no symbols",
            state,
            report.orders_placed,
            report.new_fills,
            report.duration_ms,
        )
        if report.pnl is not None:
            oplog.cycle_pnl(number, *report.pnl)
        await self.tiers.cycle_ok(report.flushed_keys, now)
        await self._health(True, f"cycle {number} ok ({state})", number, now, report.duration_ms)
        self._heartbeat()
        await self._periodic_checkpoint(number)
        return True

    def _heartbeat(self) -> None:
        """A cycle completed (even a failed one: the loop is not stuck): the lease watchdog may renew."""
        if self.lease is not None:
            self.lease.heartbeat()

    async def _periodic_checkpoint(self, number: int) -> None:
        """After the cycle (state batch flushed, latency measured, health written): report state-tier
        outages and recoveries and the runbook alerts, then checkpoint and archive history if due."""
        now = utc_now()
        cycle = self.cycle
        down = cycle.feed.down_seconds() if cycle.feed is not None else None
        alerts = current_alerts(
            cycle.risk, cycle.last_snapshot, cycle.outcomes, now, websocket_down_seconds=down
        )
        await self.alerts.observe(alerts, now)
        if isinstance(self.runtime.state, StateManager):
            health = self.runtime.state.health()
            await self.tiers.observe(health, now)
            await self.warm.observe(health, now)
        if self.checkpoints is not None and number != self.last_cycle:  # in the background: never waited for
            fenced = None if self.lease is None else self.lease.fence
            self.checkpoints.start_if_due(utc_now(), on_fenced=fenced)
        if self.archiver is not None:  # also after the last one: a run of --once cycles archives too
            await self.archiver.maybe_run(utc_now())

    def _protocol_error_persists(self) -> bool:
        if self.protocol_errors == 0:
            self.protocol_errors_since = time.monotonic()
        self.protocol_errors += 1
        lasted = time.monotonic() - self.protocol_errors_since
        return self.protocol_errors >= PROTOCOL_ERROR_CYCLES and lasted >= PROTOCOL_ERROR_SECONDS

    async def _halt(self, exc: BaseException, number: int, now: datetime) -> bool:
        text = one_line(exc)
        self._count_error("halt", exc)
        self.summary.halted = True
        logger.exception("cycle %d: %s -- halting trading", number, text)
        await self.events.emit(EventType.CYCLE_ERROR, now, cycle=number, error=text, policy="halt")
        await self._health(False, f"HALTED: {text}", number, now)
        return False

    def _count_error(self, kind: str, exc: BaseException) -> None:
        self.metrics.errors.labels(kind=kind).inc()
        self.metrics.cycles.labels(outcome="error").inc()
        self.summary.errors.append(f"{type(exc).__name__}: {exc}")

    async def _health(
        self, ok: bool, message: str, number: int, now: datetime, duration_ms: float | None = None
    ) -> None:
        """Write health.json: ``ok`` only when the cycle went well AND trading is not stopped by HALTED or a
        latched REDUCE_ONLY (``reasons`` names the codes; a message says which)."""
        reasons = unhealthy_reasons(self.cycle.risk.state, self.cycle.risk.reasons)
        if reasons and ok:
            ok, message = False, f"{message}; {self.cycle.risk.state.value}: {', '.join(reasons)}"
        status = HealthStatus(
            ok=ok,
            reasons=reasons,
            config_hash=self.config_hash,
            timestamp=utc_now(),
            message=message,
            trading_state="HALTED" if self.summary.halted else self.cycle.risk.state.value,
            last_cycle=number,
            last_cycle_at=now,
            last_cycle_ms=round(duration_ms, 3) if duration_ms is not None else None,
            pid=os.getpid(),
            bot_id=self.settings.bot_id,
            market_data=self._market_data(),
        )
        try:
            await write_health_async(self.settings.health_path, status)
        except OSError as exc:
            logger.error("health file %s: %s", self.settings.health_path, exc)

    def _market_data(self) -> dict[str, Any] | None:
        """The feed's health for health.json (and the dashboard); None without a feed."""
        feed = self.cycle.feed
        if feed is None:
            return None
        source = self.last_report.market_source if self.last_report is not None else None
        return {"source": source, **feed.status().to_dict()}

    async def shutdown(self) -> None:
        """Cancel or keep open orders, final sync, one flush, clear the running marker, take the shutdown
        checkpoint (only after a clean stop: it is then a consistent image without the marker), close events.
        Fenced: none of it (a newer holder owns the exchange orders and the state). Stepping down: open
        orders are kept for the next holder and no checkpoint delays the handover."""
        now = utc_now()
        if self.checkpoints is not None:  # a periodic one still running: superseded, or must not write
            await self.checkpoints.stop()
        if self.summary.fenced or (self.lease is not None and self.lease.fenced):
            self.summary.fenced = True
            await self.events.emit(
                EventType.BOT_STOPPED, now, clean=False, fenced=True, errors=self.summary.errors[-5:]
            )
            self.events.close()
            return
        handover = self.lease is not None and self.lease.handover_requested
        tracker, broker, state = self.cycle.tracker, self.runtime.broker, self.cycle.state
        clean = True
        try:
            async with asyncio.timeout(_DRAIN_TIMEOUT_SECONDS):
                open_ids = [o.order_id for o in tracker.open_orders if not o.status.is_terminal]
                cancel = self.settings.shutdown_order_policy.value == "cancel" and not handover
                if open_ids and cancel:
                    results = await broker.cancel_orders(open_ids)
                    for result in results:
                        await self.events.emit(
                            EventType.ORDER_CANCELLED,
                            now,
                            order_id=result.order_id,
                            success=result.success,
                            reason=result.failure_reason,
                        )
                if tracker.open_orders:
                    await self.cycle.book_sync(await tracker.sync(broker, now), CycleReport(0, now), now)
                tracker.batch.put(keys.SAFETY_KEY, safety_value(self.cycle.risk, now), StateCategory.SAFETY)
                persist_history(tracker.batch, self.cycle.history, self.cycle.symbols)
                await self.cycle.flush(None, now)
        except FencedError:  # taken over while shutting down: leave everything to the new holder
            self.summary.fenced = True
            self.events.close()
            return
        except (RetryableError, TimeoutError) as exc:
            clean = False
            logger.error("shutdown: could not finish bookkeeping (%s); the next start reconciles", exc)
            self.summary.errors.append(f"shutdown: {type(exc).__name__}: {exc}")
        marker_cleared = False
        try:
            if clean:
                await state.set_state(
                    keys.LAST_RUN_KEY,
                    {"stopped_at": now, "cycles": self.summary.cycles, "halted": self.summary.halted},
                    StateCategory.METADATA,
                )
                await state.delete_state(keys.RUNNING_KEY)
                marker_cleared = True
        except RetryableError as exc:
            logger.error("shutdown: running marker not cleared (%s)", exc)
        if marker_cleared and self.checkpoints is not None and not handover:
            await self.checkpoints.take("shutdown", utc_now())
        await self.events.emit(
            EventType.BOT_STOPPED,
            now,
            clean=clean,
            halted=self.summary.halted,
            trading_state=self.cycle.risk.state.value,
            errors=self.summary.errors[-5:],
        )
        await self._health(False, "stopped" if not self.summary.halted else "stopped: HALTED", 0, now)
        self.events.close()


def _install_signal_handlers(stop: asyncio.Event) -> list[Any]:
    """SIGINT/SIGTERM set ``stop`` (main thread only); return callables that remove the handlers."""
    if threading.current_thread() is not threading.main_thread():
        return []
    loop = asyncio.get_running_loop()
    removers = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            continue
        removers.append(lambda s=sig: loop.remove_signal_handler(s))
    return removers


# --- read-only helpers the CLI uses ---------------------------------------------------------------------


async def load_trading_state(runtime: Runtime) -> dict[str, Any] | None:
    """The last ``safety:mode`` record (trading state, reasons, controls), or None before the first run."""
    if runtime.state is None:
        return None
    value = await runtime.state.get_state(keys.SAFETY_KEY)
    return dict(value) if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class OrderEvaluation:
    """The bot's own verdict on an order (``--preview-order``)."""

    approved: bool
    results: tuple[GuardResult, ...]
    trading_state: str


async def evaluate_order(
    runtime: Runtime, request: OrderRequest, *, replacing: OrderId | None = None
) -> OrderEvaluation:
    """Judge ``request`` with the bot's guards against the current market, stored positions, followed orders
    (what each may still move the position by: ``unbooked_requests``) and controls -- the verdict the loop's
    executor would give. ``replacing``: the resting order an edit replaces (not counted twice)."""
    settings = runtime.settings
    now = utc_now()
    risk = RiskEngine(settings.risk)
    tracker = OrderTracker(BotMetrics())
    if runtime.state is not None:
        risk, _ = await load_risk_engine(runtime.state, settings.risk, now)
        await tracker.load(runtime.state)
        poll = await ControlWatcher().poll(runtime.state)
        if poll.control is not None:
            risk.apply_controls(poll.control.kill_switch, poll.control.reduce_only, now)
    symbols: list[Symbol] = sorted({*settings.symbols, request.symbol})
    products = {p.symbol: p for p in await runtime.exchange.list_products(symbols)}
    market = await fetch_market(runtime.exchange, symbols, settings.enable_derivatives)
    history = PriceHistory(_MIN_HISTORY)
    snapshot = risk_snapshot(
        symbols=symbols,
        market=market,
        products=products,
        positions={s: p for s, p in tracker.book.positions.items() if p.quantity != Decimal(0)},
        history=history,
        outcomes=CycleOutcomes(),
        open_orders=len(tracker.open_orders),
    )
    snapshot = with_resting(snapshot, unbooked_requests(tracker.open_orders, exclude=replacing), request)
    verdict = risk.check_order(request, snapshot, now)
    return OrderEvaluation(verdict.allowed, verdict.results, verdict.state.value)
