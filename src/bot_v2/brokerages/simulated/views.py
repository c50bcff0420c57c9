"""Advanced Trade JSON shapes for engine objects. Numbers are decimal strings; lists are never null."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from bot_v2.brokerages.simulated.engine import Engine, Preview
from bot_v2.brokerages.simulated.models import ZERO, SimFill, SimOrder, SimPosition, dstr, iso
from bot_v2.brokerages.simulated.products import ProductSpec

__all__ = [
    "account_json",
    "account_uuid",
    "balance_summary_json",
    "cfm_position_json",
    "fill_json",
    "order_json",
    "portfolio_breakdown_json",
    "portfolio_uuid",
    "preview_json",
    "product_json",
]

USER_ID = "simulated-user"
_NAMESPACE = uuid.UUID("6f1c1d2e-7a51-4c61-9a7f-51b0e0c0ffee")


def portfolio_uuid(seed: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{seed}:portfolio:default"))


def account_uuid(seed: int, currency: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{seed}:account:{currency}"))


def money(value: Decimal, currency: str = "USD") -> dict[str, str]:
    return {"value": dstr(value), "currency": currency}


def account_json(engine: Engine, currency: str) -> dict[str, Any]:
    bal = engine.ledger.balance(currency)
    seed = engine.config.seed
    return {
        "uuid": account_uuid(seed, currency),
        "name": f"{currency} Wallet",
        "currency": currency,
        "available_balance": money(bal.available, currency),
        "default": True,
        "active": True,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": iso(engine.clock.now()),
        "deleted_at": None,
        "type": "ACCOUNT_TYPE_FIAT" if currency == "USD" else "ACCOUNT_TYPE_CRYPTO",
        "ready": True,
        "hold": money(bal.hold, currency),
        "retail_portfolio_id": portfolio_uuid(seed),
        "platform": "ACCOUNT_PLATFORM_CONSUMER",
    }


def product_json(engine: Engine, spec: ProductSpec) -> dict[str, Any]:
    price = engine.market.last_price(spec.product_id)
    candles = engine.market.candles(spec.product_id, None, None, 86400, limit=2)
    open_24h = candles[-1][1] if candles else price
    change = (price - open_24h) / open_24h * 100 if open_24h else ZERO
    volume = sum((c[5] for c in engine.market.candles(spec.product_id, None, None, 3600, 24)), ZERO)
    body: dict[str, Any] = {
        "product_id": spec.product_id,
        "price": dstr(price),
        "price_percentage_change_24h": dstr(change.quantize(Decimal("0.00000001"))),
        "volume_24h": dstr(volume),
        "volume_percentage_change_24h": "0",
        "base_increment": dstr(spec.base_increment),
        "quote_increment": dstr(spec.quote_increment),
        "quote_min_size": dstr(spec.quote_min_size),
        "quote_max_size": dstr(spec.quote_max_size),
        "base_min_size": dstr(spec.base_min_size),
        "base_max_size": dstr(spec.base_max_size),
        "base_name": spec.base_name,
        "quote_name": "US Dollar",
        "watched": False,
        "is_disabled": False,
        "new": False,
        "status": "online",
        "cancel_only": False,
        "limit_only": False,
        "post_only": False,
        "trading_disabled": spec.trading_disabled,
        "auction_mode": False,
        "product_type": spec.product_type,
        "quote_currency_id": spec.quote_currency,
        "base_currency_id": spec.base_currency,
        "mid_market_price": dstr(sum(engine.market.best_bid_ask(spec.product_id), ZERO) / 2),
        "alias": "",
        "alias_to": [],
        "base_display_symbol": spec.base_currency,
        "quote_display_symbol": spec.quote_currency,
        "view_only": False,
        "price_increment": dstr(spec.price_increment),
        "display_name": spec.display_name,
        "product_venue": spec.product_venue,
        "approximate_quote_24h_volume": dstr((volume * price).quantize(Decimal("0.01"))),
    }
    if spec.is_future:
        body["future_product_details"] = _future_details(engine, spec)
    return body


def _future_details(engine: Engine, spec: ProductSpec) -> dict[str, Any]:
    next_funding = engine.last_funding.timestamp() + spec.funding_interval_seconds
    open_interest = sum(
        (abs(p.net_size) for p in engine.open_positions() if p.product_id == spec.product_id), ZERO
    )
    funding_time = iso(engine.last_funding.fromtimestamp(next_funding, engine.last_funding.tzinfo))
    return {
        "venue": "cde",
        "contract_code": spec.contract_code,
        "contract_expiry": spec.contract_expiry,
        "contract_size": dstr(spec.contract_size),
        "contract_root_unit": spec.base_currency,
        "group_description": f"{spec.base_name} Perpetual-Style Futures",
        "contract_expiry_timezone": "Europe/London",
        "group_short_description": f"{spec.base_currency} PERP",
        "risk_managed_by": "MANAGED_BY_FCM",
        "contract_expiry_type": "PERPETUAL",
        "perpetual_details": {
            "open_interest": dstr(open_interest),
            "funding_rate": dstr(spec.funding_rate),
            "funding_time": funding_time,
            "max_leverage": dstr(spec.max_leverage),
            "base_asset_uuid": "",
            "underlying_type": "SPOT",
        },
        "contract_display_name": spec.display_name,
        "time_to_expiry_ms": "0",
        "non_crypto": False,
        "contract_expiry_name": "PERP",
        "funding_interval": f"{spec.funding_interval_seconds}s",
        "funding_rate": dstr(spec.funding_rate),
        "funding_time": funding_time,
        "display_name": spec.display_name,
        "intraday_margin_rate": {
            "long_margin_rate": dstr(1 / spec.max_leverage),
            "short_margin_rate": dstr(1 / spec.max_leverage),
        },
        "overnight_margin_rate": {
            "long_margin_rate": dstr(2 / spec.max_leverage),
            "short_margin_rate": dstr(2 / spec.max_leverage),
        },
    }


def order_json(engine: Engine, order: SimOrder) -> dict[str, Any]:
    spec = engine.products[order.product_id]
    quote_value = order.filled_value * spec.contract_size
    sign = 1 if order.side == "BUY" else -1
    after_fees = quote_value + sign * order.total_fees
    if order.base_size:
        completion = order.filled_size / order.base_size * 100
    else:
        completion = Decimal(100) if order.status == "FILLED" else ZERO
    return {
        "order_id": order.order_id,
        "product_id": order.product_id,
        "user_id": USER_ID,
        "order_configuration": order.config,
        "side": order.side,
        "client_order_id": order.client_order_id,
        "status": order.status,
        "time_in_force": {
            "IOC": "IMMEDIATE_OR_CANCEL",
            "GTC": "GOOD_UNTIL_CANCELLED",
            "GTD": "GOOD_UNTIL_DATE_TIME",
            "FOK": "FILL_OR_KILL",
        }[order.tif],
        "created_time": iso(order.created_time),
        "completion_percentage": dstr(completion.quantize(Decimal("0.01"))),
        "filled_size": dstr(order.filled_size),
        "average_filled_price": dstr(order.average_filled_price),
        "fee": "",
        "number_of_fills": str(order.number_of_fills),
        "filled_value": dstr(quote_value),
        "pending_cancel": False,
        "size_in_quote": order.quote_size is not None,
        "total_fees": dstr(order.total_fees),
        "size_inclusive_of_fees": order.quote_size is not None,
        "total_value_after_fees": dstr(after_fees),
        "trigger_status": order.trigger_status,
        "order_type": order.kind,
        "reject_reason": order.reject_reason,
        "settled": not order.is_open,
        "product_type": spec.product_type,
        "reject_message": "",
        "cancel_message": order.cancel_message,
        "order_placement_source": "RETAIL_ADVANCED",
        "outstanding_hold_amount": dstr(order.hold_amount),
        "is_liquidation": False,
        "last_fill_time": iso(order.last_fill_time) or None,
        "edit_history": list(order.edit_history),
        "leverage": dstr(order.leverage) if spec.is_future else "",
        "margin_type": f"MARGIN_TYPE_{order.margin_type}" if spec.is_future else "UNKNOWN_MARGIN_TYPE",
        "retail_portfolio_id": portfolio_uuid(engine.config.seed),
        "originating_order_id": "",
        "attached_order_id": "",
        "attached_order_configuration": None,
        "reduce_only": order.reduce_only,
    }


def fill_json(engine: Engine, fill: SimFill) -> dict[str, Any]:
    return {
        "entry_id": fill.entry_id,
        "trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "trade_time": iso(fill.trade_time),
        "trade_type": "FILL",
        "price": dstr(fill.price),
        "size": dstr(fill.size),
        "commission": dstr(fill.commission),
        "product_id": fill.product_id,
        "sequence_timestamp": iso(fill.trade_time),
        "liquidity_indicator": fill.liquidity,
        "size_in_quote": False,
        "user_id": USER_ID,
        "side": fill.side,
        "retail_portfolio_id": portfolio_uuid(engine.config.seed),
    }


def preview_json(preview: Preview, preview_id: str) -> dict[str, Any]:
    return {
        "order_total": dstr(preview.order_total),
        "commission_total": dstr(preview.commission),
        "errs": list(preview.errs),
        "warning": [],
        "quote_size": dstr(preview.quote_size),
        "base_size": dstr(preview.base_size),
        "best_bid": dstr(preview.best_bid),
        "best_ask": dstr(preview.best_ask),
        "is_max": False,
        "order_margin_total": dstr(preview.margin_total),
        "leverage": dstr(preview.leverage),
        "long_leverage": dstr(preview.leverage),
        "short_leverage": dstr(preview.leverage),
        "slippage": dstr(preview.slippage),
        "preview_id": preview_id,
        "current_liquidation_buffer": "0",
        "projected_liquidation_buffer": "0",
        "max_leverage": dstr(preview.max_leverage) if preview.max_leverage is not None else "",
        "pnl_configuration": {},
        "est_average_filled_price": dstr(preview.average_price),
    }


def cfm_position_json(engine: Engine, pos: SimPosition) -> dict[str, Any]:
    spec = engine.products[pos.product_id]
    return {
        "product_id": pos.product_id,
        "expiration_time": spec.contract_expiry,
        "side": "LONG" if pos.net_size > 0 else "SHORT",
        "number_of_contracts": dstr(abs(pos.net_size)),
        "current_price": dstr(engine.mark_price(pos.product_id)),
        "avg_entry_price": dstr(pos.entry_vwap),
        "unrealized_pnl": dstr(engine.unrealized_pnl(pos)),
        "daily_realized_pnl": dstr(pos.daily_realized_pnl),
        "net_size": dstr(pos.net_size),
        "leverage": dstr(pos.leverage),
        "margin_type": f"MARGIN_TYPE_{pos.margin_type}",
        "initial_margin": dstr(engine.initial_margin(pos)),
        "funding_paid": dstr(pos.funding_paid),
    }


def balance_summary_json(engine: Engine) -> dict[str, Any]:
    positions = engine.open_positions()
    usd = engine.ledger.balance("USD")
    upnl = sum((engine.unrealized_pnl(p) for p in positions), ZERO)
    margin = sum((engine.initial_margin(p) for p in positions), ZERO)
    maintenance = sum(
        (
            engine.initial_margin(p) * p.leverage * engine.products[p.product_id].maintenance_margin_rate
            for p in positions
        ),
        ZERO,
    )
    equity = usd.total + upnl
    buffer = equity - maintenance
    buying_power = engine.futures_buying_power()
    window = {
        "margin_window_type": "FCM_MARGIN_WINDOW_TYPE_INTRADAY",
        "margin_level": "MARGIN_LEVEL_TYPE_BASE",
        "initial_margin": dstr(margin),
        "maintenance_margin": dstr(maintenance),
        "liquidation_buffer_percentage": dstr(
            (buffer / equity * 100).quantize(Decimal("0.01")) if equity else ZERO
        ),
        "total_hold": dstr(usd.hold),
        "futures_buying_power": dstr(buying_power),
    }
    return {
        "futures_buying_power": money(buying_power),
        "total_usd_balance": money(usd.total),
        "cbi_usd_balance": money(usd.available),
        "cfm_usd_balance": money(ZERO),
        "total_open_orders_hold_amount": money(usd.hold),
        "unrealized_pnl": money(upnl),
        "daily_realized_pnl": money(
            sum((p.daily_realized_pnl for p in engine.ledger.positions.values()), ZERO)
        ),
        "initial_margin": money(margin),
        "available_margin": money(buying_power),
        "liquidation_threshold": money(maintenance),
        "liquidation_buffer_amount": money(buffer),
        "liquidation_buffer_percentage": window["liquidation_buffer_percentage"],
        "intraday_margin_window_measure": window,
        "overnight_margin_window_measure": {
            **window,
            "margin_window_type": "FCM_MARGIN_WINDOW_TYPE_OVERNIGHT",
        },
    }


def portfolio_breakdown_json(engine: Engine) -> dict[str, Any]:
    """``GET /portfolios/{uuid}``: the default portfolio with its balances and one spot position per currency
    (USD values at the ``<CCY>-USD`` mark; money as ``{value, currency}``, fiat/crypto totals as numbers)."""
    seed = engine.config.seed
    cash = crypto = ZERO
    spot: list[dict[str, Any]] = []
    for ccy in sorted(engine.ledger.balances):
        bal = engine.ledger.balance(ccy)
        is_cash = ccy in ("USD", "USDC")
        pid = f"{ccy}-USD"
        price = Decimal(1) if is_cash else engine.market.last_price(pid) if pid in engine.products else ZERO
        fiat = bal.total * price
        if is_cash:
            cash += fiat
        else:
            crypto += fiat
        spot.append(
            {
                "asset": ccy,
                "account_uuid": account_uuid(seed, ccy),
                "total_balance_fiat": float(fiat),
                "total_balance_crypto": float(bal.total),
                "available_to_trade_fiat": float(bal.available * price),
                "allocation": 0.0,
                "cost_basis": money(fiat),
                "asset_img_url": "",
                "is_cash": is_cash,
            }
        )
    total = cash + crypto
    for row in spot:
        row["allocation"] = float(Decimal(str(row["total_balance_fiat"])) / total) if total else 0.0
    upnl = sum((engine.unrealized_pnl(p) for p in engine.ledger.positions.values()), ZERO)
    return {
        "breakdown": {
            "portfolio": {
                "name": "Default",
                "uuid": portfolio_uuid(seed),
                "type": "DEFAULT",
                "deleted": False,
            },
            "portfolio_balances": {
                "total_balance": money(total),
                "total_futures_balance": money(ZERO),
                "total_cash_equivalent_balance": money(cash),
                "total_crypto_balance": money(crypto),
                "futures_unrealized_pnl": money(upnl),
                "perp_unrealized_pnl": money(ZERO),
            },
            "spot_positions": spot,
            "perp_positions": [],
            "futures_positions": [],
        }
    }
