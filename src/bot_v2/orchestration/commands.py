"""The work behind the operator commands: each opens a runtime or the state, does one job and returns data.

Nothing here prints or picks an exit code: the CLI layer (``bot_v2.cli.handlers``) calls these, renders the
result and decides the exit code, so orchestration never imports the terminal layer (the import-direction test
in tests/unit/test_layers.py keeps it so). Errors are raised as the project's typed errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import secrets
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bot_v2.brokerages.coinbase import CoinbaseBroker
from bot_v2.config import BotSettings
from bot_v2.domain import EditPreview, Order, OrderId, OrderPreview, OrderRequest, OrderStatus, utc_now
from bot_v2.errors import InputError, StateIntegrityError, TradingHaltedError
from bot_v2.monitoring.exporter import serve_metrics
from bot_v2.orchestration.bot import BotRunSummary, OrderEvaluation
from bot_v2.orchestration.concurrency import task_group
from bot_v2.orchestration.wiring import (
    Runtime,
    control_writer_settings,
    exchange_connection_needs_simulator,
    open_runtime,
    open_state,
    reader_settings,
)
from bot_v2.risk import ReasonCode
from bot_v2.state import StateCategory

if TYPE_CHECKING:
    from bot_v2.orchestration.emergency import EmergencyRequest
    from bot_v2.state.models import CheckpointInfo

logger = logging.getLogger(__name__)

EDIT_PREVIEW_TTL_SECONDS = 600


async def run_with_lease(
    settings: BotSettings, *, standby: bool = False, **run_bot_args: Any
) -> BotRunSummary:
    """Run the loop as this bot id's one live writer (DESIGN.md "Ownership"); ``run_bot_args`` go to
    ``run_bot`` (``once``, ``max_cycles``, ``strategy``, ``stop_event``).

    The state opens read-only; the lease decides who writes. A primary takes it at once (another live
    holder: ``LeaseHeldError``, exit 2, before the exchange or the in-process simulator is even touched); a
    ``standby`` connects everything, follows the lease and takes over when it expires or is handed over.
    Then the state is fenced with the lease epoch and the exchange sits behind the lease gate. The lease is
    released when the run ends (a crash leaves it to expire).
    """
    from bot_v2.monitoring.events import EventStore
    from bot_v2.monitoring.metrics import METRICS
    from bot_v2.orchestration.bot import run_bot
    from bot_v2.orchestration.lease import LeasedBroker, LeaseKeeper, new_claim, warm_lease_gate

    if standby and exchange_connection_needs_simulator(settings):
        raise InputError(
            "--standby: the primary and the standby must trade on ONE exchange, but this profile starts its "
            "own in-process simulator; run the simulator standalone and point both at it "
            "(COINBASE_BASE_URL, COINBASE_CA_FILE, COINBASE_KEY_FILE; see docs/SIMULATOR.md)"
        )
    async with AsyncExitStack() as stack:
        stack.enter_context(
            serve_metrics(
                settings.metrics_port,
                settings.metrics_host,
                bot_id=settings.bot_id,
                required=settings.metrics_port_explicit,
            )
        )
        # read-only until it holds the lease (a refused second start writes nothing); HOT is still required
        # at start, as for any bot: only commands that merely look start without it
        not_yet_owner = dataclasses.replace(settings.state, read_only=True)
        state = await stack.enter_async_context(
            open_state(dataclasses.replace(settings, state=not_yet_owner))
        )
        events = EventStore(settings.events_path)
        stack.callback(events.close)
        keeper = LeaseKeeper(
            state,
            settings.lease,
            new_claim("standby" if standby else "primary"),
            bot_id=settings.bot_id,
            events=events,
            metrics=METRICS,
            outage_max_seconds=settings.state.warm_outage_max_seconds,
        )
        if standby:
            runtime = await stack.enter_async_context(open_runtime(settings, state=state))
            await _follow_as_standby(keeper, settings)
            stack.push_async_callback(keeper.release)
        else:
            await keeper.acquire()
            stack.push_async_callback(keeper.release)
            runtime = await stack.enter_async_context(open_runtime(settings, state=state))
        await state.take_ownership(keeper.epoch)
        state.set_lease_gate(warm_lease_gate(keeper, state))  # PostgreSQL back: renew before the replay
        exchange = runtime.exchange
        if isinstance(exchange, CoinbaseBroker):  # its last x-ratelimit-* answer, read at each scrape
            METRICS.watch_rate_limit(lambda: exchange.rate_limit)
            stack.callback(METRICS.watch_rate_limit, None)
        runtime = dataclasses.replace(
            runtime,
            broker=LeasedBroker.wrap(runtime.broker, keeper),
            exchange=LeasedBroker.wrap(runtime.exchange, keeper),
        )
        return await run_bot(runtime, lease=keeper, **run_bot_args)


async def _follow_as_standby(keeper: Any, settings: BotSettings) -> None:
    """Wait, connected and read-only, until the lease is free; log who holds it now and then."""
    last_log = -math.inf

    async def on_wait(held: Any) -> None:
        nonlocal last_log
        if time.monotonic() - last_log >= 30:
            last_log = time.monotonic()
            logger.info("standby for bot %r: lease held by %s", settings.bot_id, held.describe())

    logger.info(
        "standby for bot %r: connected, following the lease (TTL %.3fs); taking over when it expires",
        settings.bot_id,
        settings.lease.ttl_seconds,
    )
    record = await keeper.wait_for_lease(on_wait)
    logger.warning("standby for bot %r: took over with epoch %d", settings.bot_id, record.epoch)


async def request_step_down(settings: BotSettings, *, source: str) -> str | None:
    """Ask the running bot to hand over at once (planned maintenance): it sees the request at its next lease
    renewal (within TTL/3), finishes the cycle in flight, keeps its open orders, flushes and releases the
    lease; a standby takes over. ``source`` (who asked and why) goes into the lease row and the holder's
    ``step_down`` event. Returns the holder asked (``describe()``), None when no bot holds the lease."""
    async with open_state(reader_settings(settings)) as state:
        record = await state.request_handover(source)
    return None if record is None else record.describe()


# --- account snapshot -------------------------------------------------------------------------------------------


async def account_snapshot(settings: BotSettings) -> dict[str, Any]:
    """Balances, positions, open orders, permissions, fee tier, limits, clock skew, trading state, PnL and
    spot holdings, read with the reader's settings (no lease, nothing written)."""
    async with open_runtime(reader_settings(settings)) as runtime:
        return await _snapshot_data(runtime)


async def _snapshot_data(runtime: Runtime) -> dict[str, Any]:
    exchange = runtime.exchange
    async with task_group() as tg:  # one error out, not an ExceptionGroup
        balances = tg.create_task(exchange.list_balances())
        positions = tg.create_task(exchange.list_positions())
        orders = tg.create_task(exchange.list_orders(statuses=[OrderStatus.OPEN]))
        permissions = tg.create_task(exchange.get_key_permissions())
        fee_tier = tg.create_task(exchange.get_fee_tier())
        server_time = tg.create_task(exchange.server_time())
        futures = tg.create_task(exchange.get_futures_balance_summary())
    local_now = utc_now()
    trading_state: Any = None
    if runtime.state is not None:
        from bot_v2.orchestration.bot import load_trading_state

        trading_state = await load_trading_state(runtime)
    skew = (server_time.result() - local_now).total_seconds()
    pnl, book = await _stored_pnl(runtime, local_now)
    return {
        "profile": runtime.settings.profile.value,
        "bot_id": runtime.settings.bot_id,
        "balances": [asdict(b) | {"total": b.total} for b in balances.result()],
        "positions": [asdict(p) for p in positions.result()],
        "open_orders": [asdict(o) for o in orders.result()],
        "permissions": asdict(permissions.result()),
        "fee_tier": asdict(fee_tier.result()),
        "futures_balance": futures.result(),
        "limits": runtime.settings.risk.to_dict(),
        "server_time": server_time.result(),
        "clock_skew_seconds": round(skew, 3),
        "trading_state": trading_state,
        "pnl": pnl,
        "bot_positions": book,
        "spot_holdings": await _spot_holdings(runtime, balances.result()),
    }


def _decimal(value: Any) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value))
    except ArithmeticError:
        return None


async def _stored_pnl(runtime: Runtime, now: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The bot's PnL as its last cycle stored it (``portfolio:pnl``) with today's (the daily-loss tracker in
    ``guards:risk``: realized since 00:00 UTC + the change in unrealized), and its own positions."""
    from bot_v2.orchestration import keys

    if runtime.state is None:
        return None, []
    found = await runtime.state.batch_get_state([keys.PNL_KEY, keys.GUARDS_KEY])
    book = [
        dict(value)
        for value in (
            await runtime.state.batch_get_state(await runtime.state.get_keys_by_pattern("positions:*"))
        ).values()
        if isinstance(value, dict) and _decimal(value.get("quantity"))
    ]
    stored, guards = found.get(keys.PNL_KEY), found.get(keys.GUARDS_KEY)
    if not isinstance(stored, dict):
        return None, book
    today: Decimal | None = None
    daily = guards.get("daily_pnl") if isinstance(guards, dict) else None
    if isinstance(daily, dict) and isinstance(guards, dict):
        realized, baseline = (
            _decimal(daily.get("realized_pnl_usd")),
            _decimal(daily.get("unrealized_baseline_usd")),
        )
        unrealized = _decimal(guards.get("last_unrealized_pnl_usd"))
        if str(daily.get("day")) == now.date().isoformat() and None not in (realized, baseline, unrealized):
            today = realized + unrealized - baseline  # type: ignore[operator]
    return {
        "realized": _decimal(stored.get("realized_pnl")),
        "unrealized": _decimal(stored.get("unrealized_pnl")),
        "today": today,
        "fees": _decimal(stored.get("fees")),
        "equity_usd": _decimal(stored.get("equity_usd")),
        "updated_at": stored.get("updated_at"),
    }, book


async def _spot_holdings(runtime: Runtime, balances: Any) -> list[dict[str, Any]]:
    """Non-cash balances valued at the mid of ``<currency>-USD`` (spot: what the bot holds IS its position)."""
    from bot_v2.domain import Symbol

    cash = {"USD", "USDC"}
    held = [b for b in balances if b.currency not in cash and b.total > 0]
    symbols = [Symbol(f"{b.currency}-USD") for b in held]
    listed = {p.symbol for p in await runtime.exchange.list_products(symbols)} if symbols else set()
    quotes = await runtime.exchange.get_quotes([s for s in symbols if s in listed]) if listed else {}
    rows = []
    for balance, symbol in zip(held, symbols, strict=True):
        quote = quotes.get(symbol)
        mark = quote.mid if quote is not None else None
        rows.append(
            {
                "currency": balance.currency,
                "quantity": balance.total,
                "mark_usd": mark,
                "value_usd": balance.total * mark if mark is not None else None,
            }
        )
    return rows


# --- orders: preview, edit ----------------------------------------------------------------------------------------


async def preview_with_verdict(
    settings: BotSettings, request: OrderRequest
) -> tuple[OrderPreview, OrderEvaluation]:
    """The exchange's preview of ``request`` and the bot's own guard verdict on it (nothing is sent)."""
    from bot_v2.orchestration.bot import evaluate_order

    async with open_runtime(reader_settings(settings)) as runtime:
        product = await runtime.exchange.get_product(request.symbol)
        request.validate_for(product)
        preview = await runtime.exchange.preview_order(request)
        verdict = await evaluate_order(runtime, request)
    return preview, verdict


@dataclass(frozen=True, slots=True)
class EditPreviewed:
    """An edit preview: the order as it is, the exchange's preview, and the id it is stored under (None when
    the exchange refused it: nothing is stored)."""

    order: Order
    preview: EditPreview
    preview_id: str | None


async def preview_edit(
    settings: BotSettings, order_id: OrderId, size: Decimal | None, price: Decimal | None
) -> EditPreviewed:
    """Preview an edit of an open order; store it under a PREVIEW_ID for ``apply_edit``."""
    async with open_runtime(control_writer_settings(settings)) as runtime:
        order = await runtime.exchange.get_order(order_id)
        new_size = size if size is not None else order.quantity
        new_price = price if price is not None else order.limit_price
        if new_price is None:
            raise InputError(f"--order-price: order {order_id} has no limit price; give the new price")
        preview = await runtime.exchange.preview_edit(order_id, new_size, new_price)
        preview_id = preview.preview_id or secrets.token_hex(8)
        if not preview.errors:
            assert runtime.state is not None
            await runtime.state.set_state(
                f"edit_previews:{preview_id}",
                {"order_id": order_id, "size": new_size, "price": new_price, "created_at": utc_now()},
                StateCategory.ORDERS,
                ttl_seconds=EDIT_PREVIEW_TTL_SECONDS,
            )
    return EditPreviewed(order, preview, preview_id if not preview.errors else None)


@dataclass(frozen=True, slots=True)
class EditApplied:
    """The verdict on an edit and, when it was approved, the order as the exchange edited it."""

    verdict: OrderEvaluation
    order: Order | None


async def apply_edit(settings: BotSettings, order_id: OrderId, preview_id: str) -> EditApplied:
    """Apply a stored edit preview: the same size and price that were previewed, nothing else -- judged first
    like a new order (guards, trading state, kill switch) with the edited order in place of the resting one.
    A refused edit sends nothing and keeps the stored preview (it can be applied once allowed)."""
    from bot_v2.orchestration.bot import evaluate_order

    async with open_runtime(control_writer_settings(settings)) as runtime:
        assert runtime.state is not None
        stored = await runtime.state.get_state(f"edit_previews:{preview_id}")
        if stored is None:
            raise InputError(f"--apply-order-edit: no edit preview {preview_id!r} (expired or never made)")
        if not isinstance(stored, dict) or stored.get("order_id") != order_id:
            raise InputError(f"--apply-order-edit: preview {preview_id!r} belongs to another order")
        try:
            size, price, created = Decimal(stored["size"]), Decimal(stored["price"]), stored["created_at"]
        except (KeyError, TypeError, ArithmeticError):
            raise StateIntegrityError(f"edit_previews:{preview_id}: malformed stored preview") from None
        if utc_now() - created > timedelta(seconds=EDIT_PREVIEW_TTL_SECONDS):
            raise InputError(f"--apply-order-edit: preview {preview_id!r} expired; preview again")
        current = await runtime.exchange.get_order(order_id)
        edited = dataclasses.replace(
            edited_request(current),
            quantity=size,
            limit_price=price if current.limit_price is not None else None,
        )
        verdict = await evaluate_order(runtime, edited, replacing=order_id)
        if not verdict.approved:
            return EditApplied(verdict, None)
        order = await runtime.exchange.edit_order(order_id, size, price, preview_id=None)
        await runtime.state.delete_state(f"edit_previews:{preview_id}")
    return EditApplied(verdict, order)


def edited_request(order: Any) -> OrderRequest:
    """The order as a request (its size and price are what an edit changes)."""
    return OrderRequest(
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        quantity=order.quantity,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        time_in_force=order.time_in_force,
        reduce_only=order.reduce_only,
        leverage=order.leverage,
    )


# --- emergency commands ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedEmergency:
    """An emergency request in ``control:emergency`` and who carries it out: ``holder`` is the running bot's
    lease (``describe()``), None when no bot holds the lease (the command then starts one for a cycle)."""

    request: EmergencyRequest
    holder: str | None


#: How long an emergency command waits for the running bot's result: a few cycles and the lease TTL.
def _emergency_wait_seconds(settings: BotSettings) -> float:
    return max(10.0, 3 * settings.interval_seconds + settings.lease.ttl_seconds)


async def queue_emergency_request(
    settings: BotSettings,
    action: str,
    *,
    symbol: str | None = None,
    order: OrderRequest | None = None,
    source: str,
    reason: str = "",
) -> QueuedEmergency:
    """Queue ``--cancel-all`` / ``--flatten`` / ``--place-order`` for the bot and say whether one is running."""
    from bot_v2.domain import Symbol
    from bot_v2.orchestration.emergency import EmergencyAction, queue_emergency

    kind = EmergencyAction(action)
    async with open_state(control_writer_settings(settings)) as state:
        lease = await state.read_lease()
        request = await queue_emergency(
            state,
            kind,
            symbol=Symbol(symbol.upper()) if symbol else None,
            order=order,
            source=source,
            reason=reason,
        )
    running = lease is not None and lease.live
    return QueuedEmergency(request, lease.describe() if running and lease is not None else None)


async def await_emergency_result(settings: BotSettings, queued: QueuedEmergency) -> dict[str, Any]:
    """The running bot's result for the request, waiting a few cycles for it (``TradingHaltedError`` when it
    did not come in time: the request stays queued and the bot carries it out at its next cycle)."""
    from bot_v2.orchestration.emergency import read_emergency_result

    request = queued.request
    async with open_state(reader_settings(settings)) as state:
        deadline = time.monotonic() + _emergency_wait_seconds(settings)
        result = await read_emergency_result(state, request.request_id)
        while result is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            result = await read_emergency_result(state, request.request_id)
    if result is None:
        raise TradingHaltedError(
            f"--{request.action.value.replace('_', '-')}: request {request.request_id} is queued but the running "
            "bot did not carry it out in time; it will at its next cycle (check its log and events)"
        )
    return result


async def run_emergency_once(settings: BotSettings, queued: QueuedEmergency) -> dict[str, Any]:
    """No bot holds the lease: start the bot for one cycle (``hold`` strategy, orders kept at its stop) to carry
    the request out -- the same order path as the running bot's, so "directly" never means "around the guards".
    A cycle that failed as retryable (exchange, lease renewal) is tried again, up to three runs."""
    from types import MappingProxyType

    from bot_v2.config import ShutdownOrderPolicy
    from bot_v2.orchestration.emergency import read_emergency_result

    request = queued.request
    once = dataclasses.replace(
        settings,
        strategy="hold",
        strategy_params=MappingProxyType({}),
        shutdown_order_policy=ShutdownOrderPolicy.KEEP,
        metrics_port=None,  # a one-cycle bot: nothing scrapes it, and it must not take the bot's port
    )
    result: dict[str, Any] | None = None
    for _ in range(3):
        summary = await run_with_lease(once, standby=False, once=True)
        async with open_state(reader_settings(settings)) as state:
            result = await read_emergency_result(state, request.request_id)
        if result is not None or summary.halted or summary.fenced:
            break
    if result is None:
        raise TradingHaltedError(
            f"--{request.action.value.replace('_', '-')}: the bot started for it did not complete a cycle "
            f"({summary.errors[-1] if summary.errors else 'see the log'}); request {request.request_id} stays "
            "queued for the next start"
        )
    return result


# --- controls ---------------------------------------------------------------------------------------------------


async def write_controls(
    settings: BotSettings, *, kill_switch: bool | None, reduce_only: bool | None, source: str
) -> dict[str, Any]:
    """Write the operator control key that running bots of this profile read every cycle; return it."""
    from bot_v2.orchestration.controls import set_operator_control

    async with open_state(control_writer_settings(settings)) as state:
        return await set_operator_control(
            state, kill_switch=kill_switch, reduce_only=reduce_only, source=source
        )


@dataclass(frozen=True, slots=True)
class ClearQueued:
    """A queued ``--clear-reason`` request, every pending one, and the bot's last ``safety:mode`` record."""

    request: dict[str, Any]
    pending: list[dict[str, Any]]
    safety: dict[str, Any] | None


async def queue_reason_clear(settings: BotSettings, reason: ReasonCode, *, source: str) -> ClearQueued:
    """Queue a request that running bots of this profile clear the latched ``reason`` at their next cycle."""
    from bot_v2.orchestration.controls import request_reason_clear
    from bot_v2.orchestration.keys import SAFETY_KEY

    async with open_state(control_writer_settings(settings)) as state:
        request, control = await request_reason_clear(state, reason, source=source)
        safety = await state.get_state(SAFETY_KEY)
    return ClearQueued(
        request.to_dict(),
        [r.to_dict() for r in control.clear_requests],
        safety if isinstance(safety, dict) else None,
    )


@dataclass(frozen=True, slots=True)
class ReconcileQueued:
    """A queued ``--reconcile`` request, the last request the bot ran and its order-discovery watermark."""

    request: dict[str, Any]
    last_run: int | None
    watermark: Any


async def queue_reconcile(settings: BotSettings, *, source: str) -> ReconcileQueued:
    """Queue a request that running bots of this profile reconcile with the exchange at their next cycle."""
    from bot_v2.orchestration.controls import parse_reconcile_ack, request_reconcile
    from bot_v2.orchestration.keys import RECONCILE_ACK_KEY, WATERMARK_KEY
    from bot_v2.orchestration.reconcile import parse_watermark

    async with open_state(control_writer_settings(settings)) as state:
        request, _ = await request_reconcile(state, source=source)
        ack, watermark = await state.get_state(RECONCILE_ACK_KEY), await state.get_state(WATERMARK_KEY)
    try:
        last_run = None if ack is None else parse_reconcile_ack(ack)
        last_watermark = None if watermark is None else parse_watermark(watermark)
    except StateIntegrityError:  # only shown; the bot reports and repairs these itself
        last_run, last_watermark = None, None
    return ReconcileQueued(request.to_dict(), last_run, last_watermark)


# --- checkpoints ----------------------------------------------------------------------------------------------


async def checkpoint_now(settings: BotSettings) -> CheckpointInfo:
    """Take a checkpoint now and record its event. Safe while a bot runs: it is one consistent read of WARM
    and writes only a new checkpoint object (no record of the bot), so it needs no lease."""
    from bot_v2.monitoring.events import EventStore, EventType
    from bot_v2.orchestration.checkpointing import checkpoint_event_fields

    async with open_state(control_writer_settings(settings)) as state:
        started = time.perf_counter()
        info = await state.checkpoints.create_checkpoint("manual")
        elapsed = time.perf_counter() - started
    events = EventStore(settings.events_path)
    await events.emit(EventType.CHECKPOINT, by="cli", **checkpoint_event_fields(info, elapsed))
    events.close()
    return info


async def stored_checkpoints(settings: BotSettings) -> list[CheckpointInfo]:
    """The stored checkpoints, newest first."""
    async with open_state(reader_settings(settings)) as state:
        return list(await state.checkpoints.list_checkpoints())
