"""Operator controls: set, merge, strict parsing, last good value kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot_v2.errors import StateIntegrityError
from bot_v2.orchestration import keys
from bot_v2.orchestration.controls import (
    ClearRequest,
    ControlWatcher,
    apply_clear_request,
    parse_operator_control,
    request_reason_clear,
    set_operator_control,
)
from bot_v2.risk import ReasonCode, RiskConfig, RiskEngine, TradingState
from bot_v2.state import StateCategory, StateManager


async def test_set_merges_with_the_current_value(state: StateManager) -> None:
    first = await set_operator_control(state, kill_switch=True, reduce_only=None, source="cli")
    assert first["kill_switch"] is True and first["reduce_only"] is False
    second = await set_operator_control(state, kill_switch=None, reduce_only=True, source="cli")
    assert second["kill_switch"] is True and second["reduce_only"] is True
    stored = parse_operator_control(await state.get_state(keys.CONTROL_KEY))
    assert stored.kill_switch and stored.reduce_only and stored.source == "cli"
    assert stored.updated_at.tzinfo is not None


@pytest.mark.parametrize(
    "value",
    [
        "on",
        {"kill_switch": True},
        {"kill_switch": 1, "reduce_only": False, "updated_at": datetime.now(UTC), "source": "x"},
        {"kill_switch": True, "reduce_only": False, "updated_at": "yesterday", "source": "x"},
        {
            "kill_switch": True,
            "reduce_only": False,
            "updated_at": datetime.now(UTC),
            "source": "x",
            "extra": 1,
        },
    ],
)
def test_malformed_values_are_rejected(value: object) -> None:
    with pytest.raises(StateIntegrityError):
        parse_operator_control(value)


async def test_watcher_keeps_last_good_and_reports_each_error_once(state: StateManager) -> None:
    watcher = ControlWatcher()
    assert (await watcher.poll(state)).control is None
    await set_operator_control(state, kill_switch=True, reduce_only=False, source="t")
    poll = await watcher.poll(state)
    assert poll.changed and poll.control is not None and poll.control.kill_switch
    await state.set_state(keys.CONTROL_KEY, {"kill_switch": "no"}, StateCategory.CONTROL)
    bad = await watcher.poll(state)
    assert bad.error is not None and bad.control == poll.control and not bad.changed
    again = await watcher.poll(state)
    assert again.error is None and again.control == poll.control
    await set_operator_control(state, kill_switch=False, reduce_only=False, source="t")
    assert (await watcher.poll(state)).changed


async def test_set_over_a_corrupted_value_starts_from_off(state: StateManager) -> None:
    await state.set_state(keys.CONTROL_KEY, [1, 2], StateCategory.CONTROL)
    value = await set_operator_control(state, kill_switch=None, reduce_only=True, source="cli")
    assert value["kill_switch"] is False and value["reduce_only"] is True


# --- clear requests -----------------------------------------------------------------------------------------


def _request(request_id: int, reason: str = "DRAWDOWN") -> dict[str, object]:
    return {"request_id": request_id, "reason": reason, "requested_at": datetime.now(UTC), "source": "t"}


def _control(requests: list[dict[str, object]]) -> dict[str, object]:
    return {
        "kill_switch": False,
        "reduce_only": False,
        "updated_at": datetime.now(UTC),
        "source": "t",
        "clear_requests": requests,
    }


def test_clear_requests_parse_and_old_records_without_them_still_parse() -> None:
    control = parse_operator_control(_control([_request(1), _request(2, "RECONCILE_MISMATCH")]))
    assert [(r.request_id, r.reason) for r in control.clear_requests] == [
        (1, ReasonCode.DRAWDOWN),
        (2, ReasonCode.RECONCILE_MISMATCH),
    ]
    legacy = _control([])
    del legacy["clear_requests"]
    assert parse_operator_control(legacy).clear_requests == ()


@pytest.mark.parametrize(
    "requests",
    [
        [_request(1, "KILL_SWITCH")],  # not operator-clearable
        [_request(1, "NOPE")],
        [_request(0)],
        [_request(2), _request(1)],
        [_request(1), _request(1)],
        [{"request_id": 1, "reason": "DRAWDOWN"}],
        "DRAWDOWN",
    ],
)
def test_malformed_clear_requests_are_rejected(requests: object) -> None:
    with pytest.raises(StateIntegrityError):
        parse_operator_control(_control(requests))  # type: ignore[arg-type]


async def test_request_reason_clear_numbers_requests_and_keeps_the_controls(state: StateManager) -> None:
    await set_operator_control(state, kill_switch=True, reduce_only=None, source="cli")
    first, _ = await request_reason_clear(state, ReasonCode.DRAWDOWN, source="cli")
    second, control = await request_reason_clear(state, ReasonCode.MANUAL, source="cli")
    assert (first.request_id, second.request_id) == (1, 2)
    assert control.kill_switch and [r.request_id for r in control.clear_requests] == [1, 2]
    # the bot acknowledged #1 and #2: the next request drops them and continues the numbering
    await state.set_state(
        keys.CLEAR_ACK_KEY, {"last_request_id": 2, "updated_at": datetime.now(UTC)}, StateCategory.CONTROL
    )
    third, control = await request_reason_clear(state, ReasonCode.STARTUP, source="cli")
    assert third.request_id == 3 and [r.request_id for r in control.clear_requests] == [3]
    # switching a control keeps the pending requests
    value = await set_operator_control(state, kill_switch=False, reduce_only=None, source="cli")
    assert [r["request_id"] for r in value["clear_requests"]] == [3]


async def test_request_reason_clear_refuses_to_overwrite_a_corrupted_control(state: StateManager) -> None:
    await state.set_state(keys.CONTROL_KEY, {"kill_switch": "yes"}, StateCategory.CONTROL)
    with pytest.raises(StateIntegrityError, match="--kill-switch"):
        await request_reason_clear(state, ReasonCode.DRAWDOWN, source="cli")
    with pytest.raises(ValueError, match="cannot be cleared"):
        await request_reason_clear(state, ReasonCode.KILL_SWITCH, source="cli")


def test_apply_clear_request_outcomes() -> None:
    now = datetime.now(UTC)
    engine = RiskEngine(RiskConfig())
    engine.raise_reason(ReasonCode.MANUAL, TradingState.HALTED, "paused", now)
    late = ClearRequest(1, ReasonCode.MANUAL, now - timedelta(seconds=1), "t")
    assert apply_clear_request(engine, late, now)[0] == "raised_after_request"
    assert engine.state is TradingState.HALTED
    request = ClearRequest(2, ReasonCode.MANUAL, now + timedelta(seconds=1), "t")
    outcome, transitions = apply_clear_request(engine, request, now + timedelta(seconds=2))
    assert outcome == "cleared" and transitions[0].cleared and engine.state is TradingState.ACTIVE
    assert apply_clear_request(engine, request, now)[0] == "not_active"


async def test_watcher_applies_each_request_once_and_doubts_an_unreadable_ack(state: StateManager) -> None:
    await request_reason_clear(state, ReasonCode.DRAWDOWN, source="t")
    watcher = ControlWatcher()
    assert await watcher.load_acknowledged(state) is None
    poll = await watcher.poll(state)
    pending = watcher.pending_clears(poll.control)
    assert [r.request_id for r in pending] == [1]
    ack = watcher.acknowledge(pending, datetime.now(UTC))
    assert ack["last_request_id"] == 1 and watcher.pending_clears(poll.control) == []
    await state.set_state(keys.CLEAR_ACK_KEY, {"last_request_id": "one"}, StateCategory.CONTROL)
    fresh = ControlWatcher()
    error = await fresh.load_acknowledged(state)
    assert error is not None and keys.CLEAR_ACK_KEY in error
    assert fresh.pending_clears((await fresh.poll(state)).control) == []  # taken as applied
