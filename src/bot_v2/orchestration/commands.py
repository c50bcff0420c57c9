"""Operator commands behind the CLI flags: each opens a runtime, does one job, renders, returns an exit code."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import secrets
import time
from contextlib import AsyncExitStack
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from bot_v2 import render
from bot_v2.brokerages.coinbase import CoinbaseBroker
from bot_v2.config import BotSettings
from bot_v2.domain import OrderId, OrderRequest, OrderStatus, utc_now
from bot_v2.errors import (
    FencedError,
    GuardDeniedError,
    InputError,
    LeaseHeldError,
    OrderRejectedError,
    StateIntegrityError,
    TradingHaltedError,
)
from bot_v2.monitoring.exporter import serve_metrics
from bot_v2.orchestration.bot import BotRunSummary
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

logger = logging.getLogger(__name__)

EDIT_PREVIEW_TTL_SECONDS = 600


async def run(settings: BotSettings, *, once: bool, standby: bool = False) -> int:
    """Trade: one cycle with ``once`` (--dev-fast), otherwise until SIGINT/SIGTERM (``run_with_lease``)."""
    summary = await run_with_lease(settings, standby=standby, once=once)
    render.print_run_summary(summary)
    if once and summary.trading_state == "HALTED" and not summary.halted:
        # --dev-fast is a smoke test: a run that ends unable to trade did not pass it (exit 1)
        raise TradingHaltedError(
            f"the run ended HALTED ({', '.join(summary.reasons) or 'no reason recorded'}): no order could be "
            "sent; see the trading state with --account-snapshot"
        )
    if summary.fenced:
        raise FencedError(
            f"bot {settings.bot_id!r}: a newer lease holder took over; this process stopped without sending "
            "or writing anything more"
        )
    if summary.halted:
        # The loop already shut down in order; a halted run is a runtime failure for the caller (exit 1).
        raise TradingHaltedError(f"trading halted: {summary.errors[-1] if summary.errors else 'see the log'}")
    return 0


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


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise


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


async def step_down(settings: BotSettings) -> int:
    """Ask the running bot to hand over at once (planned maintenance): it sees the request at its next lease
    renewal (within TTL/3), finishes the cycle in flight, keeps its open orders, flushes and releases the
    lease; a standby takes over."""
    async with open_state(reader_settings(settings)) as state:
        record = await state.request_handover()
    if record is None:
        raise InputError(f"--step-down: no bot holds the lease of {settings.bot_id!r} (nothing is running)")
    render.print_step_down(settings.bot_id, record.describe())
    return 0


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


async def account_snapshot(settings: BotSettings, *, as_json: bool) -> int:
    """Print balances, positions, open orders, permissions, fee tier, limits, clock skew, trading state."""
    async with open_runtime(reader_settings(settings)) as runtime:
        data = await _snapshot_data(runtime)
    if as_json:
        render.print_json(data)
    else:
        render.print_account_snapshot(data)
    return 0


async def preview_order(settings: BotSettings, request: OrderRequest) -> int:
    """Show the exchange's preview and the bot's own guard verdict; exit 2 if either refuses."""
    from bot_v2.orchestration.bot import evaluate_order

    async with open_runtime(reader_settings(settings)) as runtime:
        product = await runtime.exchange.get_product(request.symbol)
        request.validate_for(product)
        preview = await runtime.exchange.preview_order(request)
        verdict = await evaluate_order(runtime, request)
    render.print_order_preview(request, preview, verdict)
    if not verdict.approved:
        failed = [r for r in verdict.results if not r.passed]
        first = failed[0] if failed else None
        raise GuardDeniedError(first.guard if first else "risk", first.reason if first else "denied")
    if preview.errors:
        raise OrderRejectedError(f"exchange preview refused: {', '.join(preview.errors)}", preview.errors[0])
    return 0


async def edit_order_preview(
    settings: BotSettings, order_id: OrderId, size: Decimal | None, price: Decimal | None
) -> int:
    """Preview an edit of an open order; store it under a PREVIEW_ID for --apply-order-edit."""
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
    render.print_edit_preview(
        order, preview, preview_id if not preview.errors else None, apply_prefix=_cli_prefix(settings)
    )
    if preview.errors:
        raise OrderRejectedError(f"edit preview refused: {', '.join(preview.errors)}", preview.errors[0])
    return 0


def _cli_prefix(settings: BotSettings) -> str:
    """``perps-bot --profile P [--dry-run]``: a printed follow-up command reaches the same bot."""
    return f"perps-bot --profile {settings.profile.value}" + (" --dry-run" if settings.dry_run else "")


async def apply_order_edit(settings: BotSettings, order_id: OrderId, preview_id: str) -> int:
    """Apply a stored edit preview: the same size and price that were previewed, nothing else -- judged first
    like a new order (guards, trading state, kill switch) with the edited order in place of the resting one."""
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
            render.print_guard_results(verdict)
            failed = [r for r in verdict.results if not r.passed]
            first = failed[0] if failed else None
            raise GuardDeniedError(
                first.guard if first else "risk",
                f"edit of {order_id} refused: {first.reason if first else 'denied'} (trading {verdict.trading_state})",
            )
        order = await runtime.exchange.edit_order(order_id, size, price, preview_id=None)
        await runtime.state.delete_state(f"edit_previews:{preview_id}")
    render.print_order(order, title="Order edited")
    return 0


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


def actor(reason: str = "") -> str:
    """Who acts and why: ``cli:<user>@<host>:<pid>`` plus `` (<reason>)`` -- the ``source`` stored with every
    control, clear, reconcile and emergency request, and so in the events the bot writes for them."""
    import getpass
    import os
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    who = f"cli:{user}@{socket.gethostname()}:{os.getpid()}"
    return f"{who} ({' '.join(reason.split())})" if reason.strip() else who


#: How long an emergency command waits for the running bot's result: a few cycles and the lease TTL.
def _emergency_wait_seconds(settings: BotSettings) -> float:
    return max(10.0, 3 * settings.interval_seconds + settings.lease.ttl_seconds)


async def emergency(
    settings: BotSettings,
    action: str,
    *,
    symbol: str | None = None,
    order: OrderRequest | None = None,
    reason: str = "",
) -> int:
    """``--cancel-all`` / ``--flatten`` / ``--place-order``: through the running bot (control key) when one holds
    the lease, else by starting the bot for one cycle (``hold`` strategy, orders kept at its stop). Exit 0 when
    everything was done, 1 when the exchange failed part of it, 2 when the guards or the trading state refused."""
    from types import MappingProxyType

    from bot_v2.config import ShutdownOrderPolicy
    from bot_v2.domain import Symbol
    from bot_v2.orchestration.emergency import EmergencyAction, queue_emergency, read_emergency_result

    kind = EmergencyAction(action)
    if order is not None:  # --place-order: the --preview-order verdict first; nothing is queued if refused
        await preview_order(settings, order)
    async with open_state(control_writer_settings(settings)) as state:
        lease = await state.read_lease()
        running = lease is not None and lease.live
        request = await queue_emergency(
            state,
            kind,
            symbol=Symbol(symbol.upper()) if symbol else None,
            order=order,
            source=actor(),
            reason=reason,
        )
        if running:
            assert lease is not None
            render.print_line(
                f"Request {request.request_id} ({kind.value}) queued for the running bot ({lease.describe()})"
            )
            deadline = time.monotonic() + _emergency_wait_seconds(settings)
            result = await read_emergency_result(state, request.request_id)
            while result is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                result = await read_emergency_result(state, request.request_id)
            if result is None:
                raise TradingHaltedError(
                    f"--{kind.value.replace('_', '-')}: request {request.request_id} is queued but the running "
                    "bot did not carry it out in time; it will at its next cycle (check its log and events)"
                )
    if not running:
        once = dataclasses.replace(
            settings,
            strategy="hold",
            strategy_params=MappingProxyType({}),
            shutdown_order_policy=ShutdownOrderPolicy.KEEP,
            metrics_port=None,  # a one-cycle bot: nothing scrapes it, and it must not take the bot's port
        )
        for _ in range(3):  # a cycle that failed as retryable (exchange, lease renewal) is tried again
            summary = await run_with_lease(once, standby=False, once=True)
            async with open_state(reader_settings(settings)) as state:
                result = await read_emergency_result(state, request.request_id)
            if result is not None or summary.halted or summary.fenced:
                break
        if result is None:
            raise TradingHaltedError(
                f"--{kind.value.replace('_', '-')}: the bot started for it did not complete a cycle "
                f"({summary.errors[-1] if summary.errors else 'see the log'}); request {request.request_id} stays "
                "queued for the next start"
            )
    assert result is not None
    render.print_emergency_result(result)
    return _emergency_exit(result)


def _emergency_exit(result: dict[str, Any]) -> int:
    rows = result.get("orders") or []
    if result.get("failed") or any(r.get("action") in ("rejected", "unknown") for r in rows):
        return 1
    if any(r.get("action") == "denied" for r in rows):
        return 2
    return 0


async def set_controls(
    settings: BotSettings, *, kill_switch: bool | None, reduce_only: bool | None, reason: str = ""
) -> int:
    """Write the operator control key that running bots of this profile read every cycle."""
    from bot_v2.orchestration.controls import set_operator_control

    async with open_state(control_writer_settings(settings)) as state:
        control = await set_operator_control(
            state, kill_switch=kill_switch, reduce_only=reduce_only, source=actor(reason)
        )
    render.print_controls(control)
    return 0


async def clear_reason(settings: BotSettings, reason: ReasonCode, why: str = "") -> int:
    """Queue a request that running bots of this profile clear the latched ``reason`` at their next cycle."""
    from bot_v2.orchestration.controls import request_reason_clear
    from bot_v2.orchestration.keys import SAFETY_KEY

    async with open_state(control_writer_settings(settings)) as state:
        request, control = await request_reason_clear(state, reason, source=actor(why))
        safety = await state.get_state(SAFETY_KEY)
    render.print_clear_request(
        request.to_dict(),
        [r.to_dict() for r in control.clear_requests],
        safety if isinstance(safety, dict) else None,
    )
    return 0


async def reconcile(settings: BotSettings, reason: str = "") -> int:
    """Queue a request that running bots of this profile reconcile with the exchange at their next cycle."""
    from bot_v2.orchestration.controls import parse_reconcile_ack, request_reconcile
    from bot_v2.orchestration.keys import RECONCILE_ACK_KEY, WATERMARK_KEY
    from bot_v2.orchestration.reconcile import parse_watermark

    async with open_state(control_writer_settings(settings)) as state:
        request, _ = await request_reconcile(state, source=actor(reason))
        ack, watermark = await state.get_state(RECONCILE_ACK_KEY), await state.get_state(WATERMARK_KEY)
    try:
        last_run = None if ack is None else parse_reconcile_ack(ack)
        last_watermark = None if watermark is None else parse_watermark(watermark)
    except StateIntegrityError:  # only shown; the bot reports and repairs these itself
        last_run, last_watermark = None, None
    render.print_reconcile_request(request.to_dict(), last_run, last_watermark)
    return 0


# --- checkpoints ----------------------------------------------------------------------------------------------


async def take_checkpoint(settings: BotSettings, *, as_json: bool) -> int:
    """Take a checkpoint now. Safe while a bot runs: it is one consistent read of WARM and writes only a new
    checkpoint object (no record of the bot), so it needs no lease."""
    from bot_v2.monitoring.events import EventStore, EventType
    from bot_v2.orchestration.checkpointing import checkpoint_event_fields

    async with open_state(control_writer_settings(settings)) as state:
        started = time.perf_counter()
        with render.progress(f"Taking a checkpoint of bot {settings.bot_id!r}..."):
            info = await state.checkpoints.create_checkpoint("manual")
        elapsed = time.perf_counter() - started
    events = EventStore(settings.events_path)
    await events.emit(EventType.CHECKPOINT, by="cli", **checkpoint_event_fields(info, elapsed))
    events.close()
    if as_json:
        render.print_json(info)
    else:
        render.print_checkpoints([info], title="Checkpoint taken")
    return 0


async def list_checkpoints(settings: BotSettings, *, as_json: bool) -> int:
    """Print the stored checkpoints, newest first."""
    async with open_state(reader_settings(settings)) as state:
        infos = await state.checkpoints.list_checkpoints()
    if as_json:
        render.print_json(infos)
    else:
        render.print_checkpoints(infos, title=f"Checkpoints of bot {settings.bot_id!r} (newest first)")
    return 0


async def restore_checkpoint(
    settings: BotSettings, checkpoint_id: str, *, verify_only: bool, as_json: bool
) -> int:
    """Verify a checkpoint and, unless ``verify_only``, restore it. A restore takes the bot's lease for its
    duration (refused while a bot holds it; no bot can start meanwhile) and writes fenced with its epoch."""
    from bot_v2.orchestration import maintenance

    action = "Verifying" if verify_only else "Verifying and restoring"
    try:
        with render.progress(f"{action} checkpoint {checkpoint_id} of bot {settings.bot_id!r}..."):
            report, marker_restored = await maintenance.restore_checkpoint(
                settings, checkpoint_id, verify_only=verify_only
            )
    except LeaseHeldError as exc:
        raise LeaseHeldError(f"{exc} (or use --verify-only, which writes nothing)") from None
    if as_json:
        render.print_json(asdict(report) | {"running_marker_restored": marker_restored})
    else:
        render.print_restore_report(report, marker_restored=marker_restored)
    return 0
