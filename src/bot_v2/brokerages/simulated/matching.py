"""Pure book-walking: which levels a taker order consumes, and static order checks against a product."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from bot_v2.brokerages.simulated.market import Level
from bot_v2.brokerages.simulated.models import ZERO, floor_to
from bot_v2.brokerages.simulated.orderspec import OrderIntent
from bot_v2.brokerages.simulated.products import ProductSpec

__all__ = ["acceptable", "check_static", "crosses", "walk_base", "walk_quote"]


def acceptable(side: str, price: Decimal, limit: Decimal | None) -> bool:
    """Whether a taker on ``side`` may trade at ``price`` under ``limit``."""
    if limit is None:
        return True
    return price <= limit if side == "BUY" else price >= limit


def crosses(side: str, limit: Decimal, best_bid: Decimal, best_ask: Decimal) -> bool:
    """Whether a limit order at ``limit`` is marketable against the current book."""
    return limit >= best_ask if side == "BUY" else limit <= best_bid


def walk_base(levels: list[Level], side: str, size: Decimal, limit: Decimal | None = None) -> list[Level]:
    """Take up to ``size`` from ``levels`` (best first), never beyond ``limit``."""
    takes: list[Level] = []
    remaining = size
    for price, available in levels:
        if remaining <= 0 or not acceptable(side, price, limit):
            break
        take = min(remaining, available)
        takes.append((price, take))
        remaining -= take
    return takes


def walk_quote(levels: list[Level], budget: Decimal, fee_rate: Decimal, spec: ProductSpec) -> list[Level]:
    """Spend ``budget`` (fees included) buying from ``levels``, in whole base increments."""
    takes: list[Level] = []
    for price, available in levels:
        unit_cost = price * spec.contract_size * (1 + fee_rate)
        take = min(available, floor_to(budget / unit_cost, spec.base_increment))
        if take <= 0:
            break
        takes.append((price, take))
        budget -= take * unit_cost
    return takes


def filled(takes: list[Level]) -> Decimal:
    return sum((size for _, size in takes), ZERO)


def check_static(
    spec: ProductSpec, intent: OrderIntent, now: datetime, last_price: Decimal, best: tuple[Decimal, Decimal]
) -> tuple[str, str] | None:
    """Size, price, stop, end-time, post-only and product-type checks; return (reason, message) or None."""
    pid = spec.product_id
    if intent.base_size is not None:
        if intent.base_size % spec.base_increment != 0:
            return "PREVIEW_INVALID_SIZE_PRECISION", f"{pid}: size not a multiple of {spec.base_increment}"
        if intent.base_size < spec.base_min_size:
            return "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL", f"{pid}: size below {spec.base_min_size}"
        if intent.base_size > spec.base_max_size:
            return "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE", f"{pid}: size above {spec.base_max_size}"
    if intent.quote_size is not None:
        if intent.quote_size % spec.quote_increment != 0:
            return (
                "PREVIEW_INVALID_QUOTE_SIZE_PRECISION",
                f"{pid}: quote size not a multiple of {spec.quote_increment}",
            )
        if intent.quote_size < spec.quote_min_size:
            return "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL", f"{pid}: quote size below {spec.quote_min_size}"
        if intent.quote_size > spec.quote_max_size:
            return "PREVIEW_INVALID_QUOTE_SIZE_TOO_LARGE", f"{pid}: quote size above {spec.quote_max_size}"
    for price in (intent.limit_price, intent.stop_price):
        if price is not None and price % spec.price_increment != 0:
            return "PREVIEW_INVALID_PRICE_PRECISION", f"{pid}: price not a multiple of {spec.price_increment}"
    if intent.stop_price is not None and intent.limit_price is not None:
        failure = _check_stop(intent, intent.stop_price, intent.limit_price, last_price)
        if failure:
            return failure
    if intent.end_time is not None and intent.end_time <= now:
        return "PREVIEW_END_TIME_IS_IN_THE_PAST", "end_time is in the past"
    if (
        intent.post_only
        and intent.limit_price is not None
        and crosses(intent.side, intent.limit_price, *best)
    ):
        return "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY", "post-only order would take liquidity"
    if intent.reduce_only and not spec.is_future:
        return "PREVIEW_REDUCE_ONLY_NOT_ALLOWED_ON_SPOT_PRODUCTS", "reduce_only is for futures"
    if spec.is_future and intent.leverage is not None and not 1 <= intent.leverage <= spec.max_leverage:
        return "PREVIEW_INVALID_LEVERAGE", f"leverage must be between 1 and {spec.max_leverage}"
    return None


def _check_stop(intent: OrderIntent, stop: Decimal, limit: Decimal, last: Decimal) -> tuple[str, str] | None:
    if intent.stop_direction == "STOP_DIRECTION_STOP_UP" and stop <= last:
        return "PREVIEW_STOP_PRICE_BELOW_LAST_TRADE_PRICE", f"STOP_UP needs stop above last trade {last}"
    if intent.stop_direction == "STOP_DIRECTION_STOP_DOWN" and stop >= last:
        return "PREVIEW_STOP_PRICE_ABOVE_LAST_TRADE_PRICE", f"STOP_DOWN needs stop below last trade {last}"
    if intent.side == "SELL" and stop < limit:
        return "PREVIEW_STOP_PRICE_BELOW_LIMIT_PRICE", "a sell stop must be at or above its limit"
    if intent.side == "BUY" and stop > limit:
        return "PREVIEW_STOP_PRICE_ABOVE_LIMIT_PRICE", "a buy stop must be at or below its limit"
    return None
