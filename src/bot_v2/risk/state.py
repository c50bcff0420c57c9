"""Trading states, the reasons that impose them, transition events, and the daily PnL tracker.

The trading state is derived, never set directly: it is the most severe level among the active reasons
(``ACTIVE`` when none is active). Raising or clearing a reason yields a ``Transition`` the caller persists.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal

from bot_v2.errors import StateIntegrityError
from bot_v2.risk import serde

__all__ = [
    "ActiveReason",
    "DailyPnlTracker",
    "ReasonCode",
    "Recovery",
    "TradingState",
    "Transition",
    "unhealthy_reasons",
]


class TradingState(enum.StrEnum):
    """What the bot may do: anything, only shrink positions, or nothing."""

    ACTIVE = "ACTIVE"
    REDUCE_ONLY = "REDUCE_ONLY"
    HALTED = "HALTED"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    def worst(self, other: TradingState) -> TradingState:
        """Return the more restrictive of the two states."""
        return self if self.severity >= other.severity else other


_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCE_ONLY: 1, TradingState.HALTED: 2}


class Recovery(enum.StrEnum):
    """How an active reason goes away."""

    AUTO = "AUTO"  # cleared by the next cycle whose snapshot no longer trips it
    DAY_ROLLOVER = "DAY_ROLLOVER"  # cleared at 00:00 UTC
    CONTROL = "CONTROL"  # follows config + runtime control values
    OPERATOR = "OPERATOR"  # cleared only by an explicit ``RiskEngine.clear_reason``


class ReasonCode(enum.StrEnum):
    """Why the trading state is not ACTIVE."""

    KILL_SWITCH = "KILL_SWITCH"
    REDUCE_ONLY_MODE = "REDUCE_ONLY_MODE"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    DRAWDOWN = "DRAWDOWN"
    MARK_STALE = "MARK_STALE"
    VOLATILITY = "VOLATILITY"
    ERROR_RATE = "ERROR_RATE"
    LIQUIDATION_BUFFER = "LIQUIDATION_BUFFER"
    RECONCILE_MISMATCH = "RECONCILE_MISMATCH"
    MANUAL = "MANUAL"
    STARTUP = "STARTUP"

    @property
    def recovery(self) -> Recovery:
        return _RECOVERY[self]


_RECOVERY: Mapping[ReasonCode, Recovery] = {
    ReasonCode.KILL_SWITCH: Recovery.CONTROL,
    ReasonCode.REDUCE_ONLY_MODE: Recovery.CONTROL,
    ReasonCode.DAILY_LOSS_LIMIT: Recovery.DAY_ROLLOVER,
    ReasonCode.DRAWDOWN: Recovery.OPERATOR,
    ReasonCode.MARK_STALE: Recovery.AUTO,
    ReasonCode.VOLATILITY: Recovery.AUTO,
    ReasonCode.ERROR_RATE: Recovery.AUTO,
    ReasonCode.LIQUIDATION_BUFFER: Recovery.AUTO,
    ReasonCode.RECONCILE_MISMATCH: Recovery.OPERATOR,
    ReasonCode.MANUAL: Recovery.OPERATOR,
    ReasonCode.STARTUP: Recovery.OPERATOR,
}


@dataclass(frozen=True, slots=True)
class ActiveReason:
    """One reason currently restricting trading, with the level it imposes."""

    code: ReasonCode
    level: TradingState
    detail: str
    since: datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code.value,
            "level": self.level.value,
            "detail": self.detail,
            "since": self.since,
        }

    @classmethod
    def from_dict(cls, data: object, where: str = "reason") -> ActiveReason:
        d = serde.expect_mapping(data, where)
        serde.expect_keys(d, {"code", "level", "detail", "since"}, where)
        level = serde.read_enum(TradingState, d["level"], f"{where}.level")
        if level is TradingState.ACTIVE:
            raise StateIntegrityError(f"{where}.level: a reason cannot impose ACTIVE")
        return cls(
            code=serde.read_enum(ReasonCode, d["code"], f"{where}.code"),
            level=level,
            detail=serde.read_str(d["detail"], f"{where}.detail"),
            since=serde.read_datetime(d["since"], f"{where}.since"),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """An explicit change: ``reason`` raised (or ``cleared``), moving the state ``from_state -> to_state``.

    ``from_state == to_state`` when another reason already imposed the same or a worse level; the event is
    still emitted so the event log shows every reason coming and going.
    """

    from_state: TradingState
    to_state: TradingState
    reason: ReasonCode
    detail: str
    at: datetime
    cleared: bool = False

    @property
    def changes_state(self) -> bool:
        return self.from_state is not self.to_state

    def to_dict(self) -> dict[str, object]:
        return {
            "from_state": self.from_state.value,
            "to_state": self.to_state.value,
            "reason": self.reason.value,
            "detail": self.detail,
            "at": self.at,
            "cleared": self.cleared,
        }

    @classmethod
    def from_dict(cls, data: object) -> Transition:
        where = "transition"
        d = serde.expect_mapping(data, where)
        serde.expect_keys(d, {"from_state", "to_state", "reason", "detail", "at", "cleared"}, where)
        return cls(
            from_state=serde.read_enum(TradingState, d["from_state"], f"{where}.from_state"),
            to_state=serde.read_enum(TradingState, d["to_state"], f"{where}.to_state"),
            reason=serde.read_enum(ReasonCode, d["reason"], f"{where}.reason"),
            detail=serde.read_str(d["detail"], f"{where}.detail"),
            at=serde.read_datetime(d["at"], f"{where}.at"),
            cleared=serde.read_bool(d["cleared"], f"{where}.cleared"),
        )


@dataclass(frozen=True, slots=True)
class DailyPnlTracker:
    """Today's PnL (UTC day): realized since 00:00 plus the change in unrealized since the day started.

    ``realized_pnl_usd`` accumulates what the execution layer reports per closing fill; the unrealized part is
    measured against ``unrealized_baseline_usd`` (the open positions' unrealized PnL when the day started), so
    a position carried over midnight counts only today's move.
    """

    day: date
    start_equity_usd: Decimal
    unrealized_baseline_usd: Decimal
    realized_pnl_usd: Decimal = Decimal(0)

    def pnl_usd(self, unrealized_now_usd: Decimal) -> Decimal:
        """Return today's PnL given the positions' current unrealized PnL."""
        return self.realized_pnl_usd + unrealized_now_usd - self.unrealized_baseline_usd

    def with_realized(self, amount_usd: Decimal) -> DailyPnlTracker:
        return replace(self, realized_pnl_usd=self.realized_pnl_usd + amount_usd)

    def to_dict(self) -> dict[str, object]:
        return {
            "day": self.day.isoformat(),
            "start_equity_usd": self.start_equity_usd,
            "unrealized_baseline_usd": self.unrealized_baseline_usd,
            "realized_pnl_usd": self.realized_pnl_usd,
        }

    @classmethod
    def from_dict(cls, data: object) -> DailyPnlTracker:
        where = "daily_pnl"
        d = serde.expect_mapping(data, where)
        serde.expect_keys(
            d, {"day", "start_equity_usd", "unrealized_baseline_usd", "realized_pnl_usd"}, where
        )
        return cls(
            day=serde.read_date(d["day"], f"{where}.day"),
            start_equity_usd=serde.read_decimal(d["start_equity_usd"], f"{where}.start_equity_usd"),
            unrealized_baseline_usd=serde.read_decimal(
                d["unrealized_baseline_usd"], f"{where}.unrealized_baseline_usd"
            ),
            realized_pnl_usd=serde.read_decimal(d["realized_pnl_usd"], f"{where}.realized_pnl_usd"),
        )


def unhealthy_reasons(state: TradingState, reasons: Mapping[ReasonCode, ActiveReason]) -> tuple[str, ...]:
    """The reason codes that make the bot unhealthy (``health.json`` ``ok: false``), sorted.

    HALTED for any reason is unhealthy: nothing trades. REDUCE_ONLY is unhealthy only by a latch -- a reason
    that stays until 00:00 UTC or an operator clears it (daily loss, drawdown, reconcile mismatch, ...): the
    bot will not heal by itself. An operator's reduce-only mode and a passing condition (stale marks) are
    the bot doing what it was told, not a fault.
    """
    if state is TradingState.HALTED:
        return tuple(sorted(code.value for code in reasons))
    if state is TradingState.REDUCE_ONLY:
        latched = (Recovery.OPERATOR, Recovery.DAY_ROLLOVER)
        return tuple(sorted(code.value for code in reasons if code.recovery in latched))
    return ()
