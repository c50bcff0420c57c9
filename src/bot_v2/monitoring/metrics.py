"""Prometheus metrics of the trading loop: registry objects only (the exporter script serves them).

``REGISTRY`` is the bot's own ``CollectorRegistry`` (not the global default), so tests and tools can build a
private ``BotMetrics`` without duplicate-registration errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["METRICS", "REGISTRY", "TRADING_STATE_VALUES", "BotMetrics", "RateLimitView"]

#: Numeric value of the ``perps_bot_trading_state`` gauge for each state.
TRADING_STATE_VALUES: dict[str, int] = {"ACTIVE": 0, "REDUCE_ONLY": 1, "HALTED": 2}

_CYCLE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CHECKPOINT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RateLimitView(Protocol):
    """The exchange's last rate-limit answer (``brokerages.coinbase.RateLimitInfo`` has this shape)."""

    @property
    def limit(self) -> int | None: ...

    @property
    def remaining(self) -> int | None: ...


class BotMetrics:
    """The loop's counters, gauges and histograms, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.cycles = Counter("perps_bot_cycles", "Trading cycles completed", ["outcome"], registry=r)
        self.cycle_seconds = Histogram(
            "perps_bot_cycle_seconds", "Wall time of one trading cycle", buckets=_CYCLE_BUCKETS, registry=r
        )
        self.state_flush_seconds = Histogram(
            "perps_bot_state_flush_seconds",
            "Time of the cycle's state batch",
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "perps_bot_decisions", "Strategy decisions", ["symbol", "action"], registry=r
        )
        self.orders = Counter("perps_bot_orders", "Order outcomes", ["symbol", "side", "outcome"], registry=r)
        self.guard_denials = Counter(
            "perps_bot_guard_denials", "Orders denied by a guard", ["guard"], registry=r
        )
        self.fills = Counter("perps_bot_fills", "Fills ingested (once per trade id)", ["symbol"], registry=r)
        self.errors = Counter("perps_bot_errors", "Errors handled by the loop policy", ["kind"], registry=r)
        self.trading_state = Gauge("perps_bot_trading_state", "0 ACTIVE, 1 REDUCE_ONLY, 2 HALTED", registry=r)
        self.position_quantity = Gauge(
            "perps_bot_position_quantity", "Signed net position (base units)", ["symbol"], registry=r
        )
        self.unrealized_pnl = Gauge("perps_bot_unrealized_pnl_usd", "Unrealized PnL", ["symbol"], registry=r)
        self.realized_pnl = Gauge("perps_bot_realized_pnl_usd", "Realized PnL (gross of fees)", registry=r)
        self.fees = Gauge("perps_bot_fees_usd", "Fees paid", registry=r)
        self.mark_price = Gauge(
            "perps_bot_mark_price", "Last mark (mid of best bid/ask)", ["symbol"], registry=r
        )
        self.open_orders = Gauge("perps_bot_open_orders", "Orders the bot tracks as open", registry=r)
        self.last_cycle_timestamp = Gauge(
            "perps_bot_last_cycle_timestamp_seconds", "Unix time of the last completed cycle", registry=r
        )
        self.recoveries = Counter("perps_bot_recoveries", "Start-up recoveries", ["kind"], registry=r)
        self.recovery_seconds = Histogram(
            "perps_bot_recovery_seconds",
            "Time of start-up reconciliation",
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self.checkpoints = Counter(
            "perps_bot_checkpoints", "State checkpoints the loop attempted", ["outcome"], registry=r
        )
        self.checkpoint_seconds = Histogram(
            "perps_bot_checkpoint_seconds",
            "Wall time of one successful checkpoint (snapshot, encode, store, prune)",
            buckets=_CHECKPOINT_BUCKETS,
            registry=r,
        )
        self.alerts = Gauge(
            "perps_bot_alert", "Runbook alert level: 0 ok, 1 warning, 2 critical", ["name"], registry=r
        )
        self.state_tier_degraded = Gauge(
            "perps_bot_state_tier_degraded",
            "1 while a state tier is down and served around",
            ["tier"],
            registry=r,
        )
        self.state_recoveries = Counter(
            "perps_bot_state_recoveries", "State tier outages recovered from", ["tier"], registry=r
        )
        self.state_outage_seconds = Gauge(
            "perps_bot_state_last_outage_seconds", "Length of the last recovered outage", ["tier"], registry=r
        )
        self.state_journal_records = Gauge(
            "perps_bot_state_journal_records",
            "Durable writes in the local WARM journal, waiting for PostgreSQL (0 while it answers)",
            registry=r,
        )
        self.lease_epoch = Gauge(
            "perps_bot_lease_epoch", "Fencing epoch of the lease this process holds", registry=r
        )
        self.lease_remaining_seconds = Gauge(
            "perps_bot_lease_remaining_seconds",
            "Time the lease is still good for by this process's monotonic clock (0: not held)",
            registry=r,
        )
        self.lease_events = Counter(
            "perps_bot_lease_events",
            "Lease acquisitions, takeovers, renew failures, watchdog stops, fences and releases",
            ["kind"],
            registry=r,
        )
        self.last_checkpoint_timestamp = Gauge(
            "perps_bot_last_checkpoint_timestamp_seconds",
            "Unix time of the newest checkpoint the loop took",
            registry=r,
        )

        self.ws_connected = Gauge(
            "perps_bot_ws_connected",
            "1 while the WebSocket feed is healthy (subscribed, gap-free, heard from within the stale limit)",
            registry=r,
        )
        self.ws_messages = Counter(
            "perps_bot_ws_messages", "WebSocket feed messages received (rate() = message rate)", registry=r
        )
        self.ws_reconnects = Counter(
            "perps_bot_ws_reconnects",
            "Feed sockets dropped and connection attempts failed, each retried after the backoff, by cause "
            "(gap, stale, closed, refused, error)",
            ["reason"],
            registry=r,
        )
        self.ws_sequence_gaps = Counter(
            "perps_bot_ws_sequence_gaps", "Feed messages whose sequence_num skipped one", registry=r
        )
        self.quote_age_seconds = Gauge(
            "perps_bot_quote_age_seconds",
            "Age of the quote the cycle used (exchange time to now)",
            ["symbol"],
            registry=r,
        )
        self.market_data_cycles = Counter(
            "perps_bot_market_data_cycles",
            "Cycles by where their quotes came from (ws: the feed, rest: the fallback)",
            ["source"],
            registry=r,
        )
        self.fill_booking_seconds = Histogram(
            "perps_bot_fill_booking_seconds",
            "Exchange fill time to the fill booked by the bot, by how it learned of it (ws, rest)",
            ["source"],
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )

        # read at scrape time from the exchange adapter's last x-ratelimit-* headers (watch_rate_limit)
        self._rate_limit: Callable[[], RateLimitView | None] | None = None
        Gauge(
            "perps_bot_rate_limit_remaining",
            "Exchange requests left in the rate-limit window, as its last answer said (NaN: none yet)",
            registry=r,
        ).set_function(lambda: self._rate_limit_value("remaining"))
        Gauge(
            "perps_bot_rate_limit_limit",
            "Requests the exchange allows in one rate-limit window (NaN: not known yet)",
            registry=r,
        ).set_function(lambda: self._rate_limit_value("limit"))
        Gauge(
            "perps_bot_rate_limit_headroom_ratio",
            "Share of the rate-limit window still unused: remaining / limit (1 idle, 0 throttled)",
            registry=r,
        ).set_function(lambda: self._rate_limit_value("headroom"))
        self.lease_holder = Gauge(
            "perps_bot_lease_holder",
            "The lease holder as this process last saw it (itself while it holds it, the live bot while it "
            "stands by), by holder id, host, pid and role; the value is its fencing epoch",
            ["holder", "host", "pid", "role"],
            registry=r,
        )
        self._lease_holder_key: tuple[str, str, str, str] | None = None

    def watch_rate_limit(self, source: Callable[[], RateLimitView | None] | None) -> None:
        """Export ``source()``'s figures on every scrape (None: stop, the gauges read NaN)."""
        self._rate_limit = source

    def _rate_limit_value(self, field: str) -> float:
        info = self._rate_limit() if self._rate_limit is not None else None
        if info is None:
            return math.nan
        if field == "headroom":
            if info.remaining is None or not info.limit:
                return math.nan
            return max(0.0, min(1.0, info.remaining / info.limit))
        value = info.limit if field == "limit" else info.remaining
        return math.nan if value is None else float(value)

    def set_lease_holder(
        self, holder: str | None, host: str = "", pid: int = 0, role: str = "", epoch: int = 0
    ) -> None:
        """Name the current lease holder (``holder`` None: nobody known -- released, fenced)."""
        key = None if holder is None else (holder, host, str(pid), role)
        if key != self._lease_holder_key:
            self.lease_holder.clear()  # one series at a time: the holder's labels change on a takeover
            self._lease_holder_key = key
        if key is not None:
            self.lease_holder.labels(*key).set(epoch)

    def set_trading_state(self, state: str) -> None:
        """Set the trading-state gauge from the state's name."""
        self.trading_state.set(TRADING_STATE_VALUES.get(state, -1))


REGISTRY = CollectorRegistry()
METRICS = BotMetrics(REGISTRY)
