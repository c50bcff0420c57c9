"""Advanced Trade payloads -> domain types. Nothing from the SDK leaves this package.

Every function takes the plain ``dict`` form of an SDK response (``plain(resp)``), never the SDK object
itself: ``BaseResponse`` has ``__getitem__`` but no ``__contains__``/``__iter__``, so ``"key" in resp`` loops
forever and ``resp["missing"]`` silently returns None. Money is ``Decimal`` from the exchange's strings;
times are aware UTC. A payload that lacks a required field raises ``ExchangeProtocolError`` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot_v2.domain import (
    Balance,
    CancelResult,
    Candle,
    ClientOrderId,
    EditPreview,
    FeeTier,
    Fill,
    FuturesBalanceSummary,
    KeyPermissions,
    Liquidity,
    Order,
    OrderId,
    OrderPreview,
    OrderStatus,
    OrderType,
    Portfolio,
    Position,
    Product,
    ProductBook,
    ProductType,
    Quote,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
)
from bot_v2.errors import ExchangeProtocolError

__all__ = [
    "ORDER_STATUS_TO_API",
    "create_failure_reasons",
    "edit_reasons",
    "parse_time",
    "plain",
    "to_balance",
    "to_cancel_result",
    "to_candle",
    "to_edit_preview",
    "to_fee_tier",
    "to_fill",
    "to_futures_balance_summary",
    "to_key_permissions",
    "to_order",
    "to_order_preview",
    "to_portfolio",
    "to_position",
    "to_product",
    "to_product_book",
    "to_quote",
    "to_server_time",
]

Payload = Mapping[str, Any]
ZERO = Decimal(0)

_STATUS = {
    "PENDING": OrderStatus.PENDING,
    "QUEUED": OrderStatus.PENDING,
    "OPEN": OrderStatus.OPEN,
    "CANCEL_QUEUED": OrderStatus.OPEN,
    "EDIT_QUEUED": OrderStatus.OPEN,
    "FILLED": OrderStatus.FILLED,
    "CANCELLED": OrderStatus.CANCELLED,
    "EXPIRED": OrderStatus.EXPIRED,
    "FAILED": OrderStatus.FAILED,
    "UNKNOWN_ORDER_STATUS": OrderStatus.UNKNOWN,
}
ORDER_STATUS_TO_API: dict[OrderStatus, str] = {
    OrderStatus.PENDING: "PENDING",
    OrderStatus.OPEN: "OPEN",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELLED: "CANCELLED",
    OrderStatus.EXPIRED: "EXPIRED",
    OrderStatus.FAILED: "FAILED",
    OrderStatus.UNKNOWN: "UNKNOWN_ORDER_STATUS",
}
_TIF = {
    "GOOD_UNTIL_CANCELLED": TimeInForce.GTC,
    "GOOD_UNTIL_DATE_TIME": TimeInForce.GTD,
    "IMMEDIATE_OR_CANCEL": TimeInForce.IOC,
    "FILL_OR_KILL": TimeInForce.FOK,
}
# configuration key -> (order type, time in force)
_CONFIGS = {
    "market_market_ioc": (OrderType.MARKET, TimeInForce.IOC),
    "market_market_fok": (OrderType.MARKET, TimeInForce.FOK),
    "sor_limit_ioc": (OrderType.LIMIT, TimeInForce.IOC),
    "limit_limit_gtc": (OrderType.LIMIT, TimeInForce.GTC),
    "limit_limit_gtd": (OrderType.LIMIT, TimeInForce.GTD),
    "limit_limit_fok": (OrderType.LIMIT, TimeInForce.FOK),
    "stop_limit_stop_limit_gtc": (OrderType.STOP_LIMIT, TimeInForce.GTC),
    "stop_limit_stop_limit_gtd": (OrderType.STOP_LIMIT, TimeInForce.GTD),
    "trigger_bracket_gtc": (OrderType.LIMIT, TimeInForce.GTC),
    "trigger_bracket_gtd": (OrderType.LIMIT, TimeInForce.GTD),
}
_NO_REASON = {"", "REJECT_REASON_UNSPECIFIED", "UNKNOWN_REJECT_REASON", "UNSPECIFIED"}


# --- generic field readers ----------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """Turn an SDK response (and anything nested in it) into plain dicts, lists and scalars."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "to_dict") and hasattr(value, "__dict__"):
        return {str(k): plain(v) for k, v in vars(value).items()}
    return value


def _field(payload: Payload, name: str, what: str) -> Any:
    value = payload.get(name)
    if value is None:
        raise ExchangeProtocolError(f"{what}: payload has no {name!r}")
    return value


def _str(payload: Payload, name: str, what: str) -> str:
    value = _field(payload, name, what)
    if not isinstance(value, str) or not value:
        raise ExchangeProtocolError(f"{what}: {name!r} is not a non-empty string")
    return value


def _to_decimal(value: Any, name: str, what: str) -> Decimal:
    if isinstance(value, Mapping):  # {"value": "1.5", "currency": "USD"}
        value = value.get("value")
    if isinstance(value, bool) or value is None:
        raise ExchangeProtocolError(f"{what}: {name!r} is not a number")
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ExchangeProtocolError(f"{what}: {name!r} is not a number ({str(value)[:40]!r})") from None
    if not result.is_finite():
        raise ExchangeProtocolError(f"{what}: {name!r} is not finite")
    return result


def _dec(payload: Payload, name: str, what: str) -> Decimal:
    return _to_decimal(_field(payload, name, what), name, what)


def _dec_or(payload: Payload, name: str, what: str, default: Decimal | None) -> Decimal | None:
    value = payload.get(name)
    if isinstance(value, Mapping):
        value = value.get("value")
    if value is None or value == "":
        return default
    return _to_decimal(value, name, what)


def _dec0(payload: Payload, name: str, what: str) -> Decimal:
    value = _dec_or(payload, name, what, ZERO)
    return ZERO if value is None else value


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def parse_time(value: Any, what: str = "time") -> datetime:
    """Parse RFC 3339 (``Z`` or offset, any fraction), ``{"seconds": ...}``, or UNIX seconds into aware
    UTC."""
    if isinstance(value, Mapping):
        value = value.get("seconds", value.get("iso"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or not value.strip():
        raise ExchangeProtocolError(f"{what}: not a timestamp ({str(value)[:40]!r})")
    text = value.strip()
    if text.replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(text), UTC)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:  # trim nanoseconds to microseconds
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[: min(digits, 6)]}{tail[digits:]}" if digits else head + tail[digits:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ExchangeProtocolError(f"{what}: not a timestamp ({value[:40]!r})") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _time_or_none(value: Any, what: str) -> datetime | None:
    if value in (None, "", "0001-01-01T00:00:00Z"):
        return None
    return parse_time(value, what)


def _side(value: Any, what: str) -> Side:
    text = str(value or "").upper()
    if text in ("BUY", "SELL"):
        return Side(text)
    raise ExchangeProtocolError(f"{what}: unknown side {str(value)[:20]!r}")


# --- products and market data -------------------------------------------------------------------------------


def to_product(p: Payload) -> Product:
    """Product payload (list or single form) -> ``Product``."""
    symbol = _str(p, "product_id", "product")
    what = f"product {symbol}"
    base, _, quote = symbol.partition("-")
    details = p.get("future_product_details") or {}
    perp = details.get("perpetual_details") or {}
    product_type = (
        ProductType.FUTURE if str(p.get("product_type", "")).upper() == "FUTURE" else ProductType.SPOT
    )
    max_leverage = _dec_or(perp, "max_leverage", what, None) or _dec_or(details, "max_leverage", what, None)
    price_increment = _dec_or(p, "price_increment", what, None) or _dec(p, "quote_increment", what)
    return Product(
        symbol=Symbol(symbol),
        base_currency=str(p.get("base_currency_id") or p.get("base_display_symbol") or base),
        quote_currency=str(p.get("quote_currency_id") or p.get("quote_display_symbol") or quote),
        base_increment=_dec(p, "base_increment", what),
        price_increment=price_increment,
        base_min_size=_dec(p, "base_min_size", what),
        base_max_size=_dec0(p, "base_max_size", what),
        quote_min_size=_dec0(p, "quote_min_size", what),
        product_type=product_type,
        price=_dec_or(p, "price", what, None),
        perpetual=str(details.get("contract_expiry_type", "")).upper() == "PERPETUAL",
        contract_size=_dec_or(details, "contract_size", what, None) or Decimal(1),
        max_leverage=max_leverage if max_leverage else Decimal(1),
        trading_disabled=_bool(p.get("trading_disabled")) or _bool(p.get("is_disabled")),
        funding_rate=_dec_or(perp, "funding_rate", what, None)
        or _dec_or(details, "funding_rate", what, None),
    )


def _levels(levels: Any, what: str) -> tuple[tuple[Decimal, Decimal], ...]:
    if not isinstance(levels, Sequence):
        raise ExchangeProtocolError(f"{what}: book side is not a list")
    return tuple((_dec(lv, "price", what), _dec(lv, "size", what)) for lv in levels)


def to_product_book(book: Payload) -> ProductBook:
    """``pricebook`` payload -> ``ProductBook`` (bids best first, asks best first)."""
    symbol = _str(book, "product_id", "pricebook")
    what = f"pricebook {symbol}"
    time_value = book.get("time")
    return ProductBook(
        symbol=Symbol(symbol),
        bids=_levels(book.get("bids") or [], what),
        asks=_levels(book.get("asks") or [], what),
        time=parse_time(time_value, what) if time_value else datetime.now(UTC),
    )


def to_quote(book: Payload) -> Quote | None:
    """``pricebooks[]`` item -> ``Quote``; None when either side of the book is empty."""
    pb = to_product_book(book)
    if not pb.bids or not pb.asks:
        return None
    return Quote(symbol=pb.symbol, bid=pb.bids[0][0], ask=pb.asks[0][0], time=pb.time)


def to_candle(c: Payload) -> Candle:
    what = "candle"
    return Candle(
        start=parse_time(_field(c, "start", what), what),
        open=_dec(c, "open", what),
        high=_dec(c, "high", what),
        low=_dec(c, "low", what),
        close=_dec(c, "close", what),
        volume=_dec0(c, "volume", what),
    )


# --- account ------------------------------------------------------------------------------------------------


def to_balance(a: Payload) -> Balance:
    """Account payload -> ``Balance`` (available and hold in the account's currency)."""
    currency = _str(a, "currency", "account")
    what = f"account {currency}"
    return Balance(
        currency=currency,
        available=_dec(a, "available_balance", what),
        hold=_dec0(a, "hold", what),
    )


def to_position(p: Payload) -> Position:
    """CFM position payload -> ``Position``; ``quantity`` is signed contracts (short < 0)."""
    symbol = _str(p, "product_id", "position")
    what = f"position {symbol}"
    contracts = abs(_dec(p, "number_of_contracts", what))
    side = str(p.get("side", "")).upper()
    if side.endswith("SHORT"):
        contracts = -contracts
    elif contracts and not side.endswith("LONG"):
        raise ExchangeProtocolError(f"{what}: unknown side {side[:30]!r}")
    return Position(
        symbol=Symbol(symbol),
        quantity=contracts,
        entry_price=_dec0(p, "avg_entry_price", what),
        mark_price=_dec_or(p, "current_price", what, None),
        unrealized_pnl=_dec0(p, "unrealized_pnl", what),
        realized_pnl=_dec0(p, "daily_realized_pnl", what),
    )


def to_futures_balance_summary(s: Payload) -> FuturesBalanceSummary:
    """``balance_summary`` payload (``{value, currency}`` amounts) -> ``FuturesBalanceSummary``."""
    what = "futures balance summary"
    named = {
        "futures_buying_power",
        "total_usd_balance",
        "unrealized_pnl",
        "daily_realized_pnl",
        "initial_margin",
        "available_margin",
        "liquidation_buffer_amount",
        "liquidation_buffer_percentage",
    }
    extras: dict[str, str] = {}
    for key, value in s.items():
        if key in named:
            continue
        amount = value.get("value") if isinstance(value, Mapping) else value
        if isinstance(amount, str | int | float) and not isinstance(amount, bool):
            extras[key] = str(amount)
    return FuturesBalanceSummary(
        buying_power=_dec0(s, "futures_buying_power", what),
        total_usd_balance=_dec0(s, "total_usd_balance", what),
        unrealized_pnl=_dec0(s, "unrealized_pnl", what),
        daily_realized_pnl=_dec0(s, "daily_realized_pnl", what),
        initial_margin=_dec0(s, "initial_margin", what),
        available_margin=_dec0(s, "available_margin", what),
        liquidation_buffer_amount=_dec0(s, "liquidation_buffer_amount", what),
        liquidation_buffer_percentage=_dec0(s, "liquidation_buffer_percentage", what),
        extras=extras,
    )


def to_fee_tier(summary: Payload) -> FeeTier:
    """``transaction_summary`` payload -> ``FeeTier`` (rates as fractions, e.g. 0.006)."""
    what = "transaction summary"
    tier = summary.get("fee_tier")
    if not isinstance(tier, Mapping):
        raise ExchangeProtocolError(f"{what}: payload has no 'fee_tier'")
    return FeeTier(
        pricing_tier=str(tier.get("pricing_tier") or ""),
        maker_fee_rate=_dec(tier, "maker_fee_rate", what),
        taker_fee_rate=_dec(tier, "taker_fee_rate", what),
        total_volume=_dec0(summary, "total_volume", what),
        total_fees=_dec0(summary, "total_fees", what),
    )


def to_key_permissions(p: Payload) -> KeyPermissions:
    return KeyPermissions(
        can_view=_bool(p.get("can_view")),
        can_trade=_bool(p.get("can_trade")),
        can_transfer=_bool(p.get("can_transfer")),
        portfolio_uuid=p.get("portfolio_uuid") or None,
        portfolio_type=p.get("portfolio_type") or None,
    )


def to_portfolio(p: Payload) -> Portfolio:
    return Portfolio(
        uuid=_str(p, "uuid", "portfolio"),
        name=str(p.get("name") or ""),
        portfolio_type=str(p.get("type") or "UNDEFINED"),
        deleted=_bool(p.get("deleted")),
    )


def to_server_time(t: Payload) -> datetime:
    """``/time`` payload -> aware UTC datetime (``iso`` first, then epoch seconds)."""
    if t.get("iso"):
        return parse_time(t["iso"], "server time")
    seconds = t.get("epoch_seconds") or t.get("epochSeconds")
    if seconds is None:
        raise ExchangeProtocolError("server time: payload has neither 'iso' nor 'epochSeconds'")
    return parse_time(float(_to_decimal(seconds, "epoch_seconds", "server time")), "server time")


# --- orders and fills ---------------------------------------------------------------------------------------


def _configuration(o: Payload, what: str) -> tuple[OrderType, TimeInForce, Payload]:
    config = o.get("order_configuration")
    if isinstance(config, Mapping):
        for key, value in config.items():
            if key in _CONFIGS and isinstance(value, Mapping):
                order_type, tif = _CONFIGS[key]
                return order_type, tif, value
        # An unknown configuration (TWAP, scaled, ...) placed outside the bot: read the summary fields.
        inner = next((v for v in config.values() if isinstance(v, Mapping)), {})
    else:
        inner = {}
    raw_type = str(o.get("order_type") or "").upper()
    order_type = (
        OrderType.MARKET
        if raw_type == "MARKET"
        else OrderType.STOP_LIMIT
        if raw_type in ("STOP", "STOP_LIMIT")
        else OrderType.LIMIT
    )
    tif = _TIF.get(str(o.get("time_in_force") or ""), TimeInForce.GTC)
    if not inner and not raw_type:
        raise ExchangeProtocolError(f"{what}: payload has no usable 'order_configuration'")
    return order_type, tif, inner


def to_order(o: Payload) -> Order:
    """Order payload (``orders[]`` item or ``order``) -> ``Order``."""
    order_id = _str(o, "order_id", "order")
    what = f"order {order_id}"
    order_type, tif, config = _configuration(o, what)
    filled = _dec0(o, "filled_size", what)
    quantity = _dec_or(config, "base_size", what, None)
    if quantity is None:  # quote-sized market order: the base size is what filled
        quantity = filled
    status_raw = str(o.get("status") or "UNKNOWN_ORDER_STATUS")
    avg = _dec_or(o, "average_filled_price", what, None)
    leverage = _dec_or(o, "leverage", what, None)
    reject = str(o.get("reject_reason") or "")
    return Order(
        order_id=OrderId(order_id),
        client_order_id=ClientOrderId(str(o.get("client_order_id") or "")),
        symbol=Symbol(_str(o, "product_id", what)),
        side=_side(o.get("side"), what),
        order_type=order_type,
        status=_STATUS.get(status_raw, OrderStatus.UNKNOWN),
        quantity=quantity,
        filled_quantity=filled,
        average_fill_price=avg if avg and filled > 0 else None,
        limit_price=_dec_or(config, "limit_price", what, None),
        stop_price=_dec_or(config, "stop_price", what, None),
        time_in_force=tif,
        created_at=_time_or_none(o.get("created_time"), what),
        total_fees=_dec0(o, "total_fees", what),
        reduce_only=_bool(config.get("reduce_only")) or _bool(o.get("reduce_only")),
        leverage=leverage if leverage else None,
        reject_reason=None if reject.upper() in _NO_REASON else reject,
    )


def to_fill(f: Payload) -> Fill:
    """Fill payload -> ``Fill`` (a ``size_in_quote`` size is converted to base units)."""
    trade_id = _str(f, "trade_id", "fill")
    what = f"fill {trade_id}"
    price = _dec(f, "price", what)
    size = _dec(f, "size", what)
    if _bool(f.get("size_in_quote")) and price:
        size = size / price
    liquidity = str(f.get("liquidity_indicator") or "").upper()
    return Fill(
        trade_id=TradeId(trade_id),
        order_id=OrderId(_str(f, "order_id", what)),
        symbol=Symbol(_str(f, "product_id", what)),
        side=_side(f.get("side"), what),
        price=price,
        quantity=size,
        commission=_dec0(f, "commission", what),
        liquidity=Liquidity(liquidity) if liquidity in ("MAKER", "TAKER") else Liquidity.UNKNOWN,
        trade_time=parse_time(_field(f, "trade_time", what), what),
    )


def _reasons(items: Any) -> tuple[str, ...]:
    """Preview ``errs``/edit ``errors``: enum strings, or dicts of ``*_failure_reason`` enums."""
    out: list[str] = []
    for item in items or ():
        if isinstance(item, str):
            values = [item]
        elif isinstance(item, Mapping):
            values = [str(v) for v in item.values() if isinstance(v, str)]
        else:
            continue
        values = [v for v in values if v]
        out.extend([v for v in values if not v.startswith("UNKNOWN")] or values)
    return tuple(dict.fromkeys(out))


def to_order_preview(p: Payload, symbol: Symbol, side: Side) -> OrderPreview:
    """Preview payload -> ``OrderPreview``; ``errors`` holds the ``errs`` enums (empty: would be accepted)."""
    what = f"preview {symbol}"
    return OrderPreview(
        symbol=symbol,
        side=side,
        preview_id=p.get("preview_id") or None,
        order_total=_dec0(p, "order_total", what),
        commission_total=_dec0(p, "commission_total", what),
        base_size=_dec0(p, "base_size", what),
        quote_size=_dec0(p, "quote_size", what),
        best_bid=_dec_or(p, "best_bid", what, None),
        best_ask=_dec_or(p, "best_ask", what, None),
        slippage=_dec0(p, "slippage", what),
        errors=_reasons(p.get("errs")),
        warnings=tuple(w for w in (str(x) for x in p.get("warning") or ()) if w and w != "UNKNOWN"),
        leverage=_dec_or(p, "leverage", what, None) or None,
        max_leverage=_dec_or(p, "max_leverage", what, None) or None,
        order_margin_total=_dec0(p, "order_margin_total", what),
        projected_liquidation_buffer=_dec_or(p, "projected_liquidation_buffer", what, None),
    )


def edit_reasons(p: Payload) -> tuple[str, ...]:
    """The failure enums of an edit or edit-preview answer (``errors[]`` and ``error_response``)."""
    reasons = list(_reasons(p.get("errors")))
    err = p.get("error_response")
    if isinstance(err, Mapping):
        reasons.extend(_reasons([err]))
    return tuple(dict.fromkeys(reasons))


def to_edit_preview(p: Payload, order_id: OrderId, size: Decimal, price: Decimal) -> EditPreview:
    what = f"edit preview {order_id}"
    return EditPreview(
        order_id=order_id,
        new_size=size,
        new_price=price,
        errors=edit_reasons(p),
        slippage=_dec0(p, "slippage", what),
        order_total=_dec0(p, "order_total", what),
        commission_total=_dec0(p, "commission_total", what),
        best_bid=_dec_or(p, "best_bid", what, None),
        best_ask=_dec_or(p, "best_ask", what, None),
        preview_id=p.get("preview_id") or None,
    )


def to_cancel_result(r: Payload) -> CancelResult:
    success = _bool(r.get("success"))
    reason = str(r.get("failure_reason") or "")
    return CancelResult(
        order_id=OrderId(_str(r, "order_id", "cancel result")),
        success=success,
        failure_reason=None if success or not reason else reason,
    )


def create_failure_reasons(r: Payload) -> tuple[tuple[str | None, ...], str | None]:
    """The failure enums and message of a ``success: false`` create-order answer."""
    err = r.get("error_response")
    err = err if isinstance(err, Mapping) else {}
    legacy = r.get("failure_reason")
    reasons = (
        err.get("error"),
        err.get("preview_failure_reason"),
        err.get("new_order_failure_reason"),
        legacy if isinstance(legacy, str) else None,
    )
    message = err.get("message") or err.get("error_details") or None
    return reasons, message
