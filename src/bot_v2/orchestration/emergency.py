"""Emergency commands: cancel all orders, flatten every position, place one order -- carried out by the bot.

``perps-bot --cancel-all [--order-symbol S]``, ``--flatten`` and ``--place-order`` queue an
``EmergencyRequest`` in the key ``control:emergency``::

    {"requests": [{"request_id": int, "action": "cancel_all" | "flatten" | "place_order",
                   "symbol": str | None, "order": {...} | None, "requested_at": aware datetime,
                   "source": str, "reason": str}]}

The bot that holds the lease carries out every request with an id above the last it applied at the start of
its next cycle (``EmergencyDesk``, after the controls and the order sync, before the strategy), through its
own order path: a flatten or a placed order is judged by the risk engine like any order (a HALTED bot sends
nothing; reduce-only orders pass REDUCE_ONLY), its intent is durable before the exchange is called, and its
fills are booked once. It acknowledges in ``control:emergency_applied`` (``{last_request_id, results,
updated_at}``, the results of the newest requests by id) in that cycle's batch; the CLI reads the result there.
When no bot holds the lease the CLI starts one itself for a single cycle with the ``hold`` strategy and orders
kept at its stop (``commands.run_emergency_once``): the same code path, so "directly" never means "around the guards".

Cancels cover the bot's own orders (client ids starting with its prefix), not orders typed into the exchange's
UI; a flatten closes the positions of the bot's book with market orders (reduce-only on derivatives).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot_v2.brokerages.base import Broker
from bot_v2.domain import (
    ClientOrderId,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
)
from bot_v2.errors import LeaseLostError, StateIntegrityError
from bot_v2.orchestration import oplog
from bot_v2.orchestration.controls import read_request_head
from bot_v2.orchestration.execution import ExecutionResult, OrderExecutor
from bot_v2.orchestration.keys import EMERGENCY_ACK_KEY, EMERGENCY_KEY
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.orchestration.tracking import OrderTracker
from bot_v2.risk import RiskSnapshot, serde

logger = logging.getLogger(__name__)

__all__ = [
    "EmergencyAction",
    "EmergencyDesk",
    "EmergencyRequest",
    "order_from_dict",
    "order_to_dict",
    "queue_emergency",
    "read_emergency_result",
]

_REQUEST_FIELDS = frozenset({"request_id", "action", "symbol", "order", "requested_at", "source", "reason"})
#: Results kept in the acknowledgement (the newest ids).
_KEEP_RESULTS = 20
_ORDER_FIELDS = (
    "symbol",
    "side",
    "order_type",
    "quantity",
    "limit_price",
    "stop_price",
    "time_in_force",
    "client_order_id",
    "reduce_only",
    "leverage",
    "post_only",
)


class EmergencyAction(enum.StrEnum):
    CANCEL_ALL = "cancel_all"
    FLATTEN = "flatten"
    PLACE_ORDER = "place_order"


def order_to_dict(request: OrderRequest) -> dict[str, Any]:
    """The order as plain strings (the control key's encoding keeps Decimals exact as text)."""
    return {
        "symbol": request.symbol,
        "side": request.side.value,
        "order_type": request.order_type.value,
        "quantity": str(request.quantity),
        "limit_price": None if request.limit_price is None else str(request.limit_price),
        "stop_price": None if request.stop_price is None else str(request.stop_price),
        "time_in_force": request.time_in_force.value,
        "client_order_id": request.client_order_id,
        "reduce_only": request.reduce_only,
        "leverage": None if request.leverage is None else str(request.leverage),
        "post_only": request.post_only,
    }


def order_from_dict(value: object, where: str) -> OrderRequest:
    """Read a stored order strictly (``StateIntegrityError`` naming the field)."""
    data = serde.expect_mapping(value, where)
    serde.expect_keys(data, frozenset(_ORDER_FIELDS), where)

    def dec(name: str) -> Decimal | None:
        raw = data[name]
        return None if raw is None else serde.read_decimal(raw, f"{where}.{name}")

    quantity = dec("quantity")
    if quantity is None:
        raise StateIntegrityError(f"{where}.quantity: required")
    try:
        request = OrderRequest(
            symbol=Symbol(serde.read_str(data["symbol"], f"{where}.symbol")),
            side=Side(serde.read_str(data["side"], f"{where}.side")),
            order_type=OrderType(serde.read_str(data["order_type"], f"{where}.order_type")),
            quantity=quantity,
            limit_price=dec("limit_price"),
            stop_price=dec("stop_price"),
            time_in_force=TimeInForce(serde.read_str(data["time_in_force"], f"{where}.time_in_force")),
            client_order_id=(
                None if data["client_order_id"] is None else ClientOrderId(str(data["client_order_id"]))
            ),
            reduce_only=serde.read_bool(data["reduce_only"], f"{where}.reduce_only"),
            leverage=dec("leverage"),
            post_only=serde.read_bool(data["post_only"], f"{where}.post_only"),
        )
        request.validate_shape()
    except ValueError as exc:
        raise StateIntegrityError(f"{where}: {exc}") from None
    return request


@dataclass(frozen=True, slots=True)
class EmergencyRequest:
    """One operator emergency command for the bot."""

    request_id: int
    action: EmergencyAction
    symbol: Symbol | None
    order: OrderRequest | None
    requested_at: datetime
    source: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "action": self.action.value,
            "symbol": self.symbol,
            "order": None if self.order is None else order_to_dict(self.order),
            "requested_at": self.requested_at,
            "source": self.source,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, value: object, where: str) -> EmergencyRequest:
        data = serde.expect_mapping(value, where)
        serde.expect_keys(data, _REQUEST_FIELDS, where)
        request_id, requested_at, source = read_request_head(data, where)
        action = serde.read_enum(EmergencyAction, data["action"], f"{where}.action")
        order = None if data["order"] is None else order_from_dict(data["order"], f"{where}.order")
        if (action is EmergencyAction.PLACE_ORDER) != (order is not None):
            raise StateIntegrityError(f"{where}.order: required for place_order and only for it")
        return cls(
            request_id=request_id,
            action=action,
            symbol=None
            if data["symbol"] is None
            else Symbol(serde.read_str(data["symbol"], f"{where}.symbol")),
            order=order,
            requested_at=requested_at,
            source=source,
            reason=serde.read_str(data["reason"], f"{where}.reason"),
        )


def _read_requests(raw: object) -> list[EmergencyRequest]:
    data = serde.expect_mapping(raw, EMERGENCY_KEY)
    serde.expect_keys(data, frozenset({"requests"}), EMERGENCY_KEY)
    items = serde.read_list(data["requests"], f"{EMERGENCY_KEY}.requests")
    return [
        EmergencyRequest.from_dict(item, f"{EMERGENCY_KEY}.requests[{i}]") for i, item in enumerate(items)
    ]


def _read_ack(raw: object) -> tuple[int, dict[str, Any]]:
    data = serde.expect_mapping(raw, EMERGENCY_ACK_KEY)
    serde.expect_keys(data, frozenset({"last_request_id", "results", "updated_at"}), EMERGENCY_ACK_KEY)
    results = serde.expect_mapping(data["results"], f"{EMERGENCY_ACK_KEY}.results")
    return serde.read_int(data["last_request_id"], f"{EMERGENCY_ACK_KEY}.last_request_id"), dict(results)


async def _applied(state: StateStore) -> tuple[int, dict[str, Any]]:
    raw = await state.get_state(EMERGENCY_ACK_KEY)
    if raw is None:
        return 0, {}
    try:
        return _read_ack(raw)
    except StateIntegrityError:
        return 0, {}


async def queue_emergency(
    state: StateStore,
    action: EmergencyAction,
    *,
    symbol: Symbol | None,
    order: OrderRequest | None,
    source: str,
    reason: str,
) -> EmergencyRequest:
    """Queue a request for the bot (acknowledged ones are dropped); return it with its id."""
    raw = await state.get_state(EMERGENCY_KEY)
    pending: list[EmergencyRequest] = []
    if raw is not None:
        try:
            pending = _read_requests(raw)
        except StateIntegrityError as exc:
            logger.warning("%s: unreadable (%s); replaced by the new request", EMERGENCY_KEY, exc)
    applied, _ = await _applied(state)
    pending = [r for r in pending if r.request_id > applied]
    next_id = max([applied, *(r.request_id for r in pending)]) + 1
    request = EmergencyRequest(next_id, action, symbol, order, datetime.now(UTC), source, reason)
    value = {"requests": [r.to_dict() for r in [*pending, request]]}
    await state.set_state(EMERGENCY_KEY, value, StateCategory.CONTROL)
    return request


async def read_emergency_result(state: StateStore, request_id: int) -> dict[str, Any] | None:
    """The bot's result for ``request_id``, or None while it has not carried it out."""
    applied, results = await _applied(state)
    if applied < request_id:
        return None
    found = results.get(str(request_id))
    return dict(found) if isinstance(found, Mapping) else {"outcome": "applied", "detail": "result not kept"}


# --- the bot's side ------------------------------------------------------------------------------------------


def _result_row(result: ExecutionResult) -> dict[str, Any]:
    return {
        "symbol": result.request.symbol,
        "side": result.request.side.value,
        "quantity": str(result.request.quantity),
        "action": result.action.value,
        "client_order_id": result.order.client_order_id if result.order is not None else None,
        "order_id": result.order.order_id if result.order is not None else None,
        "verdict": result.verdict_text,
        "error": result.error,
    }


class EmergencyDesk:
    """Carries out the queued emergency requests in the cycle that sees them (the lease holder only)."""

    def __init__(self, client_id_prefix: str) -> None:
        self.prefix = client_id_prefix
        self.applied_id = 0
        self.results: dict[str, Any] = {}
        self._loaded = False

    async def pending(self, state: StateStore) -> list[EmergencyRequest]:
        """Requests not applied yet, oldest first (an unreadable key is logged and skipped)."""
        if not self._loaded:
            self.applied_id, self.results = await _applied(state)
            self._loaded = True
        raw = await state.get_state(EMERGENCY_KEY)
        if raw is None:
            return []
        try:
            return [r for r in _read_requests(raw) if r.request_id > self.applied_id]
        except StateIntegrityError as exc:
            logger.error("emergency requests not carried out: %s", exc)
            return []

    async def carry_out(
        self,
        requests: Sequence[EmergencyRequest],
        *,
        broker: Broker,
        tracker: OrderTracker,
        executor: OrderExecutor,
        snapshot: RiskSnapshot,
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Do each request; queue the acknowledgement on the tracker's batch; return the results."""
        done: list[dict[str, Any]] = []
        for request in requests:
            started = time.perf_counter()
            if request.action is EmergencyAction.CANCEL_ALL:
                result = await self._cancel_all(broker, request.symbol)
            elif request.action is EmergencyAction.FLATTEN:
                result = await self._flatten(tracker, executor, snapshot, request.symbol, now)
            else:
                assert request.order is not None
                placed = await executor.submit(request.order, snapshot, now)
                result = {"orders": [_result_row(placed)], "outcome": placed.action.value}
            rows = result.get("orders") or []
            if rows and all(r["action"] == "rejected" and "LeaseLostError" in str(r["error"]) for r in rows):
                # nothing went out because the lease ran short: not done, the next cycle carries it out
                raise LeaseLostError(f"emergency {request.action.value} not sent: {rows[0]['error']}")
            result |= {
                "request_id": request.request_id,
                "action": request.action.value,
                "reason": request.reason,
                "source": request.source,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
                "applied_at": now,
            }
            logger.warning(
                "emergency %s (request %d by %s, reason %r): %s",
                request.action.value,
                request.request_id,
                request.source,
                request.reason,
                result["outcome"],
            )
            # acknowledged at once (the cycle's batch keeps it even if a later request fails the cycle), so a
            # request whose orders went out is never carried out twice by this process
            self.applied_id = max(self.applied_id, request.request_id)
            self.results[str(request.request_id)] = result
            newest = sorted(self.results, key=int)[-_KEEP_RESULTS:]
            self.results = {k: self.results[k] for k in newest}
            ack = {"last_request_id": self.applied_id, "results": dict(self.results), "updated_at": now}
            tracker.batch.put(EMERGENCY_ACK_KEY, ack, StateCategory.CONTROL)
            done.append(result)
        return done

    async def _cancel_all(self, broker: Broker, symbol: Symbol | None) -> dict[str, Any]:
        listed = await broker.list_orders(statuses=[OrderStatus.OPEN, OrderStatus.PENDING])
        ours = [
            o
            for o in listed
            if o.client_order_id.startswith(self.prefix) and (symbol is None or o.symbol == symbol)
        ]
        if not ours:
            oplog.cancelled_pending(0, 0, 0.0, "emergency")
            return {"cancelled": [], "failed": [], "outcome": "nothing to cancel"}
        started = time.perf_counter()
        results = await broker.cancel_orders([o.order_id for o in ours])
        cancelled = [r.order_id for r in results if r.success]
        failed = [{"order_id": r.order_id, "error": r.failure_reason} for r in results if not r.success]
        size = max(1, int(getattr(broker, "cancel_batch_size", len(ours))))
        oplog.cancelled_pending(
            len(cancelled), -(-len(ours) // size), (time.perf_counter() - started) * 1000, "emergency"
        )
        outcome = f"cancelled {len(cancelled)} of {len(ours)}"
        return {"cancelled": cancelled, "failed": failed, "outcome": outcome}

    async def _flatten(
        self,
        tracker: OrderTracker,
        executor: OrderExecutor,
        snapshot: RiskSnapshot,
        symbol: Symbol | None,
        now: datetime,
    ) -> dict[str, Any]:
        rows = []
        for sym, position in sorted(tracker.book.positions.items()):
            if position.quantity == 0 or (symbol is not None and sym != symbol):
                continue
            product = snapshot.products.get(sym)
            request = OrderRequest(
                symbol=sym,
                side=Side.SELL if position.quantity > 0 else Side.BUY,
                order_type=OrderType.MARKET,
                quantity=abs(position.quantity),
                time_in_force=TimeInForce.IOC,
                # the exchange's reduce-only flag exists for derivatives; on spot, selling what the book holds
                # is what reduces (the guards judge it as reducing either way)
                reduce_only=product is not None and product.is_derivative,
            )
            rows.append(_result_row(await executor.submit(request, snapshot, now)))
        placed = sum(1 for r in rows if r["action"] == "placed")
        outcome = f"{placed} of {len(rows)} closing orders placed" if rows else "no open position"
        return {"orders": rows, "outcome": outcome}
