"""Operator controls that reach a running bot: the kill switch and reduce-only mode.

``RISK_KILL_SWITCH_ENABLED`` / ``RISK_REDUCE_ONLY_MODE`` are read from the environment ONCE, at start (they
are part of ``RiskConfig``). The runtime path is the CONTROL key ``control:operator``::

    {"kill_switch": bool, "reduce_only": bool, "updated_at": aware datetime, "source": str}

written by ``set_operator_control`` (the CLI's ``--kill-switch on|off`` / ``--reduce-only-mode on|off``) and
read by the loop at the start of every cycle. The effective control is the start-up config OR the key: the
key can add a restriction to a running bot and lift one it added, but a restriction set in the environment
stays until the bot is restarted without it. A key that does not have exactly this shape is rejected with a
``control_rejected`` event and the last good value is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot_v2.errors import StateIntegrityError
from bot_v2.orchestration.keys import CONTROL_KEY
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.risk import serde

__all__ = [
    "ControlPoll",
    "ControlWatcher",
    "OperatorControl",
    "parse_operator_control",
    "set_operator_control",
]

_FIELDS = frozenset({"kill_switch", "reduce_only", "updated_at", "source"})


@dataclass(frozen=True, slots=True)
class OperatorControl:
    """The operator's runtime controls."""

    kill_switch: bool
    reduce_only: bool
    updated_at: datetime
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kill_switch": self.kill_switch,
            "reduce_only": self.reduce_only,
            "updated_at": self.updated_at,
            "source": self.source,
        }


def parse_operator_control(value: object) -> OperatorControl:
    """Read a stored control value strictly; raise ``StateIntegrityError`` naming what is wrong."""
    where = CONTROL_KEY
    data = serde.expect_mapping(value, where)
    serde.expect_keys(data, _FIELDS, where)
    return OperatorControl(
        kill_switch=serde.read_bool(data["kill_switch"], f"{where}.kill_switch"),
        reduce_only=serde.read_bool(data["reduce_only"], f"{where}.reduce_only"),
        updated_at=serde.read_datetime(data["updated_at"], f"{where}.updated_at"),
        source=serde.read_str(data["source"], f"{where}.source"),
    )


async def set_operator_control(
    state: StateStore, kill_switch: bool | None, reduce_only: bool | None, source: str
) -> dict[str, Any]:
    """Set the kill switch and/or reduce-only mode for a running (or the next) bot; ``None`` keeps a value.

    A missing or corrupted current value counts as both off. Returns the value written (a plain mapping).
    """
    current: OperatorControl | None = None
    try:
        raw = await state.get_state(CONTROL_KEY)
        current = None if raw is None else parse_operator_control(raw)
    except StateIntegrityError:
        current = None
    control = OperatorControl(
        kill_switch=kill_switch if kill_switch is not None else (current.kill_switch if current else False),
        reduce_only=reduce_only if reduce_only is not None else (current.reduce_only if current else False),
        updated_at=datetime.now(UTC),
        source=source,
    )
    value = control.to_dict()
    await state.set_state(CONTROL_KEY, value, StateCategory.CONTROL)
    return value


@dataclass(frozen=True, slots=True)
class ControlPoll:
    """One read of the control key: the control in force, whether it changed, and a rejection if any."""

    control: OperatorControl | None
    changed: bool
    error: str | None = None


class ControlWatcher:
    """Reads ``control:operator`` each cycle, keeping the last good value when the key is bad."""

    def __init__(self) -> None:
        self.last_good: OperatorControl | None = None
        self._last_error: str | None = None

    async def poll(self, state: StateStore) -> ControlPoll:
        """Read the key. A rejected value is reported once per distinct error (not every cycle)."""
        raw = await state.get_state(CONTROL_KEY)
        if raw is None:
            changed = self.last_good is not None
            self.last_good = None
            self._last_error = None
            return ControlPoll(None, changed)
        try:
            control = parse_operator_control(raw)
        except StateIntegrityError as exc:
            message = str(exc)
            fresh = message != self._last_error
            self._last_error = message
            return ControlPoll(self.last_good, False, message if fresh else None)
        self._last_error = None
        changed = control != self.last_good
        self.last_good = control
        return ControlPoll(control, changed)
