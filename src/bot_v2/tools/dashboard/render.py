"""Dashboard rendering: ``DashboardData`` in, rich renderables out (``build_frame``, ``build_layout``).

No I/O and no decisions: what to show (alerts, staleness, views) comes from ``view``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot_v2.cli.render import fmt
from bot_v2.risk import (
    AlertLevel,
)
from bot_v2.state.models import LeaseRecord
from bot_v2.tools.dashboard.view import (
    DashboardData,
    ExchangeView,
    _decimal,
    _mark_mid,
    _time,
    frame_alerts,
    health_age_seconds,
    health_is_stale,
    market_feed,
    open_orders,
    position_views,
)
from bot_v2.tools.eventlog import (
    DASHBOARD_EVENT_TYPES,
    event_summary,
)

_STATE_STYLE = {"ACTIVE": "bold green", "REDUCE_ONLY": "bold yellow", "HALTED": "bold red"}
_EVENT_STYLE = {
    "fill": "green",
    "order_placed": "cyan",
    "order_denied": "yellow",
    "order_failed": "red",
    "order_cancelled": "magenta",
    "state_transition": "bold yellow",
    "guard_trip": "yellow",
    "cycle_error": "bold red",
    "control_applied": "blue",
    "control_rejected": "red",
    "recovery": "bold magenta",
}


# --- frame --------------------------------------------------------------------------------------------------


def _styled(text: str, style: str | None) -> str:
    return f"[{style}]{text}[/{style}]" if style else text


def _reasons_text(safety: Mapping[str, Any] | None) -> str:
    if not safety:
        return "-"
    reasons = safety.get("reasons") or []
    parts = []
    for reason in reasons:
        if isinstance(reason, Mapping):
            parts.append(f"{reason.get('code')} ({reason.get('detail') or reason.get('level')})")
        else:
            parts.append(str(reason))
    return "; ".join(parts) or "none"


def _lease_text(lease: LeaseRecord | None) -> str:
    if lease is None:
        return "[dim]never held[/dim]"
    return _styled(lease.describe(), "green" if lease.live else "yellow")


def header(data: DashboardData) -> Panel:
    safety = data.safety or {}
    state = str(safety.get("trading_state") or (data.health or {}).get("trading_state") or "UNKNOWN")
    age = health_age_seconds(data.health, data.now)
    stale = health_is_stale(age, data.interval_seconds)
    pid = (data.health or {}).get("pid")
    pid_text = "-" if pid is None else f"{pid} ({'running' if data.pid_running else 'not running'})"
    if data.pid_running is None and pid is not None:
        pid_text = str(pid)
    if data.health is None:
        health_text = _styled(f"missing ({data.health_error or 'no health.json'})", "bold red")
    else:
        age_text = f"{age:.0f}s old" if age is not None else "unreadable timestamp"
        ok = data.health.get("ok")
        health_text = _styled(
            f"{'ok' if ok else 'NOT ok'}, {age_text}", "bold red" if stale else ("green" if ok else "yellow")
        )
        health_text += (
            f"  cycle {fmt(data.health.get('last_cycle'))}"
            f" ({fmt(data.health.get('last_cycle_ms'))} ms)  {fmt(data.health.get('message'))}"
        )
    lines = [
        f"[bold]perps-bot[/bold]  profile [bold]{data.profile}[/bold]  bot [bold]{data.bot_id}[/bold]  "
        f"symbols {', '.join(data.symbols)}  pid {pid_text}  "
        f"[dim]{data.now.replace(microsecond=0).isoformat()}  window {data.window_minutes:g} min  "
        f"refresh {data.refresh_seconds:g}s[/dim]",
        f"Trading state {_styled(state, _STATE_STYLE.get(state, 'bold'))}  reasons: {_reasons_text(safety)}  "
        f"kill switch: {_on_off(safety.get('kill_switch'))}  reduce-only: {_on_off(safety.get('reduce_only'))}",
        f"health.json: {health_text}",
        f"lease: {_lease_text(data.lease)}",
    ]
    control = data.control or {}
    pending = control.get("clear_requests") or []
    if control:
        lines.append(
            f"[dim]operator control: kill switch {_on_off(control.get('kill_switch'))}, reduce-only "
            f"{_on_off(control.get('reduce_only'))}, {len(pending)} clear request(s) pending, "
            f"updated {fmt(control.get('updated_at'))} by {fmt(control.get('source'))}[/dim]"
        )
    border = "red" if stale or state == "HALTED" else ("yellow" if state == "REDUCE_ONLY" else "green")
    return Panel(Text.from_markup("\n".join(lines)), border_style=border, title="perps-bot dashboard")


def _on_off(value: object) -> str:
    if value is None:
        return "-"
    return _styled("ON", "bold red") if value else "off"


def _money(value: Decimal | None) -> str:
    if value is None:
        return "-"
    text = f"{value:,.2f}"
    return _styled(text, "green" if value > 0 else "red") if value else text


def positions_table(data: DashboardData) -> Table:
    table = Table(title="Positions & PnL", title_justify="left", header_style="bold", expand=True)
    for column, justify in (
        ("Symbol", "left"),
        ("Quantity", "right"),
        ("Entry", "right"),
        ("Mark", "right"),
        ("Unrealized", "right"),
        ("Realized", "right"),
        ("Fees", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    views = position_views(data.positions, data.marks)
    for v in views:
        table.add_row(
            v.symbol, fmt(v.quantity), fmt(v.entry_price), fmt(v.mark), _money(v.unrealized_pnl),
            _money(v.realized_pnl), fmt(v.fees),
        )  # fmt: skip
    shown = {v.symbol for v in views}
    for symbol in data.symbols:
        if symbol not in shown:
            table.add_row(
                symbol, "0", "-", fmt(_mark_mid(data.marks.get(symbol))), "-", "-", "-", style="dim"
            )
    pnl = data.pnl or {}
    if pnl:
        table.add_section()
        table.add_row(
            "[bold]total[/bold]", "", "", f"equity {fmt(_decimal(pnl.get('equity_usd')))}",
            _money(_decimal(pnl.get("unrealized_pnl"))), _money(_decimal(pnl.get("realized_pnl"))),
            fmt(_decimal(pnl.get("fees"))),
        )  # fmt: skip
    return table


def orders_table(data: DashboardData, limit: int = 10) -> Table:
    rows = open_orders(data.orders)
    table = Table(title=f"Open orders ({len(rows)})", title_justify="left", header_style="bold", expand=True)
    for column in ("Client id", "Symbol", "Side", "Status", "Size", "Filled", "Avg price", "Updated"):
        table.add_column(column, justify="right" if column in {"Size", "Filled", "Avg price"} else "left")
    for order in rows[:limit]:
        table.add_row(
            fmt(order.get("client_order_id")), fmt(order.get("symbol")), fmt(order.get("side")),
            fmt(order.get("status")), fmt(_decimal(order.get("quantity"))),
            fmt(_decimal(order.get("filled_quantity"))), fmt(_decimal(order.get("average_fill_price"))),
            _clock(order.get("updated_at")),
        )  # fmt: skip
    if not rows:
        table.add_row("[dim]none[/dim]", *[""] * 7)
    elif len(rows) > limit:
        table.add_row(f"[dim]… {len(rows) - limit} more[/dim]", *[""] * 7)
    return table


def _clock(value: object) -> str:
    at = _time(value)
    return at.strftime("%H:%M:%S") if at is not None else fmt(value)


def events_table(data: DashboardData, limit: int = 12) -> Table:
    shown = [e for e in data.events.events if e.get("type") in DASHBOARD_EVENT_TYPES][-limit:]
    counts: dict[str, int] = {}
    for event in data.events.events:
        kind = str(event.get("type"))
        counts[kind] = counts.get(kind, 0) + 1
    tally = ", ".join(
        f"{k} {counts[k]}"
        for k in ("fill", "order_denied", "state_transition", "cycle_error", "order_placed")
        if counts.get(k)
    )
    title = f"Events, last {data.window_minutes:g} min" + (f" ({tally})" if tally else "")
    table = Table(title=title, title_justify="left", header_style="bold", expand=True)
    table.add_column("Time", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    table.add_column("What", overflow="fold")
    for event in reversed(shown):
        kind = str(event.get("type"))
        table.add_row(
            _clock(event.get("ts")), _styled(kind, _EVENT_STYLE.get(kind)), Text(event_summary(event))
        )
    if data.events.missing:
        table.add_row("[dim]-[/dim]", "", "[dim]no events.jsonl yet[/dim]")
    elif not shown:
        table.add_row("[dim]-[/dim]", "", "[dim]no events in the window[/dim]")
    if data.events.truncated:
        table.add_row("", "", "[dim]older events in the window not read (size budget)[/dim]")
    return table


def alerts_table(data: DashboardData) -> Table:
    alerts, notes = frame_alerts(data)
    table = Table(title="Alerts (runbook thresholds)", title_justify="left", header_style="bold", expand=True)
    table.add_column("Level", no_wrap=True)
    table.add_column("Alert", no_wrap=True)
    table.add_column("Detail", overflow="fold")
    for alert in alerts:
        style = "bold red" if alert.level is AlertLevel.CRITICAL else "yellow"
        table.add_row(_styled(alert.level.value, style), alert.name, alert.message)
    if not alerts:
        table.add_row("[green]OK[/green]", "-", "no alert raised")
    for note in notes:
        table.add_row("[dim]note[/dim]", "", f"[dim]{note}[/dim]")
    return table


def state_table(data: DashboardData) -> Table:
    table = Table(title="State tiers", title_justify="left", header_style="bold", expand=True)
    table.add_column("Item")
    table.add_column("Value", overflow="fold")
    if data.state_error is not None:
        table.add_row("[bold red]state[/bold red]", _styled(data.state_error, "red"))
        return table
    stats, health = data.storage, data.state_health
    if stats is not None:
        table.add_row(
            "backends", f"hot {stats.hot_backend} / warm {stats.warm_backend} / cold {stats.cold_backend}"
        )
        table.add_row("hot keys (this reader)", fmt(stats.hot_keys))
        by_tier = ", ".join(f"{k} {v}" for k, v in sorted(stats.warm_records_by_tier.items()))
        table.add_row(
            "warm records", f"{stats.warm_records} ({by_tier or 'none'}), {stats.warm_value_bytes:,} B"
        )
        table.add_row("cold", f"{stats.cold_objects} object(s), {stats.cold_bytes:,} B")
        table.add_row("schema version", str(stats.schema_version))
    if health is not None:
        style = "green" if not health.degraded_hot else "bold red"
        hot = _styled(health.hot_state.value, style)
        if health.last_hot_error:
            hot += f" ({health.last_hot_error})"
        table.add_row("hot cache", hot)
        table.add_row("dirty keys / recoveries", f"{health.dirty_keys} / {health.hot_recoveries}")
    return table


def exchange_table(view: ExchangeView) -> Table:
    table = Table(title="Exchange (live)", title_justify="left", header_style="bold", expand=True)
    table.add_column("Item")
    table.add_column("Value", overflow="fold")
    if view.error:
        table.add_row("[bold red]error[/bold red]", view.error)
    for symbol, quote in sorted(view.quotes.items()):
        table.add_row(symbol, f"bid {fmt(quote.get('bid'))}  ask {fmt(quote.get('ask'))}")
    for balance in view.balances:
        table.add_row(
            str(balance.get("currency")), f"{fmt(balance.get('total'))} (hold {fmt(balance.get('hold'))})"
        )
    if view.note:
        table.add_row("[dim]note[/dim]", f"[dim]{view.note}[/dim]")
    return table


def feed_table(data: DashboardData) -> Table:
    """The WebSocket feed: connected or REST fallback, since when, reconnects, gaps, quote age per symbol."""
    table = Table(title="Market data feed", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    feed = market_feed(data.health)
    if feed is None:
        table.add_row("feed", "none (REST quotes every cycle)")
        return table
    connected = feed.get("connected") is True
    status = _styled("connected", "green") if connected else _styled("DOWN: REST fallback", "bold red")
    if not connected:
        status += f" for {fmt(feed.get('down_seconds'))} s"
    table.add_row("WebSocket", status)
    table.add_row("last cycle's quotes", fmt(feed.get("source")))
    table.add_row(
        "reconnects / sequence gaps", f"{fmt(feed.get('reconnects'))} / {fmt(feed.get('sequence_gaps'))}"
    )
    table.add_row("messages", fmt(feed.get("messages")))
    if feed.get("last_disconnect"):
        table.add_row("last disconnect", str(feed.get("last_disconnect")))
    ages = feed.get("quote_age_seconds")
    for symbol, age in sorted(ages.items()) if isinstance(ages, Mapping) else []:
        table.add_row(f"quote age {symbol}", f"{fmt(age)} s")
    return table


def build_frame(data: DashboardData) -> Group:
    """The whole frame as a vertical group (``--once`` and piped output)."""
    parts: list[RenderableType] = [
        header(data),
        positions_table(data),
        orders_table(data),
        events_table(data),
        alerts_table(data),
        state_table(data),
        feed_table(data),
    ]
    if data.exchange is not None:
        parts.append(exchange_table(data.exchange))
    return Group(*parts)


def build_layout(data: DashboardData) -> Layout:
    """The frame laid out for a live terminal: header on top, trading on the left, health on the right."""
    layout = Layout()
    layout.split_column(Layout(header(data), name="header", size=7), Layout(name="body"))
    left: list[RenderableType] = [positions_table(data), orders_table(data)]
    if data.exchange is not None:
        left.append(exchange_table(data.exchange))
    layout["body"].split_row(
        Layout(Group(*left), name="left"),
        Layout(
            Group(events_table(data), alerts_table(data), state_table(data), feed_table(data)), name="right"
        ),
    )
    return layout
