"""``OrderExecutor``: guard -> durable intent -> exchange -> acknowledgement, for one order.

The order path, in the only order it may happen:

1. ``RiskEngine.check_order`` judges the request; a denial stops here (nothing is written or sent).
2. The intent (client order id = ``client_id_prefix`` + random hex, product, side, size, price, type) is
   written to state on its own and awaited: it is durable BEFORE the exchange is called.
3. ``broker.place_order``. A business rejection marks the intent FAILED; a transient failure (timeout, 5xx)
   leaves it PENDING: it may have reached the exchange, so the tracker looks it up by client order id later.
   Anything else propagates: the loop's error policy halts trading.
4. The acknowledged order is tracked; its intent becomes SUBMITTED in the cycle's batch.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from bot_v2.brokerages.base import Broker
from bot_v2.domain import ClientOrderId, Order, OrderRequest
from bot_v2.errors import OrderDeniedError, RetryableError
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.crashpoints import CrashPoint, maybe_crash
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.orchestration.records import IntentRecord
from bot_v2.orchestration.tracking import OrderTracker
from bot_v2.risk import RiskEngine, RiskSnapshot, RiskVerdict

logger = logging.getLogger(__name__)

__all__ = ["ExecutionAction", "ExecutionResult", "OrderExecutor", "new_client_order_id"]


class ExecutionAction(enum.StrEnum):
    """What happened to one requested order."""

    PLACED = "placed"
    DENIED = "denied"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # transient failure after the intent: resolved by client id on a later cycle


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


def new_client_order_id(prefix: str) -> ClientOrderId:
    """A fresh client order id carrying the bot's prefix (the adoption filter after a crash)."""
    return ClientOrderId(f"{prefix}{uuid.uuid4().hex}")


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
        verdict = self.risk.check_order(request, snapshot, now)
        labels = {"symbol": request.symbol, "side": request.side.value}
        if not verdict.allowed:
            for denial in verdict.denials:
                self.metrics.guard_denials.labels(guard=denial.guard).inc()
            self.metrics.orders.labels(outcome="denied", **labels).inc()
            result = ExecutionResult(ExecutionAction.DENIED, request, verdict)
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
            return result

        if request.client_order_id is None:
            request = dataclasses.replace(request, client_order_id=new_client_order_id(self.client_id_prefix))
        assert request.client_order_id is not None
        intent = IntentRecord.from_request(request, now)
        # Rule 2: the intent is durable before the exchange hears of the order.
        await self.state.set_state(
            keys.intent_key(intent.client_order_id), intent.to_dict(), StateCategory.INTENTS
        )
        self.tracker.intents[intent.client_order_id] = intent
        self.tracker.known_client_ids.add(intent.client_order_id)
        self.risk.record_order(now)
        await self.events.emit(EventType.ORDER_INTENT, now, **_intent_fields(intent))
        maybe_crash(self.crash_point, CrashPoint.AFTER_INTENT)

        try:
            order = await self.broker.place_order(request)
        except OrderDeniedError as exc:
            self.tracker.fail_intent(intent.client_order_id, exc.one_line(), now)
            self.metrics.orders.labels(outcome="rejected", **labels).inc()
            await self.events.emit(
                EventType.ORDER_FAILED, now, client_order_id=intent.client_order_id, error=exc.one_line()
            )
            return ExecutionResult(ExecutionAction.REJECTED, request, verdict, error=exc.one_line())
        except RetryableError as exc:
            # The request may have reached the exchange: leave the intent PENDING for lookup by client id.
            self.metrics.orders.labels(outcome="unknown", **labels).inc()
            await self.events.emit(
                EventType.ORDER_FAILED,
                now,
                client_order_id=intent.client_order_id,
                error=exc.one_line(),
                pending_lookup=True,
            )
            return ExecutionResult(ExecutionAction.UNKNOWN, request, verdict, error=exc.one_line())
        maybe_crash(self.crash_point, CrashPoint.AFTER_ACK)

        self.tracker.track(order, now)
        self.metrics.orders.labels(outcome="placed", **labels).inc()
        await self.events.emit(
            EventType.ORDER_PLACED,
            now,
            client_order_id=order.client_order_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            status=order.status,
        )
        return ExecutionResult(ExecutionAction.PLACED, request, verdict, order=order)


def _intent_fields(intent: IntentRecord) -> dict[str, object]:
    return {
        "client_order_id": intent.client_order_id,
        "symbol": intent.symbol,
        "side": intent.side,
        "order_type": intent.order_type,
        "quantity": intent.quantity,
        "limit_price": intent.limit_price,
    }
