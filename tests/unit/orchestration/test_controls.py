"""Operator controls: set, merge, strict parsing, last good value kept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot_v2.errors import StateIntegrityError
from bot_v2.orchestration import keys
from bot_v2.orchestration.controls import ControlWatcher, parse_operator_control, set_operator_control
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
