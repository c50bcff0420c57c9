"""Advanced Trade REST endpoints (prefix /api/v3/brokerage) over the engine."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from bot_v2.brokerages.simulated.engine import PlaceResult
from bot_v2.brokerages.simulated.market import GRANULARITY_SECONDS
from bot_v2.brokerages.simulated.models import SimOrder, dstr, iso, parse_time
from bot_v2.brokerages.simulated.orderspec import OrderParseError, parse_order
from bot_v2.brokerages.simulated.server import API_PREFIX, error_response, read_body, state_of
from bot_v2.brokerages.simulated.views import (
    account_json,
    account_uuid,
    balance_summary_json,
    cfm_position_json,
    fill_json,
    order_json,
    portfolio_breakdown_json,
    portfolio_uuid,
    preview_json,
    product_json,
)

__all__ = ["add_routes"]

NEW_ORDER_REASONS = {
    "UNSUPPORTED_ORDER_CONFIGURATION",
    "INVALID_SIDE",
    "INVALID_PRODUCT_ID",
    "INVALID_SIZE_PRECISION",
    "INVALID_PRICE_PRECISION",
    "INSUFFICIENT_FUND",
    "INVALID_LIMIT_PRICE_POST_ONLY",
    "INVALID_LIMIT_PRICE",
    "INVALID_NO_LIQUIDITY",
}
PREVIEW_TTL_SECONDS = 300.0
json_response = web.json_response


MAX_CANDLES = 350
CANDLES_TOO_MANY = "start and end argument is invalid - number of candles requested should be less than 350"


def _int(value: str | None, default: int, low: int = 0, high: int = 1_000_000) -> int:
    if value is None or value == "":
        return default
    try:
        return max(low, min(high, int(value)))
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad integer {value!r}") from None


def _page(
    items: list[Any], request: web.Request, default_limit: int, max_limit: int
) -> tuple[list[Any], str]:
    start = _int(request.query.get("cursor"), 0)
    limit = _int(request.query.get("limit"), default_limit, 1, max_limit)
    page = items[start : start + limit]
    return page, str(start + limit) if start + limit < len(items) else ""


# --- public / market data -----------------------------------------------------------------------------------


async def get_time(request: web.Request) -> web.Response:
    now = state_of(request).engine.clock.now()
    return json_response(
        {
            "iso": iso(now),
            "epochSeconds": str(int(now.timestamp())),
            "epochMillis": str(int(now.timestamp() * 1000)),
        }
    )


async def list_products(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    wanted = request.query.getall("product_ids", [])
    product_type = request.query.get("product_type")
    expiry = request.query.get("contract_expiry_type")
    specs = [
        s
        for s in engine.products.values()
        if (not wanted or s.product_id in wanted)
        and (not product_type or s.product_type == product_type)
        and (not expiry or (s.is_future and expiry == "PERPETUAL"))
    ]
    offset = _int(request.query.get("offset"), 0)
    limit = _int(request.query.get("limit"), len(specs) or 1, 1)
    products = [product_json(engine, s) for s in specs[offset : offset + limit]]
    return json_response({"products": products, "num_products": len(specs)})


def _spec_or_404(request: web.Request, product_id: str) -> Any:
    spec = state_of(request).engine.products.get(product_id)
    if spec is None:
        raise web.HTTPNotFound(text=f"product {product_id} not found")
    return spec


async def get_product(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    return json_response(product_json(engine, _spec_or_404(request, request.match_info["product_id"])))


def _levels(levels: list[tuple[Decimal, Decimal]]) -> list[dict[str, str]]:
    return [{"price": dstr(p), "size": dstr(s)} for p, s in levels]


async def best_bid_ask(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    wanted = request.query.getall("product_ids", []) or list(engine.products)
    books = []
    now = iso(engine.clock.now())
    for pid in wanted:
        if pid in engine.products:
            bids, asks = engine.market.book(pid, 1)
            books.append({"product_id": pid, "bids": _levels(bids), "asks": _levels(asks), "time": now})
    return json_response({"pricebooks": books})


async def product_book(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    pid = request.query.get("product_id", "")
    _spec_or_404(request, pid)
    bids, asks = engine.market.book(pid, _int(request.query.get("limit"), 0) or None)
    best_bid, best_ask = bids[0][0], asks[0][0]
    mid = (best_bid + best_ask) / 2
    return json_response(
        {
            "pricebook": {
                "product_id": pid,
                "bids": _levels(bids),
                "asks": _levels(asks),
                "time": iso(engine.clock.now()),
            },
            "last": dstr(engine.market.last_price(pid)),
            "mid_market": dstr(mid),
            "spread_bps": dstr(((best_ask - best_bid) / mid * 10_000).quantize(Decimal("0.0001"))),
            "spread_absolute": dstr(best_ask - best_bid),
        }
    )


async def candles(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    pid = request.match_info["product_id"]
    _spec_or_404(request, pid)
    granularity = GRANULARITY_SECONDS.get(request.query.get("granularity", "ONE_MINUTE"))
    if granularity is None:
        return error_response(400, "INVALID_ARGUMENT", "unknown granularity")
    start = request.query.get("start")
    end = request.query.get("end")
    if start and end and (_int(end, 0, high=2**40) - _int(start, 0, high=2**40)) // granularity > MAX_CANDLES:
        # what the real API answers (HTTP 400), not a truncated list
        return error_response(400, "INVALID_ARGUMENT", CANDLES_TOO_MANY)
    rows = engine.market.candles(
        pid,
        _int(start, 0, high=2**40) if start else None,
        _int(end, 0, high=2**40) if end else None,
        granularity,
        _int(request.query.get("limit"), 350, 1, 350),
    )
    return json_response(
        {
            "candles": [
                {
                    "start": str(ts),
                    "low": dstr(lo),
                    "high": dstr(hi),
                    "open": dstr(op),
                    "close": dstr(cl),
                    "volume": dstr(vol),
                }
                for ts, op, hi, lo, cl, vol in rows
            ]
        }
    )


async def ticker(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    pid = request.match_info["product_id"]
    _spec_or_404(request, pid)
    trades = engine.market.trades(pid, _int(request.query.get("limit"), 100, 1, 1000))
    best_bid, best_ask = engine.market.best_bid_ask(pid)
    return json_response(
        {
            "trades": [
                {
                    "trade_id": t.trade_id,
                    "product_id": pid,
                    "price": dstr(t.price),
                    "size": dstr(t.size),
                    "time": iso(t.time),
                    "side": t.side,
                    "exchange": "simulated",
                }
                for t in trades
            ],
            "best_bid": dstr(best_bid),
            "best_ask": dstr(best_ask),
        }
    )


# --- account ------------------------------------------------------------------------------------------------


async def list_accounts(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    accounts = [account_json(engine, ccy) for ccy in sorted(engine.ledger.balances)]
    page, cursor = _page(accounts, request, 49, 250)
    return json_response({"accounts": page, "has_next": bool(cursor), "cursor": cursor, "size": len(page)})


async def get_account(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    wanted = request.match_info["account_uuid"]
    for ccy in engine.ledger.balances:
        if account_uuid(engine.config.seed, ccy) == wanted:
            return json_response({"account": account_json(engine, ccy)})
    return error_response(404, "NOT_FOUND", f"account {wanted} not found")


async def key_permissions(request: web.Request) -> web.Response:
    seed = state_of(request).engine.config.seed
    return json_response(
        {
            "can_view": True,
            "can_trade": True,
            "can_transfer": False,
            "portfolio_uuid": portfolio_uuid(seed),
            "portfolio_type": "DEFAULT",
        }
    )


async def portfolios(request: web.Request) -> web.Response:
    seed = state_of(request).engine.config.seed
    return json_response(
        {
            "portfolios": [
                {"name": "Default", "uuid": portfolio_uuid(seed), "type": "DEFAULT", "deleted": False}
            ]
        }
    )


async def portfolio_breakdown(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    wanted = request.match_info["portfolio_uuid"]
    if wanted != portfolio_uuid(engine.config.seed):
        return error_response(404, "NOT_FOUND", f"portfolio {wanted} not found")
    return json_response(portfolio_breakdown_json(engine))


async def transaction_summary(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    tier = engine.fee_tier()
    volume, fees = engine.volume_30d(), engine.fees_30d()
    return json_response(
        {
            "total_volume": float(volume),
            "total_fees": float(fees),
            "fee_tier": {
                "pricing_tier": tier.pricing_tier,
                "usd_from": dstr(tier.usd_from),
                "usd_to": dstr(tier.usd_to) if tier.usd_to is not None else "",
                "taker_fee_rate": dstr(tier.taker_fee_rate),
                "maker_fee_rate": dstr(tier.maker_fee_rate),
                "aop_from": "",
                "aop_to": "",
            },
            "margin_rate": {"value": "0"},
            "goods_and_services_tax": {"rate": "0", "type": "INCLUSIVE"},
            "advanced_trade_only_volume": float(volume),
            "advanced_trade_only_fees": float(fees),
            "coinbase_pro_volume": 0.0,
            "coinbase_pro_fees": 0.0,
            "total_balance": dstr(engine.ledger.balance("USD").total),
            "has_promo_fee": False,
        }
    )


# --- orders -------------------------------------------------------------------------------------------------


def _failure(reason: str, message: str, configuration: Any) -> web.Response:
    short = reason.removeprefix("PREVIEW_")
    return json_response(
        {
            "success": False,
            "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": "",
            "error_response": {
                "error": short,
                "message": message,
                "error_details": message,
                "preview_failure_reason": reason,
                "new_order_failure_reason": short if short in NEW_ORDER_REASONS else "UNKNOWN_FAILURE_REASON",
            },
            "order_configuration": configuration if isinstance(configuration, dict) else {},
        }
    )


def _success(order: SimOrder) -> web.Response:
    return json_response(
        {
            "success": True,
            "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": order.order_id,
            "success_response": {
                "order_id": order.order_id,
                "product_id": order.product_id,
                "side": order.side,
                "client_order_id": order.client_order_id,
            },
            "order_configuration": order.config,
        }
    )


def _require_product_and_side(body: dict[str, Any]) -> None:
    if not body.get("product_id") or not body.get("side"):
        raise web.HTTPBadRequest(text="product_id and side are required")


def _place_response(result: PlaceResult, configuration: Any) -> web.Response:
    if result.order is None:
        return _failure(result.reason, result.message, configuration)
    return _success(result.order)


async def create_order(request: web.Request) -> web.Response:
    body = await read_body(request)
    _require_product_and_side(body)
    try:
        intent = parse_order(body)
    except OrderParseError as exc:
        existing = state_of(request).engine.order_by_client_id(str(body.get("client_order_id") or ""))
        if existing is not None:
            return _success(existing)
        return _failure(exc.reason, str(exc), body.get("order_configuration"))
    return _place_response(state_of(request).engine.place(intent), body.get("order_configuration"))


async def preview_order(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_body(request)
    _require_product_and_side(body)
    preview_id = str(uuid.uuid4())
    now = time.monotonic()
    state.previews = {k: v for k, v in state.previews.items() if v > now}
    state.previews[preview_id] = now + PREVIEW_TTL_SECONDS
    try:
        intent = parse_order(body)
    except OrderParseError as exc:
        zero = {
            k: "0"
            for k in (
                "order_total",
                "commission_total",
                "quote_size",
                "base_size",
                "best_bid",
                "best_ask",
                "order_margin_total",
                "leverage",
                "slippage",
            )
        }
        return json_response(
            {
                **zero,
                "errs": [exc.reason],
                "warning": [],
                "is_max": False,
                "preview_id": preview_id,
                "max_leverage": "",
                "pnl_configuration": {},
            }
        )
    return json_response(preview_json(state.engine.preview(intent), preview_id))


def _decimal_or_none(raw: Any) -> Decimal | None:
    if raw in (None, ""):
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return Decimal(-1)
    return value if value.is_finite() else Decimal(-1)


async def _edit(request: web.Request, apply: bool) -> web.Response:
    engine = state_of(request).engine
    body = await read_body(request)
    outcome = engine.edit(
        str(body.get("order_id") or ""),
        _decimal_or_none(body.get("size")),
        _decimal_or_none(body.get("price")),
        apply,
    )
    errors = [
        {"edit_failure_reason": e, "preview_failure_reason": p or "UNKNOWN_PREVIEW_FAILURE_REASON"}
        for e, p in outcome.errors
    ]
    if apply:
        body_out: dict[str, Any] = {"success": outcome.ok, "errors": errors}
        if outcome.ok and outcome.order is not None:
            body_out["success_response"] = {"order_id": outcome.order.order_id}
        return json_response(body_out)
    p = outcome.preview
    return json_response(
        {
            "errors": errors,
            "slippage": dstr(p.slippage) if p else "0",
            "order_total": dstr(p.order_total) if p else "0",
            "commission_total": dstr(p.commission) if p else "0",
            "quote_size": dstr(p.quote_size) if p else "0",
            "base_size": dstr(p.base_size) if p else "0",
            "best_bid": dstr(p.best_bid) if p else "0",
            "best_ask": dstr(p.best_ask) if p else "0",
            "average_filled_price": dstr(p.average_price) if p else "0",
            "order_margin_total": dstr(p.margin_total) if p else "0",
            "commission_detail_total": {},
            "pnl_configuration": {},
        }
    )


async def edit_order(request: web.Request) -> web.Response:
    return await _edit(request, apply=True)


async def edit_preview(request: web.Request) -> web.Response:
    return await _edit(request, apply=False)


async def batch_cancel(request: web.Request) -> web.Response:
    body = await read_body(request)
    ids = body.get("order_ids") or []
    if not isinstance(ids, list):
        return error_response(400, "INVALID_ARGUMENT", "order_ids must be a list")
    outcomes = state_of(request).engine.cancel(str(i) for i in ids)
    return json_response(
        {
            "results": [
                {"success": o.success, "failure_reason": o.failure_reason, "order_id": o.order_id}
                for o in outcomes
            ]
        }
    )


async def close_position(request: web.Request) -> web.Response:
    body = await read_body(request)
    size = _decimal_or_none(body.get("size"))
    result = state_of(request).engine.close_position(
        str(body.get("product_id") or ""), size, str(body.get("client_order_id") or "")
    )
    return _place_response(result, {})


def _order_matches(order: SimOrder, request: web.Request) -> bool:
    q = request.query
    if (ids := q.getall("order_ids", [])) and order.order_id not in ids:
        return False
    if (pids := q.getall("product_ids", [])) and order.product_id not in pids:
        return False
    if (statuses := q.getall("order_status", [])) and order.status not in statuses:
        return False
    if (side := q.get("order_side")) and order.side != side:
        return False
    if (start := q.get("start_date")) and order.created_time < parse_time(start):
        return False
    return not ((end := q.get("end_date")) and order.created_time > parse_time(end))


async def list_orders(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    orders = sorted(engine.orders.values(), key=lambda o: o.sequence, reverse=True)
    selected = [o for o in orders if _order_matches(o, request)]
    page, cursor = _page(selected, request, 100, 1000)
    return json_response(
        {
            "orders": [order_json(engine, o) for o in page],
            "sequence": "0",
            "has_next": bool(cursor),
            "cursor": cursor,
        }
    )


async def get_order(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    order = engine.orders.get(request.match_info["order_id"])
    if order is None:
        return error_response(404, "NOT_FOUND", "order not found")
    return json_response({"order": order_json(engine, order)})


async def list_fills(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    q = request.query
    order_ids, pids, trade_ids = (
        q.getall("order_ids", []),
        q.getall("product_ids", []),
        q.getall("trade_ids", []),
    )
    start, end = q.get("start_sequence_timestamp"), q.get("end_sequence_timestamp")
    fills = [
        f
        for f in reversed(engine.fills)
        if (not order_ids or f.order_id in order_ids)
        and (not pids or f.product_id in pids)
        and (not trade_ids or f.trade_id in trade_ids)
        and (not start or f.trade_time >= parse_time(start))
        and (not end or f.trade_time <= parse_time(end))
    ]
    page, cursor = _page(fills, request, 100, 1000)
    return json_response({"fills": [fill_json(engine, f) for f in page], "cursor": cursor})


# --- CFM futures --------------------------------------------------------------------------------------------


async def cfm_balance_summary(request: web.Request) -> web.Response:
    return json_response({"balance_summary": balance_summary_json(state_of(request).engine)})


async def cfm_positions(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    return json_response({"positions": [cfm_position_json(engine, p) for p in engine.open_positions()]})


async def cfm_position(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    pos = engine.ledger.positions.get(request.match_info["product_id"])
    if pos is None or pos.net_size == 0:
        return error_response(404, "NOT_FOUND", "no open position")
    return json_response({"position": cfm_position_json(engine, pos)})


def add_routes(app: web.Application) -> None:
    p = API_PREFIX
    for prefix in (p, f"{p}/market"):
        app.router.add_get(f"{prefix}/products", list_products)
        app.router.add_get(f"{prefix}/products/{{product_id}}/candles", candles)
        app.router.add_get(f"{prefix}/products/{{product_id}}/ticker", ticker)
        app.router.add_get(f"{prefix}/products/{{product_id}}", get_product)
        app.router.add_get(f"{prefix}/product_book", product_book)
    app.router.add_get(f"{p}/time", get_time)
    app.router.add_get(f"{p}/best_bid_ask", best_bid_ask)
    app.router.add_get(f"{p}/accounts", list_accounts)
    app.router.add_get(f"{p}/accounts/{{account_uuid}}", get_account)
    app.router.add_get(f"{p}/key_permissions", key_permissions)
    app.router.add_get(f"{p}/portfolios", portfolios)
    app.router.add_get(f"{p}/portfolios/{{portfolio_uuid}}", portfolio_breakdown)
    app.router.add_get(f"{p}/transaction_summary", transaction_summary)
    app.router.add_post(f"{p}/orders", create_order)
    app.router.add_post(f"{p}/orders/preview", preview_order)
    app.router.add_post(f"{p}/orders/edit", edit_order)
    app.router.add_post(f"{p}/orders/edit_preview", edit_preview)
    app.router.add_post(f"{p}/orders/batch_cancel", batch_cancel)
    app.router.add_post(f"{p}/orders/close_position", close_position)
    app.router.add_get(f"{p}/orders/historical/batch", list_orders)
    app.router.add_get(f"{p}/orders/historical/fills", list_fills)
    app.router.add_get(f"{p}/orders/historical/{{order_id}}", get_order)
    app.router.add_get(f"{p}/cfm/balance_summary", cfm_balance_summary)
    app.router.add_get(f"{p}/cfm/positions", cfm_positions)
    app.router.add_get(f"{p}/cfm/positions/{{product_id}}", cfm_position)
