"""``RiskEngine``: owns the trading state and judges every order against every guard.

The engine holds only small, serializable state: the active reasons (from which ``ACTIVE / REDUCE_ONLY /
HALTED`` is derived), the daily PnL tracker, the equity peak, the runtime control values and the recent order
timestamps. It never reads a clock or does I/O: the loop passes ``now`` and a ``RiskSnapshot`` in, and
persists ``export_state()`` plus the returned ``Transition`` events.

Typical cycle::

    transitions = engine.apply_controls(kill_switch=k, reduce_only=r, now=now)
    transitions += engine.evaluate_cycle(snapshot, now)
    verdict = engine.check_order(order, snapshot, now)
    if verdict.allowed:
        ...submit...
        engine.record_order(now)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot_v2.domain import OrderRequest, ensure_utc
from bot_v2.errors import GuardDeniedError, StateIntegrityError
from bot_v2.risk import serde
from bot_v2.risk.alerts import AlertSnapshot
from bot_v2.risk.config import RiskConfig
from bot_v2.risk.guards import (
    ORDER_GUARDS,
    ORDER_RATE_WINDOW,
    Breach,
    GuardResult,
    OrderContext,
    daily_loss_breach,
    daily_pnl_pct,
    drawdown_breach,
    error_rate_breach,
    liquidation_buffer_breach,
    mark_age_seconds,
    staleness_breach,
    volatility_breach,
)
from bot_v2.risk.snapshot import RiskSnapshot
from bot_v2.risk.state import ActiveReason, DailyPnlTracker, ReasonCode, Recovery, TradingState, Transition

__all__ = ["STATE_SCHEMA_VERSION", "RiskEngine", "RiskVerdict"]

STATE_SCHEMA_VERSION = 1
ZERO = Decimal(0)
_MAX_ORDER_TIMES = 10_000

_STATE_KEYS = {
    "version",
    "state",
    "reasons",
    "daily_pnl",
    "equity_peak_usd",
    "last_equity_usd",
    "last_unrealized_pnl_usd",
    "control_kill_switch",
    "control_reduce_only",
    "order_times",
}

# Reasons the caller may raise itself; all others are derived from config, controls and snapshots.
_CALLER_RAISED = frozenset({ReasonCode.RECONCILE_MISMATCH, ReasonCode.MANUAL, ReasonCode.STARTUP})


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    """Every guard's answer about one order; ``allowed`` only when all passed."""

    allowed: bool
    state: TradingState
    results: tuple[GuardResult, ...]

    @property
    def denials(self) -> tuple[GuardResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def warnings(self) -> tuple[GuardResult, ...]:
        return tuple(r for r in self.results if r.passed and r.warning)

    def raise_if_denied(self) -> None:
        """Raise ``GuardDeniedError`` for the first failed guard (naming the others in the message)."""
        denials = self.denials
        if not denials:
            return
        first = denials[0]
        others = f" (also: {', '.join(d.guard for d in denials[1:])})" if len(denials) > 1 else ""
        raise GuardDeniedError(first.guard, first.reason + others)

    def to_dict(self) -> dict[str, object]:
        return {
            "allowed": self.allowed,
            "state": self.state.value,
            "results": [r.to_dict() for r in self.results],
        }


class RiskEngine:
    """The trading-state owner. Construct with a config, or ``RiskEngine.restore(config, saved)``."""

    def __init__(self, config: RiskConfig) -> None:
        self._config = config
        self._reasons: dict[ReasonCode, ActiveReason] = {}
        self._daily: DailyPnlTracker | None = None
        self._equity_peak_usd = ZERO
        self._last_equity_usd: Decimal | None = None
        self._last_unrealized_usd = ZERO
        self._control_kill_switch = False
        self._control_reduce_only = False
        self._warm_outage_reduce_only = False  # PostgreSQL down, PERPS_WARM_OUTAGE_MODE=reduce_only
        self._order_times: list[datetime] = []

    # --- read-only views ------------------------------------------------------------------------------------

    @property
    def config(self) -> RiskConfig:
        return self._config

    @property
    def state(self) -> TradingState:
        """The most severe level among the active reasons (``ACTIVE`` when none)."""
        state = TradingState.ACTIVE
        for reason in self._reasons.values():
            state = state.worst(reason.level)
        return state

    @property
    def reasons(self) -> Mapping[ReasonCode, ActiveReason]:
        return dict(self._reasons)

    @property
    def equity_peak_usd(self) -> Decimal:
        return self._equity_peak_usd

    @property
    def daily_pnl_tracker(self) -> DailyPnlTracker | None:
        return self._daily

    @property
    def kill_switch_active(self) -> bool:
        return self._config.kill_switch_enabled or self._control_kill_switch

    @property
    def reduce_only_active(self) -> bool:
        return self._config.reduce_only_mode or self._control_reduce_only or self._warm_outage_reduce_only

    @property
    def warm_outage_reduce_only(self) -> bool:
        return self._warm_outage_reduce_only

    def set_warm_outage(self, reduce_only: bool) -> bool:
        """While WARM (PostgreSQL) is down in ``reduce_only`` outage mode only orders that shrink a position
        pass (the ``reduce_only`` guard); set by the loop every cycle, never persisted (it ends with the
        outage). Returns whether the value changed."""
        changed = reduce_only != self._warm_outage_reduce_only
        self._warm_outage_reduce_only = reduce_only
        return changed

    def state_detail(self) -> str:
        """Describe the active reasons, e.g. ``"DAILY_LOSS_LIMIT: daily loss 2.10% >= limit 2%"``."""
        if not self._reasons:
            return "no active reasons"
        return "; ".join(f"{r.code.value}: {r.detail}" for r in self._sorted_reasons())

    # --- decisions ------------------------------------------------------------------------------------------

    def check_order(self, order: OrderRequest, snapshot: RiskSnapshot, now: datetime) -> RiskVerdict:
        """Judge ``order`` against every guard (pure: the engine is not changed)."""
        now = ensure_utc(now)
        ctx = OrderContext(
            order=order,
            snapshot=snapshot,
            config=self._config,
            now=now,
            trading_state=self.state,
            state_detail=self.state_detail(),
            kill_switch=self.kill_switch_active,
            reduce_only_mode=self.reduce_only_active,
            daily_pnl_tracker=self._daily,
            equity_peak_usd=self._equity_peak_usd,
            recent_order_times=tuple(self._order_times),
        )
        results = tuple(guard(ctx) for guard in ORDER_GUARDS)
        return RiskVerdict(all(r.passed for r in results), self.state, results)

    def evaluate_cycle(self, snapshot: RiskSnapshot, now: datetime) -> list[Transition]:
        """Run the state-level guards on this cycle's snapshot; return the transitions they caused."""
        now = ensure_utc(now)
        transitions: list[Transition] = []
        today = now.date()

        # The daily loss latch and the tracker both start over at 00:00 UTC.
        latched = self._reasons.get(ReasonCode.DAILY_LOSS_LIMIT)
        if latched is not None and latched.since.date() != today:
            transitions += self._clear(ReasonCode.DAILY_LOSS_LIMIT, "UTC day rollover", now)
        if self._daily is None or self._daily.day != today:
            self._daily = DailyPnlTracker(today, snapshot.equity_usd, snapshot.unrealized_pnl_usd)
        elif self._daily.start_equity_usd <= 0 < snapshot.equity_usd:
            self._daily = DailyPnlTracker(
                today, snapshot.equity_usd, self._daily.unrealized_baseline_usd, self._daily.realized_pnl_usd
            )

        self._equity_peak_usd = max(self._equity_peak_usd, snapshot.equity_usd)
        self._last_equity_usd = snapshot.equity_usd
        self._last_unrealized_usd = snapshot.unrealized_pnl_usd
        self._prune_order_times(now)

        transitions += self._sync_controls(now)
        cfg = self._config
        daily = daily_loss_breach(cfg, self._daily, snapshot, now)
        if daily is not None:  # latched: only the rollover above clears it
            transitions += self._raise(daily, now)
        drawdown = drawdown_breach(cfg, self._equity_peak_usd, snapshot.equity_usd)
        if drawdown is not None:  # latched: only the operator clears it
            transitions += self._raise(drawdown, now)
        auto: dict[ReasonCode, Breach | None] = {
            ReasonCode.MARK_STALE: staleness_breach(cfg, snapshot, now),
            ReasonCode.VOLATILITY: volatility_breach(cfg, snapshot),
            ReasonCode.ERROR_RATE: error_rate_breach(cfg, snapshot),
            ReasonCode.LIQUIDATION_BUFFER: liquidation_buffer_breach(cfg, snapshot),
        }
        for code, breach in auto.items():
            if breach is not None:
                transitions += self._raise(breach, now)
            else:
                transitions += self._clear(code, "condition cleared", now)
        return transitions

    def apply_controls(self, kill_switch: bool, reduce_only: bool, now: datetime) -> list[Transition]:
        """Set the runtime control values (read by the loop each cycle); either config or control turns on."""
        now = ensure_utc(now)
        self._control_kill_switch = kill_switch
        self._control_reduce_only = reduce_only
        return self._sync_controls(now)

    def record_order(self, now: datetime) -> None:
        """Count an order submitted at ``now`` for the order-rate guard."""
        now = ensure_utc(now)
        self._order_times.append(now)
        self._prune_order_times(now)

    def record_realized_pnl(self, amount_usd: Decimal, now: datetime) -> None:
        """Add realized PnL (USD, net of fees; negative for a loss) from a closing fill to today's tracker."""
        now = ensure_utc(now)
        if self._daily is None or self._daily.day != now.date():
            equity = self._last_equity_usd if self._last_equity_usd is not None else ZERO
            self._daily = DailyPnlTracker(now.date(), equity, self._last_unrealized_usd)
        self._daily = self._daily.with_realized(amount_usd)

    def raise_reason(
        self, reason: ReasonCode, level: TradingState, detail: str, now: datetime
    ) -> list[Transition]:
        """Raise a caller-owned reason (``RECONCILE_MISMATCH``, ``MANUAL``, ``STARTUP``) at ``level``."""
        if reason not in _CALLER_RAISED:
            raise ValueError(
                f"{reason.value} is derived by the engine; only {_names(_CALLER_RAISED)} can be raised"
            )
        if level is TradingState.ACTIVE:
            raise ValueError("a reason must impose REDUCE_ONLY or HALTED")
        return self._raise(Breach(reason, level, detail), ensure_utc(now))

    def clear_reason(
        self, reason: ReasonCode, now: datetime, detail: str = "cleared by operator"
    ) -> list[Transition]:
        """Clear an operator-recovered reason (``DRAWDOWN``, ``RECONCILE_MISMATCH``, ``MANUAL``, ``STARTUP``).

        Clearing ``DRAWDOWN`` also resets the equity peak to the last seen equity, so the same loss does not
        trip it again on the next cycle.
        """
        if reason.recovery is not Recovery.OPERATOR:
            raise ValueError(f"{reason.value} recovers by {reason.recovery.value}, not by an operator clear")
        now = ensure_utc(now)
        if reason is ReasonCode.DRAWDOWN and self._last_equity_usd is not None:
            self._equity_peak_usd = self._last_equity_usd
        return self._clear(reason, detail, now)

    def alert_snapshot(self, snapshot: RiskSnapshot, now: datetime) -> AlertSnapshot:
        """Measure what ``evaluate_alerts`` judges from this snapshot and the engine's trackers."""
        now = ensure_utc(now)
        ages = [mark_age_seconds(snapshot, sym, now) for sym in snapshot.symbols]
        oldest: float | None = 0.0
        if any(a is None for a in ages):
            oldest = None
        elif ages:
            oldest = max(a for a in ages if a is not None)
        return AlertSnapshot(
            daily_pnl_pct=daily_pnl_pct(self._daily, snapshot, now),
            error_rate_pct=snapshot.error_rate_pct,
            open_positions=snapshot.open_positions_count,
            market_data_age_seconds=oldest,
        )

    # --- persistence ----------------------------------------------------------------------------------------

    def export_state(self) -> dict[str, object]:
        """Return the engine state as plain values (Decimal and aware datetimes as leaves)."""
        return {
            "version": STATE_SCHEMA_VERSION,
            "state": self.state.value,
            "reasons": [r.to_dict() for r in self._sorted_reasons()],
            "daily_pnl": self._daily.to_dict() if self._daily is not None else None,
            "equity_peak_usd": self._equity_peak_usd,
            "last_equity_usd": self._last_equity_usd,
            "last_unrealized_pnl_usd": self._last_unrealized_usd,
            "control_kill_switch": self._control_kill_switch,
            "control_reduce_only": self._control_reduce_only,
            "order_times": list(self._order_times),
        }

    @classmethod
    def restore(cls, config: RiskConfig, data: Mapping[str, object]) -> RiskEngine:
        """Rebuild an engine from ``export_state()`` output; corrupted data raises ``StateIntegrityError``."""
        where = "risk_engine"
        d = serde.expect_mapping(data, where)
        serde.expect_keys(d, _STATE_KEYS, where)
        version = serde.read_int(d["version"], f"{where}.version")
        if version != STATE_SCHEMA_VERSION:
            raise StateIntegrityError(f"{where}.version: unsupported version {version}")
        engine = cls(config)
        for i, item in enumerate(serde.read_list(d["reasons"], f"{where}.reasons")):
            reason = ActiveReason.from_dict(item, f"{where}.reasons[{i}]")
            if reason.code in engine._reasons:
                raise StateIntegrityError(f"{where}.reasons: duplicate reason {reason.code.value}")
            engine._reasons[reason.code] = reason
        stated = serde.read_enum(TradingState, d["state"], f"{where}.state")
        if stated is not engine.state:
            raise StateIntegrityError(
                f"{where}.state: {stated.value} does not match its reasons ({engine.state.value})"
            )
        daily = d["daily_pnl"]
        engine._daily = DailyPnlTracker.from_dict(daily) if daily is not None else None
        engine._equity_peak_usd = serde.read_decimal(d["equity_peak_usd"], f"{where}.equity_peak_usd")
        engine._last_equity_usd = serde.read_optional_decimal(
            d["last_equity_usd"], f"{where}.last_equity_usd"
        )
        engine._last_unrealized_usd = serde.read_decimal(
            d["last_unrealized_pnl_usd"], f"{where}.last_unrealized_pnl_usd"
        )
        engine._control_kill_switch = serde.read_bool(
            d["control_kill_switch"], f"{where}.control_kill_switch"
        )
        engine._control_reduce_only = serde.read_bool(
            d["control_reduce_only"], f"{where}.control_reduce_only"
        )
        engine._order_times = [
            serde.read_datetime(t, f"{where}.order_times[{i}]")
            for i, t in enumerate(serde.read_list(d["order_times"], f"{where}.order_times"))
        ]
        if engine._equity_peak_usd < 0:
            raise StateIntegrityError(f"{where}.equity_peak_usd: negative peak {engine._equity_peak_usd}")
        return engine

    # --- internals ------------------------------------------------------------------------------------------

    def _sorted_reasons(self) -> list[ActiveReason]:
        order = list(ReasonCode)
        return sorted(self._reasons.values(), key=lambda r: order.index(r.code))

    def _sync_controls(self, now: datetime) -> list[Transition]:
        transitions: list[Transition] = []
        if self.kill_switch_active:
            source = "config" if self._config.kill_switch_enabled else "runtime control"
            transitions += self._raise(
                Breach(ReasonCode.KILL_SWITCH, TradingState.HALTED, f"kill switch on ({source})"), now
            )
        else:
            transitions += self._clear(ReasonCode.KILL_SWITCH, "kill switch off", now)
        if self.reduce_only_active:
            source = "config" if self._config.reduce_only_mode else "runtime control"
            if not (self._config.reduce_only_mode or self._control_reduce_only):
                source = "PostgreSQL down, PERPS_WARM_OUTAGE_MODE=reduce_only"
            transitions += self._raise(
                Breach(
                    ReasonCode.REDUCE_ONLY_MODE, TradingState.REDUCE_ONLY, f"reduce-only mode on ({source})"
                ),
                now,
            )
        else:
            transitions += self._clear(ReasonCode.REDUCE_ONLY_MODE, "reduce-only mode off", now)
        return transitions

    def _raise(self, breach: Breach, now: datetime) -> list[Transition]:
        existing = self._reasons.get(breach.reason)
        if existing is not None and existing.level is breach.level:
            return []
        before = self.state
        since = existing.since if existing is not None else now
        self._reasons[breach.reason] = ActiveReason(breach.reason, breach.level, breach.detail, since)
        return [Transition(before, self.state, breach.reason, breach.detail, now)]

    def _clear(self, code: ReasonCode, detail: str, now: datetime) -> list[Transition]:
        if code not in self._reasons:
            return []
        before = self.state
        del self._reasons[code]
        return [Transition(before, self.state, code, detail, now, cleared=True)]

    def _prune_order_times(self, now: datetime) -> None:
        since = now - ORDER_RATE_WINDOW
        self._order_times = [t for t in self._order_times if t > since][-_MAX_ORDER_TIMES:]


def _names(codes: frozenset[ReasonCode]) -> str:
    return ", ".join(sorted(c.value for c in codes))
