"""Operator controls that reach a running bot: kill switch, reduce-only mode, clearing latched reasons.

``RISK_KILL_SWITCH_ENABLED`` / ``RISK_REDUCE_ONLY_MODE`` are read from the environment ONCE, at start (they
are part of ``RiskConfig``). The runtime path is the CONTROL key ``control:operator``::

    {"kill_switch": bool, "reduce_only": bool, "updated_at": aware datetime, "source": str,
     "clear_requests": [{"request_id": int, "reason": str, "requested_at": aware datetime, "source": str}]}

written by ``set_operator_control`` (the CLI's ``--kill-switch on|off`` / ``--reduce-only-mode on|off``) and
``request_reason_clear`` (``--clear-reason CODE``), and read by the loop at the start of every cycle. The
effective control is the start-up config OR the key: the key can add a restriction to a running bot and lift
one it added, but a restriction set in the environment stays until the bot is restarted without it. A key
that does not have exactly this shape (``clear_requests`` may be absent) is rejected with a
``control_rejected`` event and the last good value is kept.

A request leaves the key's ``updated_at`` and ``source`` alone (who last set the kill switch / reduce-only
mode); it carries its own ``requested_at`` and ``source``, and the bot tells a new one by its id.

Clear requests carry increasing ids. The bot applies each one with an id above the last it applied
(``RiskEngine.clear_reason``; a reason raised AFTER the request was made is left alone, so a stale request
never lifts a new trip), records a ``control_applied`` event, and acknowledges by writing the last applied id
to ``control:applied`` in the same batch as the guard state it changed. The CLI drops acknowledged requests
when it adds one. Only operator-recovered reasons (``OPERATOR_CLEARABLE``) can be requested.

A reconcile request (``--reconcile``, ``request_reconcile``) is the optional field
``reconcile_request: {"request_id": int, "requested_at": aware datetime, "source": str}`` -- only the newest
matters: requests the bot has not run yet coalesce into one run. The bot runs order discovery (with a full
position check) in the cycle that sees an id above the last it ran, and acknowledges it in
``control:reconcile_applied`` (``{last_request_id, updated_at}``) in that cycle's batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bot_v2.errors import StateIntegrityError
from bot_v2.orchestration.keys import CLEAR_ACK_KEY, CONTROL_KEY, RECONCILE_ACK_KEY
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.risk import ReasonCode, Recovery, RiskEngine, Transition, serde

__all__ = [
    "OPERATOR_CLEARABLE",
    "ClearRequest",
    "ControlPoll",
    "ControlWatcher",
    "OperatorControl",
    "ReconcileRequest",
    "apply_clear_request",
    "parse_clear_ack",
    "parse_operator_control",
    "parse_reconcile_ack",
    "read_request_head",
    "request_reason_clear",
    "request_reconcile",
    "set_operator_control",
]

#: Reasons an operator may clear (``RiskEngine.clear_reason``): DRAWDOWN, RECONCILE_MISMATCH, MANUAL, STARTUP.
OPERATOR_CLEARABLE: tuple[ReasonCode, ...] = tuple(c for c in ReasonCode if c.recovery is Recovery.OPERATOR)

_FIELDS = frozenset({"kill_switch", "reduce_only", "updated_at", "source"})
_OPTIONAL_FIELDS = frozenset({"clear_requests", "reconcile_request"})
_REQUEST_FIELDS = frozenset({"request_id", "reason", "requested_at", "source"})
_RECONCILE_FIELDS = frozenset({"request_id", "requested_at", "source"})
_ACK_FIELDS = frozenset({"last_request_id", "updated_at"})
#: Pending clear requests kept in the key at most (the oldest are dropped).
_MAX_PENDING = 20


def read_request_head(data: Mapping[str, object], where: str) -> tuple[int, datetime, str]:
    """Read what every operator request carries -- its id (>= 1), when and by whom -- (also for emergencies)."""
    request_id = serde.read_int(data["request_id"], f"{where}.request_id")
    if request_id < 1:
        raise StateIntegrityError(f"{where}.request_id: must be >= 1, got {request_id}")
    requested_at = serde.read_datetime(data["requested_at"], f"{where}.requested_at")
    return request_id, requested_at, serde.read_str(data["source"], f"{where}.source")


@dataclass(frozen=True, slots=True)
class ClearRequest:
    """An operator's request to clear one latched reason."""

    request_id: int
    reason: ReasonCode
    requested_at: datetime
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "reason": self.reason.value,
            "requested_at": self.requested_at,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, value: object, where: str) -> ClearRequest:
        """Read one stored request strictly (``StateIntegrityError`` naming the field)."""
        data = serde.expect_mapping(value, where)
        serde.expect_keys(data, _REQUEST_FIELDS, where)
        request_id, requested_at, source = read_request_head(data, where)
        reason = serde.read_enum(ReasonCode, data["reason"], f"{where}.reason")
        if reason not in OPERATOR_CLEARABLE:
            raise StateIntegrityError(f"{where}.reason: {reason.value} cannot be cleared by an operator")
        return cls(request_id, reason, requested_at, source)


@dataclass(frozen=True, slots=True)
class ReconcileRequest:
    """An operator's request that the running bot reconcile with the exchange now."""

    request_id: int
    requested_at: datetime
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "requested_at": self.requested_at, "source": self.source}

    @classmethod
    def from_dict(cls, value: object, where: str) -> ReconcileRequest:
        """Read the stored request strictly (``StateIntegrityError`` naming the field)."""
        data = serde.expect_mapping(value, where)
        serde.expect_keys(data, _RECONCILE_FIELDS, where)
        return cls(*read_request_head(data, where))


@dataclass(frozen=True, slots=True)
class OperatorControl:
    """The operator's runtime controls."""

    kill_switch: bool
    reduce_only: bool
    updated_at: datetime
    source: str
    clear_requests: tuple[ClearRequest, ...] = ()
    reconcile_request: ReconcileRequest | None = None

    def to_dict(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "kill_switch": self.kill_switch,
            "reduce_only": self.reduce_only,
            "updated_at": self.updated_at,
            "source": self.source,
            "clear_requests": [r.to_dict() for r in self.clear_requests],
        }
        if self.reconcile_request is not None:
            value["reconcile_request"] = self.reconcile_request.to_dict()
        return value


def parse_operator_control(value: object) -> OperatorControl:
    """Read a stored control value strictly; raise ``StateIntegrityError`` naming what is wrong."""
    where = CONTROL_KEY
    data = serde.expect_mapping(value, where)
    serde.expect_keys(data, _FIELDS, where, optional=_OPTIONAL_FIELDS)
    return OperatorControl(
        kill_switch=serde.read_bool(data["kill_switch"], f"{where}.kill_switch"),
        reduce_only=serde.read_bool(data["reduce_only"], f"{where}.reduce_only"),
        updated_at=serde.read_datetime(data["updated_at"], f"{where}.updated_at"),
        source=serde.read_str(data["source"], f"{where}.source"),
        clear_requests=_read_requests(data.get("clear_requests", []), f"{where}.clear_requests"),
        reconcile_request=(
            None
            if data.get("reconcile_request") is None
            else ReconcileRequest.from_dict(data["reconcile_request"], f"{where}.reconcile_request")
        ),
    )


def _read_requests(value: object, where: str) -> tuple[ClearRequest, ...]:
    requests = tuple(
        ClearRequest.from_dict(item, f"{where}[{i}]") for i, item in enumerate(serde.read_list(value, where))
    )
    ids = [r.request_id for r in requests]
    if ids != sorted(set(ids)):
        raise StateIntegrityError(f"{where}: request ids must be unique and increasing, got {ids}")
    return requests


def parse_clear_ack(value: object, where: str = CLEAR_ACK_KEY) -> int:
    """Read ``control:applied`` strictly; return the last applied clear request id."""
    data = serde.expect_mapping(value, where)
    serde.expect_keys(data, _ACK_FIELDS, where)
    serde.read_datetime(data["updated_at"], f"{where}.updated_at")
    last = serde.read_int(data["last_request_id"], f"{where}.last_request_id")
    if last < 0:
        raise StateIntegrityError(f"{where}.last_request_id: must be >= 0, got {last}")
    return last


def parse_reconcile_ack(value: object) -> int:
    """Read ``control:reconcile_applied`` strictly (the same shape); return the last reconcile request run."""
    return parse_clear_ack(value, RECONCILE_ACK_KEY)


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
        clear_requests=current.clear_requests if current else (),
        reconcile_request=current.reconcile_request if current else None,
    )
    value = control.to_dict()
    await state.set_state(CONTROL_KEY, value, StateCategory.CONTROL)
    return value


async def request_reason_clear(
    state: StateStore, reason: ReasonCode, source: str
) -> tuple[ClearRequest, OperatorControl]:
    """Queue a request to clear ``reason`` for a running (or the next) bot; return it and the new control.

    Requests the bot already acknowledged are dropped. A corrupted control key is NOT overwritten (that would
    silently reset its kill switch and reduce-only values): ``StateIntegrityError`` tells the operator to set
    them explicitly first.
    """
    if reason not in OPERATOR_CLEARABLE:
        names = ", ".join(c.value for c in OPERATOR_CLEARABLE)
        raise ValueError(f"{reason.value} cannot be cleared by an operator (only {names})")
    current = await _control_to_extend(state)
    acknowledged = await _last_applied(state, CLEAR_ACK_KEY)
    pending = [r for r in (current.clear_requests if current else ()) if r.request_id > acknowledged]
    next_id = max([acknowledged, *(r.request_id for r in pending)]) + 1
    request = ClearRequest(next_id, reason, datetime.now(UTC), source)
    requests = (*pending, request)[-_MAX_PENDING:]
    return request, await _store_request(state, current, request, clear_requests=requests)


async def request_reconcile(state: StateStore, source: str) -> tuple[ReconcileRequest, OperatorControl]:
    """Ask running bots of this state to reconcile at their next cycle; return the request and the control.

    The id is above every earlier request and the last one a bot ran. A corrupted control key is NOT
    overwritten (``StateIntegrityError``), as for clear requests.
    """
    current = await _control_to_extend(state)
    ran = await _last_applied(state, RECONCILE_ACK_KEY)
    last = current.reconcile_request.request_id if current and current.reconcile_request else 0
    request = ReconcileRequest(max(last, ran) + 1, datetime.now(UTC), source)
    return request, await _store_request(state, current, request, reconcile_request=request)


async def _control_to_extend(state: StateStore) -> OperatorControl | None:
    """The control a new request is added to; a corrupted key raises rather than be reset to defaults."""
    raw = await state.get_state(CONTROL_KEY)
    try:
        return None if raw is None else parse_operator_control(raw)
    except StateIntegrityError as exc:
        raise StateIntegrityError(
            f"{exc}; set the controls explicitly first (--kill-switch on|off --reduce-only-mode on|off)"
        ) from None


async def _store_request(
    state: StateStore,
    current: OperatorControl | None,
    request: ClearRequest | ReconcileRequest,
    **changes: Any,
) -> OperatorControl:
    """Write ``current`` with ``changes`` (``request`` added); return it. ``current``'s own ``updated_at`` and
    ``source`` stay: they say who last set the kill switch / reduce-only mode, and a request carries its own
    (``requested_at``, ``source``). With no control yet, both controls are off, stamped by the requester.

    The running bot needs no stamp to notice a request: ``ControlWatcher.poll`` compares the whole value (a
    new request id differs) and the pending requests are those with an id above the last it applied."""
    base = current or OperatorControl(
        kill_switch=False, reduce_only=False, updated_at=request.requested_at, source=request.source
    )
    control = replace(base, **changes)
    await state.set_state(CONTROL_KEY, control.to_dict(), StateCategory.CONTROL)
    return control


async def _last_applied(state: StateStore, key: str) -> int:
    """The last request id a bot applied per acknowledgement ``key`` (0 when none or unreadable: then no
    request is taken as done)."""
    raw = await state.get_state(key)
    try:
        return 0 if raw is None else parse_clear_ack(raw, key)
    except StateIntegrityError:
        return 0


async def _load_applied(
    state: StateStore, key: str, assumed: Callable[[OperatorControl], int]
) -> tuple[int, str | None]:
    """Read acknowledgement ``key`` at start: (last applied id, None), or when it is unreadable
    (``assumed(control)`` -- the requests of the control key taken as done --, the error text)."""
    raw = await state.get_state(key)
    try:
        return (0 if raw is None else parse_clear_ack(raw, key)), None
    except StateIntegrityError as exc:
        error = str(exc)
    try:
        return assumed(parse_operator_control(await state.get_state(CONTROL_KEY))), error
    except StateIntegrityError:
        return 0, error


def apply_clear_request(
    risk: RiskEngine, request: ClearRequest, now: datetime
) -> tuple[str, list[Transition]]:
    """Apply one clear request: ``cleared``, ``not_active``, or ``raised_after_request`` (left alone)."""
    active = risk.reasons.get(request.reason)
    if active is None:
        return "not_active", []
    if active.since > request.requested_at:
        return "raised_after_request", []
    detail = f"cleared by operator ({request.source}, request {request.request_id})"
    return "cleared", risk.clear_reason(request.reason, now, detail)


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
        self.applied_clear_id = 0
        self.applied_reconcile_id = 0
        self._last_error: str | None = None

    async def load_acknowledged(self, state: StateStore) -> str | None:
        """Read the last applied clear request id (at start); return an error text when it is unreadable.

        Unreadable means it is unknown which requests were applied: every request in the control key is then
        taken as applied -- a latch is never cleared on doubt.
        """
        self.applied_clear_id, error = await _load_applied(
            state, CLEAR_ACK_KEY, lambda c: max((r.request_id for r in c.clear_requests), default=0)
        )
        return error

    async def load_reconcile_acknowledged(self, state: StateStore) -> str | None:
        """Read the last reconcile request id a bot ran (at start); an unreadable record counts as the
        request in the control key already run (a restarted bot reconciles at start anyway)."""
        self.applied_reconcile_id, error = await _load_applied(
            state, RECONCILE_ACK_KEY, lambda c: c.reconcile_request.request_id if c.reconcile_request else 0
        )
        return error

    def pending_reconcile(self, control: OperatorControl | None) -> ReconcileRequest | None:
        """The reconcile request of ``control`` not run yet, or None."""
        request = control.reconcile_request if control is not None else None
        if request is None or request.request_id <= self.applied_reconcile_id:
            return None
        return request

    def acknowledge_reconcile(self, request: ReconcileRequest, now: datetime) -> dict[str, Any]:
        """Mark ``request`` run; return the ``control:reconcile_applied`` value for the cycle's batch."""
        self.applied_reconcile_id = max(self.applied_reconcile_id, request.request_id)
        return {"last_request_id": self.applied_reconcile_id, "updated_at": now}

    def pending_clears(self, control: OperatorControl | None) -> list[ClearRequest]:
        """Clear requests of ``control`` not applied yet, oldest first."""
        if control is None:
            return []
        return [r for r in control.clear_requests if r.request_id > self.applied_clear_id]

    def acknowledge(self, requests: Sequence[ClearRequest], now: datetime) -> dict[str, Any]:
        """Mark ``requests`` applied; return the ``control:applied`` value to store with the guard state."""
        self.applied_clear_id = max([self.applied_clear_id, *(r.request_id for r in requests)])
        return {"last_request_id": self.applied_clear_id, "updated_at": now}

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
