"""The terminal dashboard (``scripts/perps_dashboard.py``), in three parts that point one way:

* ``source``: ``DashboardSource`` -- the only I/O: opens the state layer read-only (and the exchange with
  ``with_exchange``) once, gathers a ``DashboardData`` per refresh from state, health.json and events.jsonl;
* ``view``: the view model -- ``DashboardData`` and the pure functions that turn it into what a frame shows
  (positions, open orders, health age, the runbook alerts) and into JSON (``frame_json``);
* ``render``: rich renderables from the view (``build_frame``, ``build_layout``), nothing else.
"""

from bot_v2.tools.dashboard.render import build_frame, build_layout
from bot_v2.tools.dashboard.source import DashboardSource
from bot_v2.tools.dashboard.view import (
    STALE_INTERVALS,
    DashboardData,
    ExchangeView,
    PositionView,
    alert_inputs,
    frame_alerts,
    frame_json,
    health_age_seconds,
    open_orders,
    position_views,
)

__all__ = [
    "STALE_INTERVALS",
    "DashboardData",
    "DashboardSource",
    "ExchangeView",
    "PositionView",
    "alert_inputs",
    "build_frame",
    "build_layout",
    "frame_alerts",
    "frame_json",
    "health_age_seconds",
    "open_orders",
    "position_views",
]
