"""``OrderExecutor``: guard -> durable intents -> exchange -> acknowledgements, for one cycle's orders.

The order path, in the only order it may happen (``submit_all``; ``submit`` is the one-order case):

1. ``RiskEngine.check_order`` judges every request of the cycle, in turn, against a snapshot that already
   counts the orders approved before it (``snapshot_for_next``: each at its worst case, filled or not; the
   engine's order-rate window via ``record_order``). A denial stops that order here (nothing written or sent).
2. The intents of ALL approved orders (client order id = ``client_id_prefix`` + random hex, product, side,
   size, price, type) are written in ONE awaited ``batch_write``: every intent is durable BEFORE any
   exchange call of the cycle.
3. ``broker.place_order`` for each, concurrently (at most ``max_concurrent_orders`` in flight). Every order
   gets its answer before any is judged: a business rejection marks the intent FAILED; a transient failure
   (timeout, 5xx) marks it UNKNOWN: it may have reached the exchange (or reach it a moment later), so the
   tracker looks it up by client order id on the next cycles, within ``intent_grace_seconds``, and no new
   order goes to that symbol meanwhile. Anything else propagates once the others are booked (the intent stays
   PENDING; the next start resolves it): the loop's policy halts trading.
4. Acknowledged orders are tracked; their intents become SUBMITTED in the cycle's batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot_v2.brokerages.base import Broker
from bot_v2.domain import ClientOrderId, Order, OrderRequest
from bot_v2.errors import ExchangeProtocolError, LeaseLostError, OrderDeniedError, RetryableError
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.crashpoints import CrashPoint, maybe_crash
from bot_v2.orchestration.market import unbooked_requests, with_resting
from bot_v2.orchestration.ports import StateCategory, StateStore, StateWrite
from bot_v2.orchestration.records import IntentRecord
from bot_v2.orchestration.tracking import OrderTracker
from bot_v2.risk import RiskEngine, RiskSnapshot, RiskVerdict

logger = logging.getLogger(__name__)

__all__ = ["ExecutionAction", "ExecutionResult", "OrderExecutor", "PlannedOrder", "new_client_order_id"]

#: Orders of one cycle in flight at the exchange at once.
MAX_CONCURRENT_ORDERS = 8


class ExecutionAction(enum.StrEnum):
    """What happened to one requested order."""

    PLACED = "placed"
    DENIED = "denied"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # transient failure after the intent: looked up by client id on the next cycles


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    action: ExecutionAction
    request: OrderRequest
    verdict: RiskVerdict
    order: Order | None = None
    error: str | None = None

    @property
    def verdict_text(self) -> str:
        """``pass`` or the first denying guard and its reason."""
        denials = self.verdict.denials
        if not denials:
            return "pass"
        return f"{denials[0].guard}: {denials[0].reason}"


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """An approved order with its client order id and intent, not yet durable or sent."""

    request: OrderRequest
    verdict: RiskVerdict
    intent: IntentRecord


def new_client_order_id(prefix: str) -> ClientOrderId:
    """A fresh client order id carrying the bot's prefix (the adoption filter after a crash).

    32 hex chars, time-ordered like a UUIDv7: 12 of milliseconds since the epoch, then 20 random. New
    ``intents:`` / ``orders:`` keys therefore land next to each other in the state store's B-tree index
    instead of at random pages, which keeps each cycle's commit (and the WAL checkpoints it causes) small.
    """
    millis = time.time_ns() // 1_000_000
    return ClientOrderId(f"{prefix}{millis:012x}{secrets.token_hex(10)}")


class OrderExecutor:
    """Places orders for the loop; every order passes ``risk.check_order`` first."""

    def __init__(
        self,
        *,
        broker: Broker,
        state: StateStore,
        risk: RiskEngine,
        tracker: OrderTracker,
        events: EventStore,
        metrics: BotMetrics,
        client_id_prefix: str,
        crash_point: CrashPoint | None = None,
    ) -> None:
        self.broker = broker
        self.state = state
        self.risk = risk
        self.tracker = tracker
        self.events = events
        self.metrics = metrics
        self.client_id_prefix = client_id_prefix
        self.crash_point = crash_point

    async def submit(self, request: OrderRequest, snapshot: RiskSnapshot, now: datetime) -> ExecutionResult:
        """Run one order through guard -> intent -> exchange -> ack."""
        (result,) = await self.submit_all([request], snapshot, now)
        return result

    async def submit_all(
        self, requests: Sequence[OrderRequest], snapshot: RiskSnapshot, now: datetime
    ) -> list[ExecutionResult]:
        """Guard every request, write the approved intents in one batch, then place them concurrently.

        Returns one result per request, in order. An unexpected exchange error is raised after every other
        order of the batch has been booked.
        """
        results: list[ExecutionResult | None] = []
        planned: list[tuple[int, PlannedOrder]] = []
        # orders of earlier cycles may still move the booked position (resting, or filled with fills not booked
        # yet): judged like this cycle's approved ones
        resting = unbooked_requests(self.tracker.open_orders)
        for request in requests:
            judged_on = with_resting(snapshot, [*resting, *(order.request for _, order in planned)], request)
            outcome = self._plan(request, judged_on, now)
            if isinstance(outcome, ExecutionResult):
                await self._report_denied(outcome, now)
                results.append(outcome)
                continue
            planned.append((len(results), outcome))
            results.append(None)
        if planned:
            orders = [order for _, order in planned]
            await self._write_intents(orders, now)
            for (index, _), result in zip(planned, await self._place_all(orders, now), strict=True):
                results[index] = result
        done = [r for r in results if r is not None]
        assert len(done) == len(results)
        return done

    # --- steps ------------------------------------------------------------------------------------------

    def _plan(
        self, request: OrderRequest, snapshot: RiskSnapshot, now: datetime
    ) -> PlannedOrder | ExecutionResult:
        """Judge ``request``; an approved one gets its client id and intent and counts for the order rate."""
        verdict = self.risk.check_order(request, snapshot, now)
        if not verdict.allowed:
            return ExecutionResult(ExecutionAction.DENIED, request, verdict)
        if request.client_order_id is None:
            request = dataclasses.replace(request, client_order_id=new_client_order_id(self.client_id_prefix))
        # Counted now, so the next order of this cycle is judged with it (a failed write only over-counts).
        self.risk.record_order(now)
        return PlannedOrder(request, verdict, IntentRecord.from_request(request, now))

    async def _report_denied(self, result: ExecutionResult, now: datetime) -> None:
        request, verdict = result.request, result.verdict
        for denial in verdict.denials:
            self.metrics.guard_denials.labels(guard=denial.guard).inc()
        self.metrics.orders.labels(outcome="denied", symbol=request.symbol, side=request.side.value).inc()
        await self.events.emit(
            EventType.ORDER_DENIED,
            now,
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            verdict=result.verdict_text,
            denials=[d.to_dict() for d in verdict.denials],
            trading_state=verdict.state,
        )

    async def _write_intents(self, orders: Sequence[PlannedOrder], now: datetime) -> None:
        """Rule 2: every intent is durable (one batch, awaited) before the exchange hears of any order."""
        writes = [
            StateWrite(keys.intent_key(o.intent.client_order_id), o.intent.to_dict(), StateCategory.INTENTS)
            for o in orders
        ]
        await self.state.batch_write(writes)
        for order in orders:
            self.tracker.intents[order.intent.client_order_id] = order.intent
            self.tracker.known_client_ids.add(order.intent.client_order_id)
            await self.events.emit(EventType.ORDER_INTENT, now, **_intent_fields(order.intent))
        maybe_crash(self.crash_point, CrashPoint.AFTER_INTENT)

    async def _place_all(self, orders: Sequence[PlannedOrder], now: datetime) -> list[ExecutionResult]:
        """Send every order (bounded concurrency), then book each answer; raise an unexpected error last."""
        gate = asyncio.Semaphore(MAX_CONCURRENT_ORDERS)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._send(order, gate)) for order in orders]
        results: list[ExecutionResult] = []
        unexpected: Exception | None = None
        for order, task in zip(orders, tasks, strict=True):
            answer = task.result()
            try:
                results.append(await self._settle(order, answer, now))
            except Exception as exc:  # booked the others first; the policy halts on the first one
                unexpected = unexpected or exc
        if unexpected is not None:
            raise unexpected
        return results

    async def _send(self, order: PlannedOrder, gate: asyncio.Semaphore) -> Order | Exception:
        """Place one order; its error is returned, not raised, so one failure cannot cancel the others."""
        async with gate:
            try:
                placed = await self.broker.place_order(order.request)
            except Exception as exc:  # classified by ``_settle``
                return exc
        maybe_crash(self.crash_point, CrashPoint.AFTER_ACK)
        return placed

    async def _settle(
        self, planned: PlannedOrder, answer: Order | Exception, now: datetime
    ) -> ExecutionResult:
        """Book one exchange answer: tracked, rejected (FAILED), unknown (UNKNOWN), or re-raised."""
        request, verdict, intent = planned.request, planned.verdict, planned.intent
        labels = {"symbol": request.symbol, "side": request.side.value}
        if isinstance(answer, OrderDeniedError):
            self.tracker.fail_intent(intent.client_order_id, answer.one_line(), now)
            self.metrics.orders.labels(outcome="rejected", **labels).inc()
            await self.events.emit(
                EventType.ORDER_FAILED, now, client_order_id=intent.client_order_id, error=answer.one_line()
            )
            return ExecutionResult(ExecutionAction.REJECTED, request, verdict, error=answer.one_line())
        if isinstance(answer, LeaseLostError):
            # refused by the lease gate BEFORE anything was sent (LeasedBroker): nothing to look up
            self.tracker.fail_intent(intent.client_order_id, f"not sent: {answer.one_line()}", now)
            self.metrics.orders.labels(outcome="not_sent", **labels).inc()
            await self.events.emit(
                EventType.ORDER_FAILED, now, client_order_id=intent.client_order_id, error=answer.one_line()
            )
            return ExecutionResult(ExecutionAction.REJECTED, request, verdict, error=answer.one_line())
        if isinstance(answer, RetryableError | ExchangeProtocolError):
            # The request may have reached the exchange (no answer, or one we cannot read): UNKNOWN, looked
            # up by client id on the next cycles.
            self.tracker.mark_unknown(intent.client_order_id, f"no answer: {answer.one_line()}", now)
            self.metrics.orders.labels(outcome="unknown", **labels).inc()
            await self.events.emit(
                EventType.ORDER_FAILED,
                now,
                client_order_id=intent.client_order_id,
                error=answer.one_line(),
                pending_lookup=True,
            )
            await self.events.emit(
                EventType.INTENT_UNKNOWN,
                now,
                client_order_id=intent.client_order_id,
                symbol=intent.symbol,
                detail=f"no answer from the exchange: {answer.one_line()}",
            )
            return ExecutionResult(ExecutionAction.UNKNOWN, request, verdict, error=answer.one_line())
        if isinstance(answer, Exception):
            raise answer
        self.tracker.track(answer, now)
        self.metrics.orders.labels(outcome="placed", **labels).inc()
        await self.events.emit(
            EventType.ORDER_PLACED,
            now,
            client_order_id=answer.client_order_id,
            order_id=answer.order_id,
            symbol=answer.symbol,
            side=answer.side,
            quantity=answer.quantity,
            status=answer.status,
        )
        return ExecutionResult(ExecutionAction.PLACED, request, verdict, order=answer)


def _intent_fields(intent: IntentRecord) -> dict[str, object]:
    return {
        "client_order_id": intent.client_order_id,
        "symbol": intent.symbol,
        "side": intent.side,
        "order_type": intent.order_type,
        "quantity": intent.quantity,
        "limit_price": intent.limit_price,
    }
