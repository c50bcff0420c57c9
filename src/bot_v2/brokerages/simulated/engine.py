"""The matching engine: orders against the synthetic book, holds, fees, futures positions and funding.

Pure and deterministic: no I/O, time from an injected :class:`Clock`, prices from :class:`Market`. The server
serializes all access on one event loop; nothing here is thread-safe.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot_v2.brokerages.simulated.fees import DEFAULT_FEE_TIERS, FeeTier, tier_for_volume
from bot_v2.brokerages.simulated.ledger import Ledger, apply_position_fill
from bot_v2.brokerages.simulated.market import Level, Market
from bot_v2.brokerages.simulated.matching import check_static, crosses, filled, walk_base, walk_quote
from bot_v2.brokerages.simulated.models import (
    ZERO,
    Clock,
    SimFill,
    SimOrder,
    SimPosition,
    decode_record,
    dstr,
    encode_record,
    iso,
    parse_time,
)
from bot_v2.brokerages.simulated.orderspec import OrderIntent
from bot_v2.brokerages.simulated.outcomes import CancelOutcome, EditOutcome, PlaceResult, Preview
from bot_v2.brokerages.simulated.products import DEFAULT_PRODUCTS, ProductSpec, product_table

__all__ = [
    "DEFAULT_BALANCES",
    "REDUCE_ONLY_REJECTION",
    "CancelOutcome",
    "EditOutcome",
    "Engine",
    "EngineConfig",
    "PlaceResult",
    "Preview",
]

DEFAULT_BALANCES: Mapping[str, Decimal] = {
    "USD": Decimal(100_000),
    "BTC": Decimal(1),
    "ETH": Decimal(10),
    "SOL": Decimal(100),
}
# Coinbase documents no dedicated enum for a reduce-only order that would grow a position; this is ours.
REDUCE_ONLY_REJECTION = "PREVIEW_INVALID_REDUCE_ONLY_ORDER"
VOLUME_WINDOW = timedelta(days=30)
MAX_FUNDING_CATCH_UP = 168
FEE_TIER_REFRESH = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    seed: int = 42
    step_seconds: float = 1.0
    starting_balances: Mapping[str, Decimal] | None = None
    products: tuple[ProductSpec, ...] = DEFAULT_PRODUCTS
    fee_tiers: tuple[FeeTier, ...] = DEFAULT_FEE_TIERS
    history_minutes: int = 300


class Engine:
    """One exchange account: products, ledger, orders, fills, positions."""

    def __init__(
        self, config: EngineConfig, clock: Clock, id_factory: Callable[[], str] | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.products = product_table(config.products)
        self.market = Market(self.products, clock, config.seed, config.step_seconds, config.history_minutes)
        self.ledger = Ledger(config.starting_balances or DEFAULT_BALANCES)
        self._new_id = id_factory or (lambda: str(uuid.uuid4()))
        self.orders: dict[str, SimOrder] = {}
        self._open: dict[str, SimOrder] = {}
        self._by_client_id: dict[str, str] = {}
        self.fills: list[SimFill] = []
        self.sequence = 0
        self.last_funding = self._funding_anchor(clock.now())
        self.dirty = False  # account state changed since the last save
        self.changed_orders: set[str] = set()  # drained by the WebSocket feed
        self._tier: tuple[FeeTier, datetime] | None = None

    # --- market hooks ------------------------------------------------------------------------------------

    def advance(self, steps: int = 1) -> None:
        """Step the price walk ``steps`` times, matching resting orders after each step."""
        for _ in range(steps):
            self.market.step()
            self.process()

    def set_price(self, product_id: str, price: Decimal) -> None:
        """Force a product's price (test hook), then match resting orders against it."""
        self._spec_or_raise(product_id)
        self.market.set_price(product_id, price)
        self.process()

    def process(self) -> None:
        """Expire GTD orders, trigger stops, fill resting orders the price crossed, apply funding."""
        now = self.clock.now()
        for order in list(self._open.values()):
            if order.tif == "GTD" and order.end_time is not None and now >= order.end_time:
                self._finish(order, "EXPIRED")
            elif order.stop_pending:
                self._maybe_trigger(order)
            else:
                self._maybe_fill_resting(order)
        self._apply_funding(now)

    # --- orders ------------------------------------------------------------------------------------------

    def preview(self, intent: OrderIntent) -> Preview:
        """Validate and estimate an order without placing it."""
        failure = self.validate(intent)
        spec = self.products.get(intent.product_id)
        if spec is None:
            errs = [failure[0] if failure else "PREVIEW_INVALID_PRODUCT_ID"]
            return Preview(errs, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, Decimal(1), ZERO, None, ZERO)
        best_bid, best_ask = self.market.best_bid_ask(spec.product_id)
        takes = self._estimate_takes(spec, intent)
        qty = filled(takes) if intent.kind == "MARKET" else intent.base_size or ZERO
        value = sum((p * s for p, s in takes), ZERO)
        if intent.kind != "MARKET":
            value += (qty - filled(takes)) * (intent.limit_price or ZERO)
        avg = value / qty if qty else ZERO
        notional = value * spec.contract_size
        commission = notional * self.fee_tier().taker_fee_rate
        best = best_ask if intent.side == "BUY" else best_bid
        slippage = abs(avg - best) / best if intent.kind == "MARKET" and best and avg else ZERO
        leverage = intent.leverage or Decimal(1)
        return Preview(
            errs=[failure[0]] if failure else [],
            base_size=qty,
            quote_size=notional,
            commission=commission,
            order_total=notional + commission if intent.side == "BUY" else notional - commission,
            best_bid=best_bid,
            best_ask=best_ask,
            slippage=slippage,
            leverage=leverage if spec.is_future else Decimal(1),
            margin_total=notional / leverage if spec.is_future else ZERO,
            max_leverage=spec.max_leverage if spec.is_future else None,
            average_price=avg,
        )

    def order_by_client_id(self, client_order_id: str) -> SimOrder | None:
        order_id = self._by_client_id.get(client_order_id) if client_order_id else None
        return self.orders[order_id] if order_id else None

    def place(self, intent: OrderIntent) -> PlaceResult:
        """Create an order. A known ``client_order_id`` returns the existing order instead."""
        if existing := self.order_by_client_id(intent.client_order_id):
            return PlaceResult(existing, duplicate=True)
        failure = self.validate(intent)
        if failure:
            return PlaceResult(None, failure[0], failure[1])
        order = self._new_order(intent)
        spec = self.products[order.product_id]
        if order.kind == "STOP_LIMIT":
            order.status, order.trigger_status = "OPEN", "STOP_PENDING"
            self._open[order.order_id] = order
            self._rehold(order)
        else:
            self._take_and_rest(spec, order)
        self._touch(order)
        return PlaceResult(order)

    def cancel(self, order_ids: Iterable[str]) -> list[CancelOutcome]:
        """Cancel open orders, releasing their holds."""
        outcomes = []
        for order_id in order_ids:
            order = self._open.get(order_id)
            if order is None:
                outcomes.append(CancelOutcome(order_id, False, "UNKNOWN_CANCEL_ORDER"))
                continue
            order.cancel_message = "User requested cancel"
            self._finish(order, "CANCELLED")
            outcomes.append(CancelOutcome(order_id, True, "UNKNOWN_CANCEL_FAILURE_REASON"))
        return outcomes

    def edit(self, order_id: str, size: Decimal | None, price: Decimal | None, apply: bool) -> EditOutcome:
        """Check (and with ``apply``, perform) an edit of an open GTC limit or stop-limit order."""
        order = self.orders.get(order_id)
        if order is None:
            return EditOutcome(None, [("ORDER_NOT_FOUND", "")])
        if not order.is_open:
            return EditOutcome(order, [("ONLY_OPEN_ORDERS_CAN_BE_EDITED", "")])
        if order.kind == "MARKET" or order.tif != "GTC":
            return EditOutcome(order, [("ONLY_LIMIT_ORDER_EDITS_SUPPORTED", "")])
        spec = self.products[order.product_id]
        new_size = size or ZERO
        new_price = price if price is not None else order.limit_price or ZERO
        errors: list[tuple[str, str]] = []
        if new_size <= 0 or new_size % spec.base_increment != 0 or new_size > spec.base_max_size:
            errors.append(("INVALID_EDITED_SIZE", ""))
        elif new_size < order.filled_size:
            errors.append(("CANNOT_EDIT_TO_BELOW_FILLED_SIZE", ""))
        if new_price <= 0 or new_price % spec.price_increment != 0:
            errors.append(("INVALID_EDITED_PRICE", "PREVIEW_INVALID_PRICE_PRECISION"))
        best = self.market.best_bid_ask(spec.product_id)
        if not errors and order.post_only and crosses(order.side, new_price, *best):
            errors.append(("UNKNOWN_EDIT_ORDER_FAILURE_REASON", "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY"))
        if not errors:
            need = self._hold_needed(spec, order, new_size - order.filled_size, new_price)
            currency = self._hold_currency(spec, order)
            if need > self._spendable(spec, currency) + order.hold_amount:
                reason = (
                    "PREVIEW_INSUFFICIENT_FUNDS_FOR_FUTURES"
                    if spec.is_future
                    else "PREVIEW_INSUFFICIENT_FUND"
                )
                errors.append(("UNKNOWN_EDIT_ORDER_FAILURE_REASON", reason))
        if errors or not apply:
            return EditOutcome(order, errors, self._edit_preview(spec, order, new_size, new_price))
        order.edit_history.append(
            {
                "price": dstr(new_price),
                "size": dstr(new_size),
                "replace_accept_timestamp": iso(self.clock.now()),
            }
        )
        order.base_size, order.limit_price = new_size, new_price
        conf = order.config[order.config_key]
        conf["base_size"], conf["limit_price"] = dstr(new_size), dstr(new_price)
        if order.remaining == 0:
            self._finish(order, "FILLED")
        elif order.stop_pending:
            self._rehold(order)
        else:
            self._release(order)
            self._take_and_rest(spec, order)
        self._touch(order)
        return EditOutcome(order)

    def close_position(self, product_id: str, size: Decimal | None, client_order_id: str) -> PlaceResult:
        """Place a reduce-only market order against the open position (all of it without ``size``)."""
        spec = self.products.get(product_id)
        if spec is None or not spec.is_future:
            return PlaceResult(None, "PREVIEW_INVALID_PRODUCT_ID", f"{product_id} is not a futures product")
        pos = self.ledger.positions.get(product_id)
        if existing := self.order_by_client_id(client_order_id):
            return PlaceResult(existing, duplicate=True)
        if pos is None or pos.net_size == 0:
            return PlaceResult(None, REDUCE_ONLY_REJECTION, f"no open position in {product_id}")
        qty = size if size is not None else abs(pos.net_size)
        intent = OrderIntent(
            product_id=product_id,
            side="SELL" if pos.net_size > 0 else "BUY",
            kind="MARKET",
            tif="IOC",
            config_key="market_market_ioc",
            config={"market_market_ioc": {"base_size": dstr(qty)}},
            base_size=qty,
            reduce_only=True,
            client_order_id=client_order_id,
        )
        return self.place(intent)

    def validate(self, intent: OrderIntent) -> tuple[str, str] | None:
        """Return the first (preview failure reason, message) for ``intent``, or None when it would go."""
        spec = self.products.get(intent.product_id)
        if spec is None:
            return "PREVIEW_INVALID_PRODUCT_ID", f"unknown product {intent.product_id}"
        if spec.trading_disabled:
            return "UNKNOWN_PREVIEW_FAILURE_REASON", f"{spec.product_id} trading is disabled"
        best = self.market.best_bid_ask(spec.product_id)
        failure = check_static(spec, intent, self.clock.now(), self.market.last_price(spec.product_id), best)
        if failure:
            return failure
        takes = self._estimate_takes(spec, intent)
        qty = intent.base_size if intent.base_size is not None else filled(takes)
        if spec.is_future:
            pos = self.ledger.positions.get(spec.product_id)
            net = pos.net_size if pos else ZERO
            reducing = min(qty, abs(net)) if net and (net > 0) != (intent.side == "BUY") else ZERO
            if intent.reduce_only and (reducing == 0 or qty > reducing):
                return REDUCE_ONLY_REJECTION, "reduce-only order would open or increase a position"
            price = intent.limit_price or (takes[-1][0] if takes else best[1 if intent.side == "BUY" else 0])
            notional = (qty - reducing) * price * spec.contract_size
            leverage = intent.leverage or Decimal(1)
            if notional / leverage + notional * self.fee_tier().taker_fee_rate > self.futures_buying_power():
                return "PREVIEW_INSUFFICIENT_FUNDS_FOR_FUTURES", "not enough margin for this order"
            return None
        if intent.side == "SELL":
            need, currency = qty, spec.base_currency
        elif intent.kind == "MARKET":
            rate = self.fee_tier().taker_fee_rate
            cost = sum((p * s for p, s in takes), ZERO) * (1 + rate)
            need, currency = intent.quote_size or cost, spec.quote_currency
        else:
            need = qty * (intent.limit_price or ZERO) * (1 + self.fee_tier().taker_fee_rate)
            currency = spec.quote_currency
        if need > self._spendable(spec, currency):
            return "PREVIEW_INSUFFICIENT_FUND", f"Insufficient balance in source account ({currency})"
        return None

    # --- accounting queries ------------------------------------------------------------------------------

    def fee_tier(self) -> FeeTier:
        """The account's tier; like Coinbase, recomputed from 30-day volume at most once an hour."""
        now = self.clock.now()
        if self._tier is None or now - self._tier[1] >= FEE_TIER_REFRESH:
            self._tier = (tier_for_volume(self.volume_30d(), self.config.fee_tiers), now)
        return self._tier[0]

    def volume_30d(self) -> Decimal:
        since = self.clock.now() - VOLUME_WINDOW
        return sum((f.notional for f in self.fills if f.trade_time >= since), ZERO)

    def fees_30d(self) -> Decimal:
        since = self.clock.now() - VOLUME_WINDOW
        return sum((f.commission for f in self.fills if f.trade_time >= since), ZERO)

    def mark_price(self, product_id: str) -> Decimal:
        return self.market.last_price(product_id)

    def unrealized_pnl(self, pos: SimPosition) -> Decimal:
        spec = self.products[pos.product_id]
        return (self.mark_price(pos.product_id) - pos.entry_vwap) * pos.net_size * spec.contract_size

    def initial_margin(self, pos: SimPosition) -> Decimal:
        spec = self.products[pos.product_id]
        return abs(pos.net_size) * spec.contract_size * self.mark_price(pos.product_id) / pos.leverage

    def open_positions(self) -> list[SimPosition]:
        return [p for p in self.ledger.positions.values() if p.net_size != 0]

    def futures_buying_power(self) -> Decimal:
        """USD available, plus unrealized PnL, minus the initial margin of open positions."""
        positions = self.open_positions()
        upnl = sum((self.unrealized_pnl(p) for p in positions), ZERO)
        margin = sum((self.initial_margin(p) for p in positions), ZERO)
        return self.ledger.available("USD") + upnl - margin

    def open_orders(self) -> list[SimOrder]:
        return list(self._open.values())

    # --- internals: execution ---------------------------------------------------------------------------

    def _new_order(self, intent: OrderIntent) -> SimOrder:
        self.sequence += 1
        order = SimOrder(
            order_id=self._new_id(),
            client_order_id=intent.client_order_id or self._new_id(),
            product_id=intent.product_id,
            side=intent.side,
            kind=intent.kind,
            tif=intent.tif,
            config_key=intent.config_key,
            config={k: dict(v) for k, v in intent.config.items()},
            created_time=self.clock.now(),
            sequence=self.sequence,
            base_size=intent.base_size,
            quote_size=intent.quote_size,
            limit_price=intent.limit_price,
            stop_price=intent.stop_price,
            stop_direction=intent.stop_direction,
            end_time=intent.end_time,
            post_only=intent.post_only,
            reduce_only=intent.reduce_only,
            leverage=intent.leverage or Decimal(1),
            margin_type=intent.margin_type or "CROSS",
            status="OPEN",
        )
        self.orders[order.order_id] = order
        self._by_client_id[order.client_order_id] = order.order_id
        return order

    def _estimate_takes(self, spec: ProductSpec, intent: OrderIntent) -> list[Level]:
        bids, asks = self.market.book(spec.product_id)
        levels = asks if intent.side == "BUY" else bids
        if intent.kind == "STOP_LIMIT":
            return []
        if intent.quote_size is not None:
            return walk_quote(levels, intent.quote_size, self.fee_tier().taker_fee_rate, spec)
        return walk_base(levels, intent.side, intent.base_size or ZERO, intent.limit_price)

    def _take_and_rest(self, spec: ProductSpec, order: SimOrder) -> None:
        """Fill the marketable part as taker; rest, cancel or kill the remainder per time in force."""
        bids, asks = self.market.book(spec.product_id)
        levels = asks if order.side == "BUY" else bids
        if order.quote_size is not None:
            takes = walk_quote(levels, order.quote_size, self.fee_tier().taker_fee_rate, spec)
        else:
            takes = walk_base(levels, order.side, order.remaining, order.limit_price)
        if order.tif == "FOK" and filled(takes) < order.remaining:
            order.cancel_message = "Fill-or-kill order could not be filled in full"
            self._finish(order, "CANCELLED")
            return
        self._open[order.order_id] = order
        for price, size in takes:
            self._fill(order, price, size, "TAKER")
            if not order.is_open:
                return
        if order.quote_size is not None:
            self._finish(order, "FILLED" if takes else "CANCELLED")
        elif order.remaining == 0:
            self._finish(order, "FILLED")
        elif order.tif in ("IOC", "FOK"):
            order.cancel_message = "Immediate-or-cancel remainder cancelled"
            self._finish(order, "CANCELLED")
        else:
            self._rehold(order)

    def _maybe_trigger(self, order: SimOrder) -> None:
        last = self.market.last_price(order.product_id)
        stop = order.stop_price or ZERO
        up = order.stop_direction == "STOP_DIRECTION_STOP_UP"
        if (up and last >= stop) or (not up and last <= stop):
            order.trigger_status = "STOP_TRIGGERED"
            self._release(order)
            self._take_and_rest(self.products[order.product_id], order)
            self._touch(order)

    def _maybe_fill_resting(self, order: SimOrder) -> None:
        if order.limit_price is None:
            return
        best = self.market.best_bid_ask(order.product_id)
        if crosses(order.side, order.limit_price, *best):
            self._fill(order, order.limit_price, order.remaining, "MAKER")
            if order.is_open and order.remaining == 0:
                self._finish(order, "FILLED")
            self._touch(order)

    def _fill(self, order: SimOrder, price: Decimal, size: Decimal, liquidity: str) -> None:
        spec = self.products[order.product_id]
        if spec.is_future and order.reduce_only:
            pos = self.ledger.position(spec.product_id)
            reduces = pos.net_size != 0 and (pos.net_size > 0) == (order.side == "SELL")
            size = min(size, abs(pos.net_size)) if reduces else ZERO
            if size == 0:
                order.cancel_message = "Reduce-only order would increase the position"
                self._finish(order, "CANCELLED")
                return
        tier = self.fee_tier()
        rate = tier.maker_fee_rate if liquidity == "MAKER" else tier.taker_fee_rate
        notional = price * size * spec.contract_size
        fee = notional * rate
        self._release(order)
        quote = spec.quote_currency
        if spec.is_future:
            pos = self.ledger.position(spec.product_id)
            signed = size if order.side == "BUY" else -size
            realized = apply_position_fill(pos, signed, price, spec.contract_size)
            pos.leverage, pos.margin_type = order.leverage, order.margin_type
            self.ledger.add(quote, realized - fee)
        elif order.side == "BUY":
            self.ledger.add(quote, -(notional + fee))
            self.ledger.add(spec.base_currency, size)
        else:
            self.ledger.add(spec.base_currency, -size)
            self.ledger.add(quote, notional - fee)
        now = self.clock.now()
        order.filled_size += size
        order.filled_value += price * size
        order.total_fees += fee
        order.number_of_fills += 1
        order.last_fill_time = now
        self.sequence += 1
        self.fills.append(
            SimFill(
                self._new_id(),
                self._new_id(),
                order.order_id,
                spec.product_id,
                order.side,
                price,
                size,
                fee,
                liquidity,
                now,
                self.sequence,
                notional,
            )
        )
        self.market.record_fill(spec.product_id, price, size, order.side)
        if order.quote_size is None and order.remaining > 0:
            self._rehold(order)
        self._touch(order)

    def _touch(self, order: SimOrder) -> None:
        self.dirty = True
        self.changed_orders.add(order.order_id)

    def _finish(self, order: SimOrder, status: str) -> None:
        self._release(order)
        order.status = status
        self._open.pop(order.order_id, None)
        self._touch(order)

    # --- internals: holds --------------------------------------------------------------------------------

    def _hold_currency(self, spec: ProductSpec, order: SimOrder) -> str:
        if not spec.is_future and order.side == "SELL":
            return spec.base_currency
        return spec.quote_currency

    def _hold_needed(self, spec: ProductSpec, order: SimOrder, remaining: Decimal, price: Decimal) -> Decimal:
        taker = self.fee_tier().taker_fee_rate
        if spec.is_future:
            if order.reduce_only:
                return ZERO
            return remaining * spec.contract_size * price * (1 / order.leverage + taker)
        if order.side == "SELL":
            return remaining
        return remaining * price * (1 + taker)

    def _rehold(self, order: SimOrder) -> None:
        spec = self.products[order.product_id]
        self._release(order)
        amount = self._hold_needed(spec, order, order.remaining, order.limit_price or ZERO)
        order.hold_currency = self._hold_currency(spec, order)
        order.hold_amount = amount
        self.ledger.hold(order.hold_currency, amount)

    def _release(self, order: SimOrder) -> None:
        if order.hold_amount:
            self.ledger.release(order.hold_currency, order.hold_amount)
            order.hold_amount = ZERO

    def _spendable(self, spec: ProductSpec, currency: str) -> Decimal:
        available = self.ledger.available(currency)
        if currency == "USD" and self.open_positions():
            return min(available, self.futures_buying_power())
        return available

    # --- internals: funding ------------------------------------------------------------------------------

    def _funding_anchor(self, now: datetime) -> datetime:
        return now.replace(minute=0, second=0, microsecond=0)

    def _apply_funding(self, now: datetime) -> None:
        interval = min((p.funding_interval_seconds for p in self.products.values() if p.is_future), default=0)
        if not interval:
            return
        periods = int((now - self.last_funding).total_seconds() // interval)
        if periods <= 0:
            return
        self.last_funding += timedelta(seconds=interval * periods)
        for pos in self.open_positions():
            spec = self.products[pos.product_id]
            notional = pos.net_size * spec.contract_size * self.mark_price(pos.product_id)
            payment = notional * spec.funding_rate * min(periods, MAX_FUNDING_CATCH_UP)
            self.ledger.add(spec.quote_currency, -payment)
            pos.funding_paid += payment
            self.dirty = True

    def _edit_preview(self, spec: ProductSpec, order: SimOrder, size: Decimal, price: Decimal) -> Preview:
        best_bid, best_ask = self.market.best_bid_ask(spec.product_id)
        notional = size * price * spec.contract_size
        commission = notional * self.fee_tier().taker_fee_rate
        return Preview(
            errs=[],
            base_size=size,
            quote_size=notional,
            commission=commission,
            order_total=notional + commission if order.side == "BUY" else notional - commission,
            best_bid=best_bid,
            best_ask=best_ask,
            slippage=ZERO,
            leverage=order.leverage,
            margin_total=notional / order.leverage if spec.is_future else ZERO,
            max_leverage=spec.max_leverage if spec.is_future else None,
            average_price=order.average_filled_price,
        )

    def _spec_or_raise(self, product_id: str) -> ProductSpec:
        spec = self.products.get(product_id)
        if spec is None:
            raise KeyError(f"unknown product {product_id}")
        return spec

    # --- persistence -------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to meet the same exchange after a restart, as JSON-safe values."""
        return {
            "version": 1,
            "seed": self.config.seed,
            "sequence": self.sequence,
            "last_funding": iso(self.last_funding),
            "market": self.market.to_state(),
            "ledger": self.ledger.to_state(),
            "orders": [encode_record(o) for o in sorted(self.orders.values(), key=lambda o: o.sequence)],
            "fills": [encode_record(f) for f in self.fills],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.sequence = int(state["sequence"])
        self.last_funding = parse_time(state["last_funding"])
        self.market.load_state(state["market"])
        self.ledger.load_state(state["ledger"])
        self.orders, self._open, self._by_client_id = {}, {}, {}
        for raw in state["orders"]:
            order = decode_record(SimOrder, raw)
            self.orders[order.order_id] = order
            self._by_client_id[order.client_order_id] = order.order_id
            if order.is_open:
                self._open[order.order_id] = order
        self.fills = [decode_record(SimFill, raw) for raw in state["fills"]]
        self._tier = None
        self.dirty = False
