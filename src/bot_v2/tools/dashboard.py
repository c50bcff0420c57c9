"""The terminal dashboard: gather a read-only view of one bot (state, health.json, events) and render it.

``DashboardSource`` opens what the view needs and keeps it open between refreshes: the state layer (with no
start-up repair, so it never writes to a shared HOT cache; the memory HOT tier of a separate process is empty,
so reads come from WARM: the bot's SQLite file in WAL mode allows this concurrent reader) and, only with
``with_exchange``, a runtime for balances and quotes. ``build_frame`` is pure: ``DashboardData`` in, rich
renderables out, so tests build frames from small fixtures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import tempfile
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot_v2.config import BotSettings
from bot_v2.domain import OrderStatus, Quote, Symbol
from bot_v2.errors import PerpsBotError
from bot_v2.monitoring.health import read_health
from bot_v2.orchestration import keys
from bot_v2.render import fmt, to_jsonable
from bot_v2.risk import (
    Alert,
    AlertLevel,
    AlertSnapshot,
    AlertThresholds,
    RiskEngine,
    RiskSnapshot,
    evaluate_alerts,
)
from bot_v2.state import StateHealth, StateManager, StorageStats, WarmBackend
from bot_v2.state.models import LeaseRecord
from bot_v2.tools.eventlog import (
    DASHBOARD_EVENT_TYPES,
    EventTail,
    event_summary,
    parse_event_time,
    tail_events,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DashboardData",
    "DashboardSource",
    "ExchangeView",
    "PositionView",
    "alert_inputs",
    "build_frame",
    "build_layout",
    "health_age_seconds",
    "open_orders",
    "position_views",
]

STALE_INTERVALS = 3  # health.json older than this many intervals: the loop is stuck or dead
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


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    quantity: Decimal
    entry_price: Decimal
    mark: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal
    fees: Decimal


@dataclass(frozen=True, slots=True)
class ExchangeView:
    """Balances and quotes read from the exchange (``--with-exchange``)."""

    balances: list[dict[str, Any]] = field(default_factory=list)
    quotes: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DashboardData:
    """Everything one frame shows. Raw state values are the decoded records as the bot wrote them."""

    profile: str
    bot_id: str
    symbols: tuple[str, ...]
    interval_seconds: float
    window_minutes: float
    refresh_seconds: float
    now: datetime
    health: Mapping[str, Any] | None = None
    health_error: str | None = None
    pid_running: bool | None = None
    lease: LeaseRecord | None = None
    safety: Mapping[str, Any] | None = None
    control: Mapping[str, Any] | None = None
    guards: Mapping[str, Any] | None = None
    pnl: Mapping[str, Any] | None = None
    positions: Mapping[str, Any] = field(default_factory=dict)
    marks: Mapping[str, Any] = field(default_factory=dict)
    orders: Mapping[str, Any] = field(default_factory=dict)
    events: EventTail = field(default_factory=EventTail)
    state_health: StateHealth | None = None
    storage: StorageStats | None = None
    state_error: str | None = None
    exchange: ExchangeView | None = None
    risk_config: Any = None  # RiskConfig of the profile (for the alert snapshot)
    thresholds: AlertThresholds = field(default_factory=AlertThresholds)


# --- pure helpers -------------------------------------------------------------------------------------------


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else None
    if isinstance(value, str):
        return parse_event_time({"ts": value})
    return None


def health_age_seconds(health: Mapping[str, Any] | None, now: datetime) -> float | None:
    """Seconds since ``health.json``'s ``timestamp`` (None if missing or unreadable)."""
    if not health:
        return None
    ts = _time(health.get("timestamp"))
    return None if ts is None else max((now - ts).total_seconds(), 0.0)


def health_is_stale(age_seconds: float | None, interval_seconds: float) -> bool:
    """True when health.json is missing or older than three loop intervals (the watchdog rule)."""
    return age_seconds is None or age_seconds > STALE_INTERVALS * interval_seconds


def _mark_mid(mark: object) -> Decimal | None:
    if not isinstance(mark, Mapping):
        return None
    mid = _decimal(mark.get("mid"))
    if mid is None:
        bid, ask = _decimal(mark.get("bid")), _decimal(mark.get("ask"))
        if bid is not None and ask is not None:
            mid = (bid + ask) / 2
    return mid


def position_views(positions: Mapping[str, Any], marks: Mapping[str, Any]) -> list[PositionView]:
    """Rows for the positions table, keyed by symbol; flat positions with no history are left out."""
    rows: list[PositionView] = []
    for symbol in sorted(positions):
        record = positions[symbol]
        if not isinstance(record, Mapping):
            continue
        quantity = _decimal(record.get("quantity")) or Decimal(0)
        entry = _decimal(record.get("entry_price")) or Decimal(0)
        contract = _decimal(record.get("contract_size")) or Decimal(1)
        realized = _decimal(record.get("realized_pnl")) or Decimal(0)
        fees = _decimal(record.get("fees")) or Decimal(0)
        if quantity == 0 and realized == 0 and fees == 0:
            continue
        mark = _mark_mid(marks.get(symbol))
        unrealized = (
            None if mark is None else (mark - entry) * quantity * contract if quantity else Decimal(0)
        )
        rows.append(PositionView(symbol, quantity, entry, mark, unrealized, realized, fees))
    return rows


def open_orders(orders: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tracked orders not in a terminal status, newest update first."""
    terminal = {s.value for s in OrderStatus if s.is_terminal}
    rows = [o for o in orders.values() if isinstance(o, Mapping) and str(o.get("status")) not in terminal]
    return sorted(rows, key=lambda o: str(o.get("updated_at") or ""), reverse=True)


def _quotes_from_marks(marks: Mapping[str, Any]) -> dict[Symbol, Quote]:
    quotes: dict[Symbol, Quote] = {}
    for symbol, mark in marks.items():
        if not isinstance(mark, Mapping):
            continue
        bid, ask, at = _decimal(mark.get("bid")), _decimal(mark.get("ask")), _time(mark.get("time"))
        if bid is not None and ask is not None and at is not None:
            quotes[Symbol(symbol)] = Quote(Symbol(symbol), bid, ask, at)
    return quotes


def alert_inputs(data: DashboardData) -> tuple[AlertSnapshot, list[str]]:
    """The measurements ``evaluate_alerts`` judges, from state and the event window; and notes on any input
    that is an estimate or unavailable.

    Daily PnL and market-data age come from the risk engine's own trackers (``guards:risk`` restored) over the
    stored positions and marks, exactly as the loop computes them. The cycle error rate is estimated from the
    window: ``cycle_error`` events / (window / interval).
    """
    notes: list[str] = []
    errors = sum(1 for e in data.events.events if e.get("type") == "cycle_error")
    expected = int(data.window_minutes * 60 / data.interval_seconds) if data.interval_seconds > 0 else 0
    cycles = max(errors, expected)
    notes.append(f"error rate estimated: {errors} cycle_error event(s) in ~{cycles} cycles of the window")
    views = position_views(data.positions, data.marks)
    from bot_v2.domain import Position

    positions = {
        Symbol(v.symbol): Position(
            symbol=Symbol(v.symbol),
            quantity=v.quantity,
            entry_price=v.entry_price,
            mark_price=v.mark,
            unrealized_pnl=v.unrealized_pnl or Decimal(0),
            realized_pnl=v.realized_pnl,
        )
        for v in views
    }
    pnl = data.pnl or {}
    equity = _decimal(pnl.get("equity_usd"))
    daily = data.guards.get("daily_pnl") if isinstance(data.guards, Mapping) else None
    if equity is None and isinstance(daily, Mapping):
        equity = _decimal(daily.get("start_equity_usd"))
    snapshot = RiskSnapshot(
        equity_usd=equity if equity is not None else Decimal(0),
        positions=positions,
        quotes=_quotes_from_marks(data.marks),
        symbols=tuple(Symbol(s) for s in data.symbols),
        error_count=errors,
        cycle_count=cycles,
    )
    engine: RiskEngine | None = None
    if data.risk_config is not None and isinstance(data.guards, Mapping):
        try:
            engine = RiskEngine.restore(data.risk_config, data.guards)
        except PerpsBotError as exc:
            notes.append(f"guards:risk unreadable ({exc.one_line()}): daily PnL not judged")
    if engine is None:
        if data.guards is None:
            notes.append("no guards:risk yet: daily PnL not judged")
        engine = RiskEngine(data.risk_config) if data.risk_config is not None else None
    if engine is None:
        from bot_v2.risk import RiskConfig

        engine = RiskEngine(RiskConfig())
    measured = engine.alert_snapshot(snapshot, data.now)
    feed = market_feed(data.health)
    if feed is not None:
        down = _decimal(feed.get("down_seconds"))
        measured = dataclasses.replace(
            measured, websocket_down_seconds=float(down) if down is not None else None
        )
    return measured, notes


def market_feed(health: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """health.json's ``market_data`` (the WebSocket feed's health), or None when the bot runs without a feed."""
    feed = (health or {}).get("market_data")
    return feed if isinstance(feed, Mapping) else None


def frame_alerts(data: DashboardData) -> tuple[list[Alert], list[str]]:
    """The runbook alerts for this frame, plus health.json staleness as its own critical alert."""
    snapshot, notes = alert_inputs(data)
    alerts = evaluate_alerts(snapshot, data.thresholds)
    age = health_age_seconds(data.health, data.now)
    if health_is_stale(age, data.interval_seconds):
        what = "missing" if age is None else f"{age:.0f}s old (> {STALE_INTERVALS} intervals)"
        alerts.insert(0, Alert("health_stale", AlertLevel.CRITICAL, f"health.json {what}"))
    elif data.health is not None and data.health.get("ok") is False:
        alerts.insert(0, Alert("health_not_ok", AlertLevel.WARNING, f"health: {data.health.get('message')}"))
    return alerts, notes


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


def frame_json(data: DashboardData) -> dict[str, Any]:
    """The frame's data as JSON-safe values (``--once --json``)."""
    alerts, notes = frame_alerts(data)
    return {
        "profile": data.profile,
        "bot_id": data.bot_id,
        "now": data.now,
        "health": data.health,
        "health_age_seconds": health_age_seconds(data.health, data.now),
        "safety": data.safety,
        "pnl": data.pnl,
        "positions": [to_jsonable(v) for v in position_views(data.positions, data.marks)],
        "open_orders": open_orders(data.orders),
        "events": data.events.events,
        "alerts": [a.to_dict() for a in alerts],
        "alert_notes": notes,
        "state": {
            "error": data.state_error,
            "health": data.state_health,
            "storage": data.storage,
        },
        "exchange": data.exchange,
    }


# --- gathering ----------------------------------------------------------------------------------------------


def _pid_running(pid: object) -> bool | None:
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DashboardSource:
    """Opens the state layer (and the exchange with ``with_exchange``) once; ``snapshot()`` per refresh."""

    def __init__(
        self,
        settings: BotSettings,
        *,
        window_minutes: float,
        refresh_seconds: float,
        with_exchange: bool = False,
        max_event_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.settings = settings
        self.window_minutes = window_minutes
        self.refresh_seconds = refresh_seconds
        self.with_exchange = with_exchange
        self.max_event_bytes = max_event_bytes
        self._stack = AsyncExitStack()
        self._state: StateManager | None = None
        self._exchange: Any = None
        self._exchange_note: str | None = None
        self._exchange_error: str | None = None

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        if self.with_exchange:
            await self._open_exchange()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def _reader_settings(self) -> BotSettings:
        # A viewer is a reader: it writes nothing to any tier, and starts even when HOT is down.
        from bot_v2.orchestration.wiring import reader_settings

        return reader_settings(self.settings)

    async def _open_state(self) -> str | None:
        if self._state is not None:
            return None
        state_settings = self.settings.state
        if state_settings.warm_backend is WarmBackend.SQLITE and not state_settings.sqlite_path.exists():
            return f"no state yet at {state_settings.sqlite_path} (has the bot run with this profile?)"
        try:
            self._state = await StateManager.create(self._reader_settings().state)
        except PerpsBotError as exc:
            return exc.one_line()
        self._stack.push_async_callback(self._state.close)
        return None

    async def _open_exchange(self) -> None:
        from bot_v2.orchestration.wiring import exchange_connection_needs_simulator, open_runtime

        settings = self.settings
        if exchange_connection_needs_simulator(settings):
            # Never share the bot's simulator directory: run a private one and say so.
            sim_dir = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="perps-dash-sim-"))
            simulator = dataclasses.replace(settings.simulator, state_dir=Path(sim_dir))
            settings = dataclasses.replace(settings, simulator=simulator)
            self._exchange_note = "private in-process simulator (not the running bot's exchange)"
        try:
            runtime = await self._stack.enter_async_context(open_runtime(settings, with_state=False))
        except PerpsBotError as exc:
            self._exchange_error = exc.one_line()
            return
        self._exchange = runtime.exchange

    async def _exchange_view(self) -> ExchangeView | None:
        if not self.with_exchange:
            return None
        if self._exchange is None:
            return ExchangeView(note=self._exchange_note, error=self._exchange_error or "not connected")
        symbols = [Symbol(s) for s in self.settings.symbols]
        try:
            balances, quotes = await asyncio.gather(
                self._exchange.list_balances(), self._exchange.get_quotes(symbols)
            )
        except PerpsBotError as exc:
            return ExchangeView(note=self._exchange_note, error=exc.one_line())
        return ExchangeView(
            balances=[to_jsonable(b) | {"total": b.total} for b in balances if b.total != 0],
            quotes={str(s): {"bid": q.bid, "ask": q.ask, "time": q.time} for s, q in quotes.items()},
            note=self._exchange_note,
        )

    async def snapshot(self, now: datetime | None = None) -> DashboardData:
        """Read everything one frame shows."""
        settings = self.settings
        now = now or datetime.now(UTC)
        health: Mapping[str, Any] | None = None
        health_error: str | None = None
        try:
            health = await asyncio.to_thread(read_health, settings.health_path)
        except FileNotFoundError:
            health_error = f"no {settings.health_path.name} at {settings.health_path.parent}"
        except (OSError, ValueError) as exc:
            health_error = f"unreadable: {exc}"
        since = now - timedelta(minutes=self.window_minutes)
        events = await asyncio.to_thread(
            tail_events, settings.events_path, since, max_bytes=self.max_event_bytes
        )
        values: dict[str, Any] = {}
        lease: LeaseRecord | None = None
        state_error = await self._open_state()
        state_health: StateHealth | None = None
        storage: StorageStats | None = None
        if self._state is not None:
            try:
                values = await _read_state(self._state)
                lease = await self._state.read_lease()
                state_health = self._state.health()
                storage = await self._state.get_storage_stats()
            except PerpsBotError as exc:
                state_error = exc.one_line()
        return DashboardData(
            profile=settings.profile.value,
            bot_id=settings.bot_id,
            symbols=tuple(settings.symbols),
            interval_seconds=settings.interval_seconds,
            window_minutes=self.window_minutes,
            refresh_seconds=self.refresh_seconds,
            now=now,
            health=health,
            health_error=health_error,
            pid_running=_pid_running((health or {}).get("pid")),
            lease=lease,
            safety=_mapping(values.get(keys.SAFETY_KEY)),
            control=_mapping(values.get(keys.CONTROL_KEY)),
            guards=_mapping(values.get(keys.GUARDS_KEY)),
            pnl=_mapping(values.get(keys.PNL_KEY)),
            positions=_by_suffix(values, keys.POSITION_PREFIX),
            marks=_by_suffix(values, keys.MARK_PREFIX),
            orders=_by_suffix(values, keys.ORDER_PREFIX),
            events=events,
            state_health=state_health,
            storage=storage,
            state_error=state_error,
            exchange=await self._exchange_view(),
            risk_config=settings.risk,
        )


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _by_suffix(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {keys.suffix(k, prefix): v for k, v in values.items() if k.startswith(prefix)}


async def _read_state(state: StateManager) -> dict[str, Any]:
    """The records a frame shows: fixed keys plus every position, mark and order (one batch read)."""
    wanted: list[str] = [keys.SAFETY_KEY, keys.CONTROL_KEY, keys.GUARDS_KEY, keys.PNL_KEY]
    for prefix in (keys.POSITION_PREFIX, keys.MARK_PREFIX, keys.ORDER_PREFIX):
        wanted.extend(await state.get_keys_by_pattern(prefix + "*"))
    return await state.batch_get_state(wanted)
