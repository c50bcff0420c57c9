"""The operator's reconcile request in ``control:operator``: strict parsing, ids, acknowledgement."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot_v2.errors import StateIntegrityError
from bot_v2.orchestration import keys
from bot_v2.orchestration.controls import (
    ControlWatcher,
    parse_operator_control,
    request_reason_clear,
    request_reconcile,
    set_operator_control,
)
from bot_v2.risk import ReasonCode
from bot_v2.state import StateCategory, StateManager

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def _control(**extra: object) -> dict[str, object]:
    return {"kill_switch": False, "reduce_only": False, "updated_at": NOW, "source": "t", **extra}


def test_the_request_is_optional_and_read_strictly() -> None:
    assert parse_operator_control(_control()).reconcile_request is None
    assert parse_operator_control(_control(reconcile_request=None)).reconcile_request is None
    good = {"request_id": 3, "requested_at": NOW, "source": "cli"}
    request = parse_operator_control(_control(reconcile_request=good)).reconcile_request
    assert request is not None and request.request_id == 3 and request.to_dict() == good


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"request_id": 0, "requested_at": NOW, "source": "cli"}, "request_id"),
        ({"request_id": True, "requested_at": NOW, "source": "cli"}, "request_id"),
        ({"request_id": 1, "requested_at": "now", "source": "cli"}, "requested_at"),
        ({"request_id": 1, "requested_at": NOW}, "reconcile_request"),
        ({"request_id": 1, "requested_at": NOW, "source": "cli", "full": True}, "reconcile_request"),
        (7, "reconcile_request"),
    ],
)
def test_malformed_requests_are_rejected_naming_the_field(value: object, field: str) -> None:
    with pytest.raises(StateIntegrityError, match=field):
        parse_operator_control(_control(reconcile_request=value))


async def test_ids_increase_past_what_the_bot_ran_and_other_controls_keep_the_request(
    state: StateManager,
) -> None:
    first, control = await request_reconcile(state, source="cli")
    assert first.request_id == 1 and control.reconcile_request == first
    assert not control.kill_switch and not control.reduce_only

    await set_operator_control(state, kill_switch=True, reduce_only=None, source="cli")
    await request_reason_clear(state, ReasonCode.MANUAL, source="cli")
    kept = parse_operator_control(await state.get_state(keys.CONTROL_KEY))
    assert kept.reconcile_request == first and kept.kill_switch and len(kept.clear_requests) == 1

    ack = {"last_request_id": 5, "updated_at": NOW}
    await state.set_state(keys.RECONCILE_ACK_KEY, ack, StateCategory.CONTROL)
    second, control = await request_reconcile(state, source="cli")
    assert second.request_id == 6 and control.kill_switch  # the kill switch is untouched


async def test_a_request_keeps_who_set_the_controls_and_the_watcher_sees_it_at_its_next_poll(
    state: StateManager,
) -> None:
    """A --reconcile / --clear-reason request adds itself: the key's source and updated_at still name who set
    the kill switch (no bot need run in between), and the next poll (the next cycle) finds the request."""
    await set_operator_control(state, kill_switch=True, reduce_only=None, source="cli:ops@h1:1 (SEV-1)")
    set_by = parse_operator_control(await state.get_state(keys.CONTROL_KEY))
    watcher = ControlWatcher()
    assert (await watcher.poll(state)).changed and not (await watcher.poll(state)).changed

    request, _ = await request_reconcile(state, source="cli:dev@h2:2 (after the fix)")
    clear, control = await request_reason_clear(state, ReasonCode.MANUAL, source="cli:dev@h2:3 (resume)")
    stored = parse_operator_control(await state.get_state(keys.CONTROL_KEY))
    assert stored == control and stored.kill_switch
    assert (stored.source, stored.updated_at) == (set_by.source, set_by.updated_at)  # the actor survives
    assert stored.reconcile_request == request and stored.clear_requests == (clear,)

    poll = await watcher.poll(state)
    assert poll.changed and poll.control == stored
    assert watcher.pending_reconcile(poll.control) == request and watcher.pending_clears(poll.control) == [
        clear
    ]


async def test_the_first_request_stamps_a_new_control_with_its_requester(state: StateManager) -> None:
    request, control = await request_reconcile(state, source="cli:dev@h2:2")
    assert not control.kill_switch and not control.reduce_only
    assert (control.source, control.updated_at) == (request.source, request.requested_at)


async def test_a_corrupted_control_key_is_not_overwritten(state: StateManager) -> None:
    await state.set_state(keys.CONTROL_KEY, {"kill_switch": "yes"}, StateCategory.CONTROL)
    with pytest.raises(StateIntegrityError, match="--kill-switch"):
        await request_reconcile(state, source="cli")
    assert await state.get_state(keys.CONTROL_KEY) == {"kill_switch": "yes"}


async def test_watcher_runs_each_request_once(state: StateManager) -> None:
    watcher = ControlWatcher()
    assert await watcher.load_reconcile_acknowledged(state) is None
    request, control = await request_reconcile(state, source="cli")
    assert watcher.pending_reconcile(control) == request
    ack = watcher.acknowledge_reconcile(request, NOW)
    assert ack == {"last_request_id": 1, "updated_at": NOW}
    assert watcher.pending_reconcile(control) is None
    assert watcher.pending_reconcile(None) is None


async def test_an_unreadable_acknowledgement_counts_the_stored_request_as_run(state: StateManager) -> None:
    request, control = await request_reconcile(state, source="cli")
    await state.set_state(keys.RECONCILE_ACK_KEY, {"last_request_id": -1}, StateCategory.CONTROL)
    watcher = ControlWatcher()
    error = await watcher.load_reconcile_acknowledged(state)
    assert error is not None and keys.RECONCILE_ACK_KEY in error
    assert watcher.pending_reconcile(control) is None and watcher.applied_reconcile_id == request.request_id
