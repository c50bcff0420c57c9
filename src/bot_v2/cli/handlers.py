"""The operator command handlers: call the orchestration work (which returns data), render it, pick the exit code.

One handler per command flag. Each returns 0 or raises one of the project's typed errors, whose exit code the
entry point (``bot_v2.cli.app``) prints as one line: 1 runtime failure (exchange or state unreachable, halted),
2 bad input or an order refused by the guards or the exchange.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from bot_v2.cli import render
from bot_v2.config import BotSettings
from bot_v2.domain import OrderId, OrderRequest
from bot_v2.errors import (
    FencedError,
    GuardDeniedError,
    InputError,
    LeaseHeldError,
    OrderRejectedError,
    TradingHaltedError,
)
from bot_v2.orchestration import commands
from bot_v2.orchestration.bot import OrderEvaluation
from bot_v2.risk import ReasonCode


def actor(reason: str = "") -> str:
    """Who acts and why: ``cli:<user>@<host>:<pid>`` plus `` (<reason>)`` -- the ``source`` stored with every
    control, clear, reconcile, step-down and emergency request, and so in the events the bot writes for them."""
    import getpass
    import os
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    who = f"cli:{user}@{socket.gethostname()}:{os.getpid()}"
    return f"{who} ({' '.join(reason.split())})" if reason.strip() else who


async def run(settings: BotSettings, *, once: bool, standby: bool = False) -> int:
    """Trade: one cycle with ``once`` (--dev-fast), otherwise until SIGINT/SIGTERM."""
    summary = await commands.run_with_lease(settings, standby=standby, once=once)
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


async def step_down(settings: BotSettings, reason: str = "") -> int:
    """--step-down: ask the lease holder to hand over to its standby now (who and why go to its events)."""
    source = actor(reason)
    holder = await commands.request_step_down(settings, source=source)
    if holder is None:
        raise InputError(f"--step-down: no bot holds the lease of {settings.bot_id!r} (nothing is running)")
    render.print_step_down(settings.bot_id, holder, source)
    return 0


async def account_snapshot(settings: BotSettings, *, as_json: bool) -> int:
    """--account-snapshot: balances, positions, open orders, permissions, fee tier, limits, PnL, trading state."""
    data = await commands.account_snapshot(settings)
    if as_json:
        render.print_json(data)
    else:
        render.print_account_snapshot(data)
    return 0


def _first_failure(verdict: OrderEvaluation) -> tuple[str, str]:
    failed = [r for r in verdict.results if not r.passed]
    first = failed[0] if failed else None
    return (first.guard, first.reason) if first else ("risk", "denied")


async def preview_order(settings: BotSettings, request: OrderRequest) -> int:
    """--preview-order: the exchange's preview and the bot's own guard verdict; exit 2 if either refuses."""
    preview, verdict = await commands.preview_with_verdict(settings, request)
    render.print_order_preview(request, preview, verdict)
    if not verdict.approved:
        raise GuardDeniedError(*_first_failure(verdict))
    if preview.errors:
        raise OrderRejectedError(f"exchange preview refused: {', '.join(preview.errors)}", preview.errors[0])
    return 0


def cli_prefix(settings: BotSettings) -> str:
    """``perps-bot --profile P [--dry-run]``: a printed follow-up command reaches the same bot."""
    return f"perps-bot --profile {settings.profile.value}" + (" --dry-run" if settings.dry_run else "")


async def edit_order_preview(
    settings: BotSettings, order_id: OrderId, size: Decimal | None, price: Decimal | None
) -> int:
    """--edit-order-preview: preview an edit; print the PREVIEW_ID and the command that applies it."""
    edit = await commands.preview_edit(settings, order_id, size, price)
    render.print_edit_preview(edit.order, edit.preview, edit.preview_id, apply_prefix=cli_prefix(settings))
    if edit.preview.errors:
        errors = edit.preview.errors
        raise OrderRejectedError(f"edit preview refused: {', '.join(errors)}", errors[0])
    return 0


async def apply_order_edit(settings: BotSettings, order_id: OrderId, preview_id: str) -> int:
    """--apply-order-edit: apply a stored preview, judged like a new order; a refusal prints the verdict."""
    applied = await commands.apply_edit(settings, order_id, preview_id)
    if applied.order is None:
        render.print_guard_results(applied.verdict)
        guard, why = _first_failure(applied.verdict)
        raise GuardDeniedError(
            guard, f"edit of {order_id} refused: {why} (trading {applied.verdict.trading_state})"
        )
    render.print_order(applied.order, title="Order edited")
    return 0


async def emergency(
    settings: BotSettings,
    action: str,
    *,
    symbol: str | None = None,
    order: OrderRequest | None = None,
    reason: str = "",
) -> int:
    """``--cancel-all`` / ``--flatten`` / ``--place-order``: through the running bot (control key) when one holds
    the lease, else by starting the bot for one cycle. Exit 0 when everything was done, 1 when the exchange
    failed part of it, 2 when the guards or the trading state refused."""
    if order is not None:  # --place-order: the --preview-order verdict first; nothing is queued if refused
        await preview_order(settings, order)
    queued = await commands.queue_emergency_request(
        settings, action, symbol=symbol, order=order, source=actor(), reason=reason
    )
    if queued.holder is not None:
        request = queued.request
        render.print_line(
            f"Request {request.request_id} ({request.action.value}) queued for the running bot ({queued.holder})"
        )
        result = await commands.await_emergency_result(settings, queued)
    else:
        result = await commands.run_emergency_once(settings, queued)
    render.print_emergency_result(result)
    return emergency_exit_code(result)


def emergency_exit_code(result: dict[str, Any]) -> int:
    """1 when an order or cancel failed at the exchange, 2 when one was refused by the guards, else 0."""
    rows = result.get("orders") or []
    if result.get("failed") or any(r.get("action") in ("rejected", "unknown") for r in rows):
        return 1
    if any(r.get("action") == "denied" for r in rows):
        return 2
    return 0


async def set_controls(
    settings: BotSettings, *, kill_switch: bool | None, reduce_only: bool | None, reason: str = ""
) -> int:
    """--kill-switch / --reduce-only-mode: write the control key running bots read every cycle."""
    control = await commands.write_controls(
        settings, kill_switch=kill_switch, reduce_only=reduce_only, source=actor(reason)
    )
    render.print_controls(control)
    return 0


async def clear_reason(settings: BotSettings, reason: ReasonCode, why: str = "") -> int:
    """--clear-reason: queue the clearing of a latched reason for the running (or next) bot."""
    queued = await commands.queue_reason_clear(settings, reason, source=actor(why))
    render.print_clear_request(queued.request, queued.pending, queued.safety)
    return 0


async def reconcile(settings: BotSettings, reason: str = "") -> int:
    """--reconcile: queue a reconciliation with the exchange for the running (or next) bot."""
    queued = await commands.queue_reconcile(settings, source=actor(reason))
    render.print_reconcile_request(queued.request, queued.last_run, queued.watermark)
    return 0


async def take_checkpoint(settings: BotSettings, *, as_json: bool) -> int:
    """--checkpoint: take a state checkpoint now (safe while the bot runs)."""
    with render.progress(f"Taking a checkpoint of bot {settings.bot_id!r}..."):
        info = await commands.checkpoint_now(settings)
    if as_json:
        render.print_json(info)
    else:
        render.print_checkpoints([info], title="Checkpoint taken")
    return 0


async def list_checkpoints(settings: BotSettings, *, as_json: bool) -> int:
    """--list-checkpoints: the stored checkpoints, newest first."""
    infos = await commands.stored_checkpoints(settings)
    if as_json:
        render.print_json(infos)
    else:
        render.print_checkpoints(infos, title=f"Checkpoints of bot {settings.bot_id!r} (newest first)")
    return 0


async def restore_checkpoint(
    settings: BotSettings, checkpoint_id: str, *, verify_only: bool, as_json: bool
) -> int:
    """--restore-checkpoint: verify a checkpoint and, unless ``verify_only``, restore it. A restore takes the
    bot's lease for its duration (refused while a bot holds it) and writes fenced with its epoch."""
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
