"""Domain ``OrderRequest`` -> the Advanced Trade ``order_configuration`` and create/preview arguments.

* MARKET -> ``market_market_ioc {base_size}``
* LIMIT GTC -> ``limit_limit_gtc {base_size, limit_price, post_only}``
* LIMIT GTD -> ``limit_limit_gtd {base_size, limit_price, end_time, post_only}``
* LIMIT IOC -> ``sor_limit_ioc {base_size, limit_price}``
* LIMIT FOK -> ``limit_limit_fok {base_size, limit_price}``
* STOP_LIMIT GTC / GTD -> ``stop_limit_stop_limit_gtc`` / ``_gtd``
  ``{base_size, limit_price, stop_price, stop_direction[, end_time]}``

Numbers are sent as plain decimal strings (never exponent notation), times as RFC 3339 UTC with ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot_v2.domain import OrderRequest, OrderType, Side, TimeInForce, ensure_utc
from bot_v2.errors import PriceError

__all__ = [
    "STOP_DOWN",
    "STOP_UP",
    "create_order_kwargs",
    "decimal_str",
    "order_configuration",
    "preview_order_kwargs",
    "rfc3339",
    "stop_direction",
]

STOP_UP = "STOP_DIRECTION_STOP_UP"
STOP_DOWN = "STOP_DIRECTION_STOP_DOWN"


def decimal_str(value: Decimal) -> str:
    """Format a Decimal as the exchange expects: ``"0.001"``, ``"100"``, never ``"1E+2"``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def rfc3339(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with milliseconds and ``Z``."""
    return ensure_utc(value).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stop_direction(side: Side, stop_price: Decimal, reference_price: Decimal | None) -> str:
    """Which way the market must move to trigger: a stop above the market is STOP_UP, below is STOP_DOWN.

    With no reference price, or a stop exactly at it, a buy stop is taken as STOP_UP (breakout / stop-loss on
    a short) and a sell stop as STOP_DOWN (stop-loss on a long).
    """
    if reference_price is None or stop_price == reference_price:
        return STOP_UP if side is Side.BUY else STOP_DOWN
    return STOP_UP if stop_price > reference_price else STOP_DOWN


def order_configuration(
    request: OrderRequest, reference_price: Decimal | None = None
) -> dict[str, dict[str, Any]]:
    """Build the ``order_configuration`` object for ``request`` (its shape is validated first).

    ``reference_price`` (last trade or mid) decides a stop-limit order's ``stop_direction``.
    """
    request.validate_shape()
    size = decimal_str(request.quantity)
    if request.order_type is OrderType.MARKET:
        return {"market_market_ioc": {"base_size": size}}
    assert request.limit_price is not None  # validate_shape guarantees it
    limit = decimal_str(request.limit_price)
    tif = request.time_in_force
    if request.order_type is OrderType.LIMIT:
        if tif is TimeInForce.GTC:
            return {
                "limit_limit_gtc": {"base_size": size, "limit_price": limit, "post_only": request.post_only}
            }
        if tif is TimeInForce.GTD:
            return {
                "limit_limit_gtd": {
                    "base_size": size,
                    "limit_price": limit,
                    "end_time": rfc3339(_end_time(request)),
                    "post_only": request.post_only,
                }
            }
        if request.post_only:
            raise PriceError(f"{request.symbol}: post-only limit orders must be GTC or GTD, not {tif}")
        if tif is TimeInForce.IOC:
            return {"sor_limit_ioc": {"base_size": size, "limit_price": limit}}
        return {"limit_limit_fok": {"base_size": size, "limit_price": limit}}
    assert request.stop_price is not None  # validate_shape guarantees it
    stop = {
        "base_size": size,
        "limit_price": limit,
        "stop_price": decimal_str(request.stop_price),
        "stop_direction": stop_direction(request.side, request.stop_price, reference_price),
    }
    if tif is TimeInForce.GTD:
        return {"stop_limit_stop_limit_gtd": {**stop, "end_time": rfc3339(_end_time(request))}}
    return {"stop_limit_stop_limit_gtc": stop}


def _end_time(request: OrderRequest) -> datetime:
    if request.end_time is None:  # validate_shape guarantees it; keep mypy and -O honest
        raise PriceError(f"{request.symbol}: GTD order needs an end time")
    return request.end_time


def preview_order_kwargs(request: OrderRequest, reference_price: Decimal | None = None) -> dict[str, Any]:
    """Keyword arguments for ``RESTClient.preview_order`` (the preview endpoint takes no client order id)."""
    kwargs: dict[str, Any] = {
        "product_id": request.symbol,
        "side": request.side.value,
        "order_configuration": order_configuration(request, reference_price),
    }
    if request.leverage is not None:
        kwargs["leverage"] = decimal_str(request.leverage)
    if request.margin_type is not None:
        kwargs["margin_type"] = request.margin_type.value
    if request.reduce_only:
        # Not a named SDK parameter: extra kwargs become top-level body fields.
        kwargs["reduce_only"] = True
    return kwargs


def create_order_kwargs(
    request: OrderRequest, client_order_id: str, reference_price: Decimal | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``RESTClient.create_order``."""
    return {"client_order_id": client_order_id, **preview_order_kwargs(request, reference_price)}
