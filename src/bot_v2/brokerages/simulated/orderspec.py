"""Parse an Advanced Trade create/preview body into an :class:`OrderIntent` (shape checks only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot_v2.brokerages.simulated.models import parse_time

__all__ = ["CONFIG_KINDS", "OrderIntent", "OrderParseError", "parse_order"]

# configuration key -> (kind, time in force)
CONFIG_KINDS: dict[str, tuple[str, str]] = {
    "market_market_ioc": ("MARKET", "IOC"),
    "sor_limit_ioc": ("LIMIT", "IOC"),
    "limit_limit_gtc": ("LIMIT", "GTC"),
    "limit_limit_gtd": ("LIMIT", "GTD"),
    "limit_limit_fok": ("LIMIT", "FOK"),
    "stop_limit_stop_limit_gtc": ("STOP_LIMIT", "GTC"),
    "stop_limit_stop_limit_gtd": ("STOP_LIMIT", "GTD"),
}
STOP_DIRECTIONS = ("STOP_DIRECTION_STOP_UP", "STOP_DIRECTION_STOP_DOWN")


class OrderParseError(Exception):
    """The body is not a valid order; ``reason`` is the preview failure enum to report."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OrderIntent:
    product_id: str
    side: str
    kind: str
    tif: str
    config_key: str
    config: dict[str, Any]
    base_size: Decimal | None = None
    quote_size: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_direction: str = ""
    end_time: datetime | None = None
    post_only: bool = False
    reduce_only: bool = False
    leverage: Decimal | None = None
    margin_type: str | None = None
    client_order_id: str = ""
    preview_id: str = ""


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _decimal(raw: Any, reason: str, name: str) -> Decimal | None:
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise OrderParseError(reason, f"{name} {raw!r} is not a decimal") from None
    if not value.is_finite() or value <= 0:
        raise OrderParseError(reason, f"{name} must be a positive decimal, got {raw!r}")
    return value


def _margin_type(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    text = str(raw).upper().removeprefix("MARGIN_TYPE_")
    if text not in ("CROSS", "ISOLATED"):
        raise OrderParseError("PREVIEW_INVALID_MARGIN_TYPE", f"unknown margin_type {raw!r}")
    return text


def parse_order(body: Mapping[str, Any]) -> OrderIntent:
    """Check the body's shape and parse its numbers; product-dependent checks happen in the engine."""
    product_id = str(body.get("product_id") or "")
    if not product_id:
        raise OrderParseError("PREVIEW_INVALID_PRODUCT_ID", "product_id is required")
    side = str(body.get("side") or "").upper()
    if side not in ("BUY", "SELL"):
        raise OrderParseError("PREVIEW_INVALID_SIDE", f"side must be BUY or SELL, got {side!r}")
    configuration = body.get("order_configuration")
    if not isinstance(configuration, Mapping):
        raise OrderParseError("PREVIEW_INVALID_ORDER_CONFIG", "order_configuration must be an object")
    keys = [k for k in configuration if configuration[k] is not None]
    if len(keys) != 1 or keys[0] not in CONFIG_KINDS or not isinstance(configuration[keys[0]], Mapping):
        raise OrderParseError("PREVIEW_INVALID_ORDER_CONFIG", f"unsupported order configuration {keys}")
    key = keys[0]
    kind, tif = CONFIG_KINDS[key]
    conf: Mapping[str, Any] = configuration[key]

    base_size = _decimal(conf.get("base_size"), "PREVIEW_INVALID_SIZE_PRECISION", "base_size")
    quote_size = _decimal(conf.get("quote_size"), "PREVIEW_INVALID_SIZE_PRECISION", "quote_size")
    if kind == "MARKET":
        if (base_size is None) == (quote_size is None):
            raise OrderParseError(
                "PREVIEW_INVALID_ORDER_CONFIG", "market orders need base_size or quote_size"
            )
        if side == "SELL" and base_size is None:
            raise OrderParseError("PREVIEW_INVALID_ORDER_CONFIG", "market sells need base_size")
    elif base_size is None or quote_size is not None:
        raise OrderParseError("PREVIEW_INVALID_ORDER_CONFIG", f"{key} needs base_size")
    limit_price = _decimal(conf.get("limit_price"), "PREVIEW_INVALID_PRICE_PRECISION", "limit_price")
    if kind != "MARKET" and limit_price is None:
        raise OrderParseError("PREVIEW_INVALID_ORDER_CONFIG", f"{key} needs limit_price")
    stop_price = None
    stop_direction = ""
    if kind == "STOP_LIMIT":
        stop_price = _decimal(conf.get("stop_price"), "PREVIEW_INVALID_STOP_PRICE", "stop_price")
        stop_direction = str(conf.get("stop_direction") or "")
        if stop_price is None or stop_direction not in STOP_DIRECTIONS:
            raise OrderParseError(
                "PREVIEW_INVALID_STOP_PRICE", "stop orders need stop_price and stop_direction"
            )
    end_time = None
    if tif == "GTD":
        raw_end = conf.get("end_time")
        if not raw_end:
            raise OrderParseError("PREVIEW_GTD_ORDERS_MUST_HAVE_END_TIME", "GTD orders need end_time")
        try:
            end_time = parse_time(str(raw_end))
        except ValueError:
            raise OrderParseError("PREVIEW_INVALID_END_TIME", f"bad end_time {raw_end!r}") from None

    leverage_raw = body.get("leverage", conf.get("leverage"))
    try:
        leverage = Decimal(str(leverage_raw)) if leverage_raw not in (None, "") else None
    except InvalidOperation:
        raise OrderParseError("PREVIEW_INVALID_LEVERAGE", f"bad leverage {leverage_raw!r}") from None
    margin_type = _margin_type(body.get("margin_type", conf.get("margin_type")))
    reduce_only = _bool(body.get("reduce_only", False)) or _bool(conf.get("reduce_only", False))
    return OrderIntent(
        product_id=product_id,
        side=side,
        kind=kind,
        tif=tif,
        config_key=key,
        config={key: dict(conf)},
        base_size=base_size,
        quote_size=quote_size,
        limit_price=limit_price,
        stop_price=stop_price,
        stop_direction=stop_direction,
        end_time=end_time,
        post_only=_bool(conf.get("post_only", False)),
        reduce_only=reduce_only,
        leverage=leverage,
        margin_type=margin_type,
        client_order_id=str(body.get("client_order_id") or ""),
        preview_id=str(body.get("preview_id") or ""),
    )
