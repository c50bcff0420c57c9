"""health.json's ``ok``: HALTED, or REDUCE_ONLY by a latch, is unhealthy; chosen or passing restrictions are not."""

from __future__ import annotations

from datetime import UTC, datetime

from bot_v2.errors import ExchangeUnavailableError, HaltError, one_line, underlying
from bot_v2.risk import ActiveReason, ReasonCode, TradingState, unhealthy_reasons

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _reasons(*pairs: tuple[ReasonCode, TradingState]) -> dict[ReasonCode, ActiveReason]:
    return {code: ActiveReason(code, level, "x", NOW) for code, level in pairs}


def test_halted_is_unhealthy_whatever_the_reason() -> None:
    reasons = _reasons(
        (ReasonCode.KILL_SWITCH, TradingState.HALTED), (ReasonCode.MARK_STALE, TradingState.REDUCE_ONLY)
    )
    assert unhealthy_reasons(TradingState.HALTED, reasons) == ("KILL_SWITCH", "MARK_STALE")


def test_reduce_only_is_unhealthy_only_by_a_latch() -> None:
    chosen = _reasons((ReasonCode.REDUCE_ONLY_MODE, TradingState.REDUCE_ONLY))
    passing = _reasons((ReasonCode.MARK_STALE, TradingState.REDUCE_ONLY))
    latched = _reasons(
        (ReasonCode.DRAWDOWN, TradingState.REDUCE_ONLY),
        (ReasonCode.REDUCE_ONLY_MODE, TradingState.REDUCE_ONLY),
    )
    daily = _reasons((ReasonCode.DAILY_LOSS_LIMIT, TradingState.REDUCE_ONLY))
    assert unhealthy_reasons(TradingState.REDUCE_ONLY, chosen) == ()
    assert unhealthy_reasons(TradingState.REDUCE_ONLY, passing) == ()
    assert unhealthy_reasons(TradingState.REDUCE_ONLY, latched) == ("DRAWDOWN",)
    assert unhealthy_reasons(TradingState.REDUCE_ONLY, daily) == ("DAILY_LOSS_LIMIT",)
    assert unhealthy_reasons(TradingState.ACTIVE, {}) == ()


def test_a_task_groups_error_is_its_underlying_errors_one_line() -> None:
    inner = ExchangeUnavailableError("GET /accounts: connection refused")
    group = ExceptionGroup(
        "unhandled errors in a TaskGroup", [ExceptionGroup("nested", [ValueError("x"), inner])]
    )
    assert underlying(group) is inner
    assert one_line(group) == "ExchangeUnavailableError: GET /accounts: connection refused"
    assert one_line(ExceptionGroup("g", [KeyError("k")])) == "KeyError: 'k'"
    assert one_line(HaltError("a\n b")) == "HaltError: a b"
