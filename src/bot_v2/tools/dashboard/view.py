"""Dashboard view model: what a frame shows, computed from the raw state, health.json and events.

Pure functions and value types (``DashboardData`` in, views out) -- no I/O, no rendering -- so tests build
frames from small fixtures. ``frame_json`` is the same data as JSON for ``--once --json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot_v2.domain import OrderStatus, Quote, Symbol
from bot_v2.domain.jsonable import to_jsonable
from bot_v2.errors import PerpsBotError
from bot_v2.risk import (
    Alert,
    AlertLevel,
    AlertSnapshot,
    AlertThresholds,
    RiskEngine,
    RiskSnapshot,
    evaluate_alerts,
)
from bot_v2.state import StateHealth, StorageStats
from bot_v2.state.models import LeaseRecord
from bot_v2.tools.eventlog import (
    EventTail,
    parse_event_time,
)

STALE_INTERVALS = 3  # health.json older than this many intervals: the loop is stuck or dead


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
