"""Terminal output for the operator commands (``bot_v2.cli.handlers``) and scripts: rich tables, and JSON that
keeps Decimal exact."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.table import Table

from bot_v2.domain import EditPreview, Order, OrderPreview, OrderRequest
from bot_v2.domain.jsonable import to_jsonable

# Piped output (logs, tests, `| grep`) must not wrap ids mid-token: use a wide virtual terminal there.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
# Progress goes to stderr (and only to a terminal), so piped stdout -- JSON in particular -- stays clean.
_progress_console = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    print(json.dumps(to_jsonable(data), indent=2, sort_keys=True))


def fmt(value: Any) -> str:
    """Human formatting: trims Decimal noise, ISO times without microseconds, '-' for missing."""
    if value is None or value == "":
        return "-"
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, datetime):
        return value.replace(microsecond=0).isoformat()
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "none") -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, justify="right" if column.lower() in _NUMERIC else "left")
    count = 0
    for row in rows:
        out.add_row(*(fmt(v) for v in row))
        count += 1
    if count == 0:
        out.add_row(*([f"[dim]{empty}[/dim]"] + [""] * (len(columns) - 1)))
    return out


_NUMERIC = {
    "available",
    "hold",
    "total",
    "quantity",
    "entry",
    "mark",
    "unrealized pnl",
    "realized pnl",
    "size",
    "filled",
    "price",
    "avg price",
    "fees",
    "value",
    "rate",
    "leverage",
    "stop",
}


def print_account_snapshot(data: Mapping[str, Any]) -> None:
    console.print(
        f"[bold]Account snapshot[/bold]  profile={data['profile']}  bot={data['bot_id']}  "
        f"server time={fmt(data['server_time'])}  clock skew={data['clock_skew_seconds']}s"
    )
    state = data.get("trading_state")
    if state is None:
        console.print("Trading state: [dim]no run recorded yet[/dim]")
    else:
        reasons = [_reason_text(r) for r in state.get("reasons") or []]
        console.print(
            f"Trading state: [bold]{fmt(state.get('trading_state'))}[/bold]  "
            f"kill switch: {fmt(state.get('kill_switch'))}  reduce-only: {fmt(state.get('reduce_only'))}  "
            f"reasons: {'; '.join(reasons) or '-'}  (as of {fmt(state.get('updated_at'))})"
        )
    pnl = data.get("pnl")
    if pnl:
        console.print(
            f"PnL (USD): realized [bold]{fmt(pnl.get('realized'))}[/bold]  unrealized {fmt(pnl.get('unrealized'))}"
            f"  today {fmt(pnl.get('today'))}  fees {fmt(pnl.get('fees'))}  equity {fmt(pnl.get('equity_usd'))}"
            f"  (as of {fmt(pnl.get('updated_at'))})"
        )
    else:
        console.print("PnL: [dim]no cycle recorded yet[/dim]")
    holdings = data.get("spot_holdings") or []
    if holdings:
        console.print(
            table(
                "Spot holdings",
                ["Currency", "Quantity", "Mark (USD)", "Value (USD)"],
                ([h["currency"], h["quantity"], h["mark_usd"], h["value_usd"]] for h in holdings),
            )
        )
    console.print(
        table(
            "Balances",
            ["Currency", "Available", "Hold", "Total"],
            (
                [b["currency"], b["available"], b["hold"], b["total"]]
                for b in data["balances"]
                if b["total"] != 0
            ),
        )
    )
    console.print(
        table(
            "Positions",
            ["Symbol", "Quantity", "Entry", "Mark", "Unrealized PnL", "Leverage"],
            (
                [
                    p["symbol"],
                    p["quantity"],
                    p["entry_price"],
                    p["mark_price"],
                    p["unrealized_pnl"],
                    p["leverage"],
                ]
                for p in data["positions"]
            ),
        )
    )
    console.print(
        table(
            "Open orders",
            ["Order id", "Client id", "Symbol", "Side", "Type", "Size", "Filled", "Price", "Stop", "Status"],
            (
                [
                    o["order_id"],
                    o["client_order_id"],
                    o["symbol"],
                    o["side"],
                    o["order_type"],
                    o["quantity"],
                    o["filled_quantity"],
                    o["limit_price"],
                    o["stop_price"],
                    o["status"],
                ]
                for o in data["open_orders"]
            ),
        )
    )
    perms, fees = data["permissions"], data["fee_tier"]
    console.print(
        table(
            "Key permissions and fees",
            ["Item", "Value"],
            [
                ["can view", perms["can_view"]],
                ["can trade", perms["can_trade"]],
                ["can transfer", perms["can_transfer"]],
                ["portfolio", perms.get("portfolio_uuid")],
                ["fee tier", fees["pricing_tier"]],
                ["maker fee rate", fees["maker_fee_rate"]],
                ["taker fee rate", fees["taker_fee_rate"]],
                ["30d volume (USD)", fees["total_volume"]],
            ],
        )
    )
    limits = data.get("limits") or {}
    console.print(table("Risk limits", ["Limit", "Value"], sorted(limits.items())))


def _reason_text(reason: Any) -> str:
    if isinstance(reason, Mapping):
        return f"{reason.get('code', '?')} ({reason.get('detail', '')})"
    return str(reason)


def print_guard_results(verdict: Any) -> None:
    """The bot's risk verdict, guard by guard."""
    out = Table(title="Bot risk verdict", title_justify="left", header_style="bold")
    for column in ("Guard", "Result", "Why"):
        out.add_column(column)
    for r in verdict.results:
        out.add_row(r.guard, "[green]pass[/green]" if r.passed else "[red]FAIL[/red]", r.reason or "")
    console.print(out)


def print_order_preview(request: OrderRequest, preview: OrderPreview, verdict: Any) -> None:
    console.print(
        f"[bold]Order preview[/bold]  {request.side} {fmt(request.quantity)} {request.symbol} "
        f"{request.order_type} {request.time_in_force}"
        + (f" @ {fmt(request.limit_price)}" if request.limit_price is not None else "")
    )
    console.print(
        table(
            "Exchange preview",
            ["Field", "Value"],
            [
                ["preview id", preview.preview_id],
                ["order total", preview.order_total],
                ["commission", preview.commission_total],
                ["base size", preview.base_size],
                ["quote size", preview.quote_size],
                ["best bid", preview.best_bid],
                ["best ask", preview.best_ask],
                ["slippage", preview.slippage],
                ["leverage", preview.leverage],
                ["errors", ", ".join(preview.errors) or "none"],
                ["warnings", ", ".join(preview.warnings) or "none"],
            ],
        )
    )
    print_guard_results(verdict)
    approved = verdict.approved and not preview.errors
    console.print("[bold green]APPROVED[/bold green]" if approved else "[bold red]REFUSED[/bold red]")


def print_edit_preview(
    order: Order, preview: EditPreview, preview_id: str | None, apply_prefix: str = "perps-bot"
) -> None:
    console.print(
        table(
            f"Edit preview for {order.order_id}",
            ["Field", "Current", "New"],
            [
                ["size", order.quantity, preview.new_size],
                ["price", order.limit_price, preview.new_price],
            ],
        )
    )
    console.print(
        table(
            "Exchange edit preview",
            ["Field", "Value"],
            [
                ["order total", preview.order_total],
                ["commission", preview.commission_total],
                ["slippage", preview.slippage],
                ["best bid", preview.best_bid],
                ["best ask", preview.best_ask],
                ["errors", ", ".join(preview.errors) or "none"],
            ],
        )
    )
    if preview_id:
        console.print(
            f"Apply with: [bold]{apply_prefix} --apply-order-edit {order.order_id}:{preview_id}[/bold]",
            soft_wrap=True,
        )


def print_order(order: Order, title: str = "Order") -> None:
    console.print(
        table(
            title,
            ["Field", "Value"],
            [
                ["order id", order.order_id],
                ["client id", order.client_order_id],
                ["symbol", order.symbol],
                ["side", order.side],
                ["type", order.order_type],
                ["status", order.status],
                ["size", order.quantity],
                ["filled", order.filled_quantity],
                ["price", order.limit_price],
                ["stop", order.stop_price],
            ],
        )
    )


def _pending_text(requests: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"#{r['request_id']} {r['reason']}" for r in requests) or "none"


def print_line(text: str) -> None:
    console.print(text, soft_wrap=True)


def print_emergency_result(result: Mapping[str, Any]) -> None:
    """What the bot did for an emergency request (``--cancel-all`` / ``--flatten`` / ``--place-order``)."""
    console.print(
        f"[bold]{result.get('action')}[/bold] (request {result.get('request_id')}, by {result.get('source')}, "
        f"reason {result.get('reason') or '-'!r}): {result.get('outcome')}",
        soft_wrap=True,
    )
    if result.get("cancelled") or result.get("failed"):
        console.print(
            table(
                "Cancelled orders",
                ["Order id", "Result"],
                [
                    *([order_id, "cancelled"] for order_id in result.get("cancelled") or []),
                    *([f["order_id"], f"failed: {f['error']}"] for f in result.get("failed") or []),
                ],
            )
        )
    rows = result.get("orders") or []
    if rows:
        console.print(
            table(
                "Orders",
                ["Symbol", "Side", "Quantity", "Action", "Client id", "Verdict", "Error"],
                (
                    [
                        r["symbol"],
                        r["side"],
                        r["quantity"],
                        r["action"],
                        r["client_order_id"],
                        r["verdict"],
                        r["error"],
                    ]
                    for r in rows
                ),
            )
        )


def print_controls(control: Mapping[str, Any]) -> None:
    rows: list[Sequence[Any]] = [(k, v) for k, v in sorted(control.items()) if k != "clear_requests"]
    rows.append(("clear_requests", _pending_text(control.get("clear_requests") or [])))
    console.print(table("Operator controls (read by running bots every cycle)", ["Control", "Value"], rows))


def print_step_down(bot_id: str, holder: str, source: str) -> None:
    """Show the step-down request handed to the lease holder."""
    rows: list[Sequence[Any]] = [("bot id", bot_id), ("lease holder", holder), ("requested by", source)]
    console.print(table("Step-down requested", ["Field", "Value"], rows))
    console.print(
        "The holder sees it at its next lease renewal (within a third of the lease TTL), finishes the cycle in "
        "flight, keeps its open orders, flushes its state and releases the lease; a --standby of this bot "
        "takes over at once (lease events in events.jsonl)."
    )


def print_clear_request(
    request: Mapping[str, Any], pending: Sequence[Mapping[str, Any]], safety: Mapping[str, Any] | None
) -> None:
    """Show a queued ``--clear-reason`` request and what the bot last reported."""
    active = [r.get("code") for r in (safety or {}).get("reasons", []) if isinstance(r, Mapping)]
    rows: list[Sequence[Any]] = [
        ("request id", request["request_id"]),
        ("reason", request["reason"]),
        ("requested at", request["requested_at"]),
        ("pending requests", _pending_text(pending)),
        ("trading state (last cycle)", (safety or {}).get("trading_state")),
        ("reason active (last cycle)", request["reason"] in active if safety else None),
    ]
    console.print(table("Clear request queued", ["Field", "Value"], rows))
    console.print(
        "A running bot applies it at its next cycle (control_applied event, state_transition if it cleared); "
        "with no bot running, the next start applies it before its first order."
    )


def print_reconcile_request(
    request: Mapping[str, Any], last_run: int | None, watermark: datetime | None
) -> None:
    """Show a queued ``--reconcile`` request and where the bot's order discovery stands."""
    rows: list[Sequence[Any]] = [
        ("request id", request["request_id"]),
        ("requested at", request["requested_at"]),
        ("last request the bot ran", last_run),
        ("discovery watermark", watermark),
    ]
    console.print(table("Reconcile request queued", ["Field", "Value"], rows))
    console.print(
        "A running bot runs it at its next cycle: it lists its own orders (client-id prefix) since the "
        "watermark, adopts any state lacks, books their fills once and re-checks positions (reconciliation "
        "event, trigger operator; control:reconcile_applied). A bot that is not running reconciles at start."
    )


def print_run_summary(summary: Any) -> None:
    rows = getattr(summary, "rows", [])
    columns = ["Symbol", "Mark", "Decision", "Why", "Verdict", "Action", "Order id", "Position"]
    console.print(
        table(
            f"Run summary: {getattr(summary, 'cycles', '?')} cycle(s), trading state "
            f"{fmt(getattr(summary, 'trading_state', None))}",
            columns,
            (
                [
                    getattr(r, "symbol", None),
                    getattr(r, "mark", None),
                    getattr(r, "decision", None),
                    getattr(r, "reason", None),
                    getattr(r, "verdict", None),
                    getattr(r, "action", None),
                    getattr(r, "order_id", None),
                    getattr(r, "position", None),
                ]
                for r in rows
            ),
        )
    )
    errors = getattr(summary, "errors", None)
    if errors:
        console.print(f"[red]errors:[/red] {errors}")


def progress(message: str) -> Status:
    """A spinner with ``message`` on stderr for a long operation (``with render.progress(...):``)."""
    return _progress_console.status(message)


def _size(raw: int, compressed: int) -> str:
    return f"{raw:,} / {compressed:,}"


def print_checkpoints(infos: Sequence[Any], title: str) -> None:
    """A table of ``CheckpointInfo``: id, created, reason, keys, raw / compressed bytes, SHA-256 prefix."""
    console.print(
        table(
            title,
            ["Id", "Created (UTC)", "Reason", "Keys", "Raw / compressed bytes", "SHA-256"],
            (
                [
                    i.checkpoint_id,
                    i.created_at,
                    i.reason,
                    i.key_count,
                    _size(i.raw_bytes, i.compressed_bytes),
                    i.sha256[:12],
                ]
                for i in infos
            ),
            empty="no checkpoints yet (the loop takes one every CHECKPOINT_INTERVAL_SECONDS; --checkpoint now)",
        )
    )


def print_restore_report(report: Any, *, marker_restored: bool) -> None:
    """What a ``--restore-checkpoint`` verified or changed, and what happens at the next start."""
    rows: list[Sequence[Any]] = [
        ("checkpoint", report.checkpoint_id),
        ("created (UTC)", report.created_at),
        ("read from", report.source.upper()),
        ("keys in checkpoint", report.keys_in_checkpoint),
    ]
    if report.verify_only:
        rows.append(("verified", "blob SHA-256 and every record's checksum"))
        rows.append(("duration", f"{report.duration_seconds:.3f}s"))
        console.print(table("Checkpoint verified (nothing written)", ["Field", "Value"], rows))
        return
    rows += [
        ("keys restored", report.keys_restored),
        ("keys deleted (not in checkpoint)", report.keys_deleted),
        ("keys expired (TTL ran out, not restored)", report.keys_expired),
        ("duration", f"{report.duration_seconds:.3f}s"),
    ]
    console.print(table("Checkpoint restored", ["Field", "Value"], rows))
    console.print(
        "The next start reconciles with the exchange before its first order: open orders by client id, "
        "fills since the checkpoint, positions compared (a mismatch means REDUCE_ONLY until cleared)."
    )
    if marker_restored:
        console.print(
            "The checkpoint was taken while a bot ran: the next start treats it as an unclean stop "
            "(crash recovery; open orders cancelled with PERPS_SHUTDOWN_ORDER_POLICY=cancel)."
        )
