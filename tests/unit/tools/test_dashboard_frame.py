"""Dashboard frames built from small fixtures (no state, no files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rich.console import Console

from bot_v2.risk import RiskConfig
from bot_v2.tools.dashboard import (
    DashboardData,
    build_frame,
    build_layout,
    frame_alerts,
    frame_json,
    health_age_seconds,
    open_orders,
    position_views,
)
from bot_v2.tools.eventlog import EventTail

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def data(**changes: Any) -> DashboardData:
    base: dict[str, Any] = {
        "profile": "dev",
        "bot_id": "perps-dev",
        "symbols": ("BTC-USD", "ETH-USD"),
        "interval_seconds": 5.0,
        "window_minutes": 15.0,
        "refresh_seconds": 5.0,
        "now": NOW,
        "health": {"ok": True, "timestamp": (NOW - timedelta(seconds=4)).isoformat(), "pid": None,
                   "last_cycle": 7, "last_cycle_ms": 6.5, "message": "cycle 7 ok", "trading_state": "ACTIVE"},
        "safety": {"trading_state": "REDUCE_ONLY", "kill_switch": False, "reduce_only": True,
                   "reasons": [{"code": "REDUCE_ONLY_MODE", "level": "REDUCE_ONLY", "detail": "operator"}]},
        "pnl": {"realized_pnl": Decimal("12.5"), "unrealized_pnl": Decimal(50), "fees": Decimal("1.2"),
                "equity_usd": Decimal(100000)},
        "positions": {"BTC-USD": {"symbol": "BTC-USD", "quantity": Decimal("0.01"), "entry_price": Decimal(60000),
                                  "realized_pnl": Decimal("12.5"), "fees": Decimal("1.2"),
                                  "contract_size": Decimal(1), "fill_count": 3}},
        "marks": {"BTC-USD": {"bid": Decimal(64990), "ask": Decimal(65010), "mid": Decimal(65000),
                              "time": NOW - timedelta(seconds=5)},
                  "ETH-USD": {"bid": Decimal(3199), "ask": Decimal(3201), "mid": Decimal(3200),
                              "time": NOW - timedelta(seconds=5)}},
        "orders": {"pb-1": {"client_order_id": "pb-1", "symbol": "BTC-USD", "side": "BUY", "status": "OPEN",
                            "quantity": Decimal("0.01"), "filled_quantity": Decimal(0),
                            "updated_at": NOW},
                   "pb-0": {"client_order_id": "pb-0", "symbol": "BTC-USD", "side": "BUY", "status": "FILLED",
                            "quantity": Decimal("0.01"), "filled_quantity": Decimal("0.01"), "updated_at": NOW}},
        "events": EventTail([
            {"ts": (NOW - timedelta(minutes=2)).isoformat(), "type": "fill", "side": "BUY", "quantity": "0.01",
             "symbol": "BTC-USD", "price": "60000"},
            {"ts": (NOW - timedelta(minutes=1)).isoformat(), "type": "decision", "symbol": "BTC-USD"},
            {"ts": (NOW - timedelta(minutes=1)).isoformat(), "type": "state_transition", "from_state": "ACTIVE",
             "to_state": "REDUCE_ONLY", "reason": "REDUCE_ONLY_MODE"},
        ]),
        "risk_config": RiskConfig(),
    }  # fmt: skip
    base.update(changes)
    return DashboardData(**base)


def render(renderable: Any) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_positions_marks_and_open_orders() -> None:
    frame = data()
    (btc,) = position_views(frame.positions, frame.marks)
    assert btc.unrealized_pnl == Decimal(50)  # (65000 - 60000) * 0.01
    assert [o["client_order_id"] for o in open_orders(frame.orders)] == ["pb-1"]


def test_frame_shows_state_positions_orders_events() -> None:
    text = render(build_frame(data()))
    assert "REDUCE_ONLY" in text and "REDUCE_ONLY_MODE (operator)" in text
    assert "BTC-USD" in text and "ETH-USD" in text and "pb-1" in text and "pb-0" not in text
    assert "BUY 0.01 BTC-USD @ 60000" in text and "ACTIVE -> REDUCE_ONLY" in text
    assert "decision" not in text  # too chatty for the events panel
    assert "Open orders (1)" in text
    assert "no alert raised" in text
    render(build_layout(data()))  # the live layout renders from the same data


def test_stale_health_is_a_critical_alert() -> None:
    old = {"ok": True, "timestamp": (NOW - timedelta(seconds=16)).isoformat(), "trading_state": "ACTIVE"}
    assert health_age_seconds(old, NOW) == 16
    alerts, _ = frame_alerts(data(health=old))
    assert alerts[0].name == "health_stale" and alerts[0].level.value == "CRITICAL"
    assert frame_alerts(data(health=None))[0][0].name == "health_stale"
    fresh = {**old, "timestamp": (NOW - timedelta(seconds=14)).isoformat()}
    assert not [a for a in frame_alerts(data(health=fresh))[0] if a.name == "health_stale"]


def test_runbook_alerts_from_state_and_events() -> None:
    errors = [
        {"ts": NOW.isoformat(), "type": "cycle_error", "cycle": i, "policy": "retry"} for i in range(60)
    ]
    stale_marks = {
        s: {**m, "time": NOW - timedelta(minutes=20)} for s, m in data().marks.items()
    }  # fmt: skip
    alerts, notes = frame_alerts(data(events=EventTail(errors), marks=stale_marks))
    by_name = {a.name: a.level.value for a in alerts}
    assert by_name["error_rate"] == "CRITICAL"  # 60 errors in ~180 cycles = 33 %
    assert by_name["market_data"] == "CRITICAL"
    assert any("estimated" in n for n in notes)


def test_missing_state_and_files_render_without_crashing() -> None:
    empty = data(health=None, safety=None, pnl=None, positions={}, marks={}, orders={},
                 events=EventTail(missing=True), state_error="no state yet", risk_config=None)  # fmt: skip
    text = render(build_frame(empty))
    assert "UNKNOWN" in text and "no events.jsonl yet" in text and "no state yet" in text
    assert frame_json(empty)["state"]["error"] == "no state yet"


def test_feed_health_and_the_websocket_down_alert() -> None:
    healthy = {"connected": True, "down_seconds": 0.0, "source": "ws", "reconnects": 2, "sequence_gaps": 1,
               "messages": 1234, "last_disconnect": "gap: sequence_num 9 after 7",
               "quote_age_seconds": {"BTC-USD": 0.12}}  # fmt: skip
    text = render(build_frame(data(health={**data().health, "market_data": healthy})))
    assert "Market data feed" in text and "connected" in text and "quote age BTC-USD" in text
    assert "2 / 1" in text  # reconnects / gaps
    assert not [a for a in frame_alerts(data(health={**data().health, "market_data": healthy}))[0]
                if a.name == "websocket"]  # fmt: skip
    down = {**healthy, "connected": False, "down_seconds": 360.0, "source": "rest"}
    frame = data(health={**data().health, "market_data": down})
    assert "DOWN: REST fallback" in render(build_frame(frame))
    alerts = {a.name: a.level.value for a in frame_alerts(frame)[0]}
    assert alerts["websocket"] == "WARNING"  # the runbook's "WebSocket down": 5 min warning, 15 min critical
    assert "none (REST quotes every cycle)" in render(build_frame(data()))
