"""Small builders for engine tests: order bodies as the SDK sends them, and a deterministic engine."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from bot_v2.brokerages.simulated.engine import Engine, EngineConfig, PlaceResult
from bot_v2.brokerages.simulated.models import ManualClock, SimOrder, iso
from bot_v2.brokerages.simulated.orderspec import OrderIntent, parse_order

BTC = "BTC-USD"
PERP = "BIP-20DEC30-CDE"


def make_engine(clock: ManualClock | None = None, **overrides: Any) -> Engine:
    settings: dict[str, Any] = {"seed": 7, "history_minutes": 0}
    settings.update(overrides)
    return Engine(EngineConfig(**settings), clock or ManualClock())


def intent(product_id: str, side: str, key: str, client_order_id: str = "", **conf: Any) -> OrderIntent:
    top = {k: conf.pop(k) for k in ("leverage", "margin_type", "reduce_only") if k in conf}
    body = {
        "product_id": product_id,
        "side": side,
        "client_order_id": client_order_id,
        "order_configuration": {key: {k: _text(v) for k, v in conf.items()}},
        **{k: _text(v) for k, v in top.items()},
    }
    return parse_order(body)


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    return value


def market(engine: Engine, product_id: str, side: str, base_size: str, **kw: Any) -> PlaceResult:
    return engine.place(intent(product_id, side, "market_market_ioc", base_size=base_size, **kw))


def limit_gtc(
    engine: Engine, product_id: str, side: str, size: str, price: Decimal | str, **kw: Any
) -> PlaceResult:
    return engine.place(
        intent(
            product_id, side, "limit_limit_gtc", base_size=size, limit_price=str(price), post_only=False, **kw
        )
    )


def placed(result: PlaceResult) -> SimOrder:
    assert result.order is not None, f"order rejected: {result.reason} {result.message}"
    return result.order
