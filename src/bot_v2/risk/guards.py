"""Pure risk guards.

Two kinds, both pure functions of their inputs (no clock, no I/O):

* state-level ``*_breach`` functions judge a ``RiskSnapshot`` at ``now`` and return a ``Breach`` (the reason
  and the trading state it imposes) or ``None``; ``RiskEngine.evaluate_cycle`` turns them into transitions.
* order guards take an ``OrderContext`` (order + snapshot + config + the engine's current facts) and return a
  ``GuardResult``; ``ORDER_GUARDS`` lists them in the order a verdict reports them.

Conventions every order guard follows: a *reducing* order (opposite side, no larger than the current
position, so it never flips) is never blocked by a size / exposure / loss limit -- only by HALT-level
conditions, stale marks, slippage, the order rate and the order's own validity. A flip counts as increasing
and is judged on the resulting position. Notionals are valued at the highest price the order can plausibly
see: ``max(bid, ask, limit, stop)`` for the traded symbol, the quote mid (else the position's mark) for the
others, times the product's ``contract_size`` (futures quantities are contracts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bot_v2.domain import OrderRequest, OrderType, Product, Quote, Side, Symbol
from bot_v2.errors import InvalidOrderError
from bot_v2.risk.config import DrawdownAction, RiskConfig
from bot_v2.risk.snapshot import RiskSnapshot
from bot_v2.risk.state import DailyPnlTracker, ReasonCode, TradingState

__all__ = [
    "ORDER_GUARDS",
    "Breach",
    "GuardResult",
    "OrderContext",
    "daily_loss_breach",
    "daily_pnl_pct",
    "daily_pnl_usd",
    "drawdown_breach",
    "drawdown_pct",
    "error_rate_breach",
    "is_reducing",
    "liquidation_buffer_breach",
    "mark_age_seconds",
    "staleness_breach",
    "volatility_breach",
    "volatility_level",
]

ZERO = Decimal(0)
ORDER_RATE_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Breach:
    """A tripped state-level guard: the reason code and the state it imposes."""

    reason: ReasonCode
    level: TradingState
    detail: str


@dataclass(frozen=True, slots=True)
class GuardResult:
    """One guard's answer about one order. ``warning`` marks a pass that deserves attention."""

    guard: str
    passed: bool
    reason: str
    warning: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"guard": self.guard, "passed": self.passed, "reason": self.reason, "warning": self.warning}


# --- measurements -------------------------------------------------------------------------------------------


def _today_tracker(tracker: DailyPnlTracker | None, now: datetime) -> DailyPnlTracker | None:
    """The tracker only counts on its own UTC day; after midnight the day starts from zero."""
    return tracker if tracker is not None and tracker.day == now.date() else None


def daily_pnl_usd(tracker: DailyPnlTracker | None, snapshot: RiskSnapshot, now: datetime) -> Decimal:
    """Return today's PnL (realized + change in unrealized) in USD; 0 before the day's tracker starts."""
    today = _today_tracker(tracker, now)
    return today.pnl_usd(snapshot.unrealized_pnl_usd) if today is not None else ZERO


def daily_pnl_pct(tracker: DailyPnlTracker | None, snapshot: RiskSnapshot, now: datetime) -> Decimal:
    """Return today's PnL as a percent of start-of-day equity (current equity when the start is unknown)."""
    today = _today_tracker(tracker, now)
    base = today.start_equity_usd if today is not None and today.start_equity_usd > 0 else snapshot.equity_usd
    if base <= 0:
        return ZERO
    return daily_pnl_usd(tracker, snapshot, now) / base * 100


def drawdown_pct(peak_equity_usd: Decimal, equity_usd: Decimal) -> Decimal:
    """Return the drop from the equity peak, percent (0 at or above the peak)."""
    peak = max(peak_equity_usd, equity_usd)
    if peak <= 0:
        return ZERO
    return (peak - equity_usd) / peak * 100


def mark_age_seconds(snapshot: RiskSnapshot, symbol: Symbol, now: datetime) -> float | None:
    """Return the age of ``symbol``'s quote in seconds (None when never seen; never negative)."""
    quote = snapshot.quotes.get(symbol)
    if quote is None:
        return None
    return max((now - quote.time).total_seconds(), 0.0)


def _is_stale(config: RiskConfig, snapshot: RiskSnapshot, symbol: Symbol, now: datetime) -> bool:
    age = mark_age_seconds(snapshot, symbol, now)
    return age is None or age > config.max_mark_staleness_seconds


def volatility_level(config: RiskConfig, move_pct: Decimal) -> tuple[TradingState | None, bool]:
    """Return (state imposed or None, warn) for a price move of ``move_pct`` percent."""
    if config.volatility_halt_pct is not None and move_pct >= config.volatility_halt_pct:
        return TradingState.HALTED, True
    if config.volatility_reduce_only_pct is not None and move_pct >= config.volatility_reduce_only_pct:
        return TradingState.REDUCE_ONLY, True
    warn = config.volatility_warn_pct is not None and move_pct >= config.volatility_warn_pct
    return None, warn


def _error_rate_level(config: RiskConfig, snapshot: RiskSnapshot) -> TradingState | None:
    if snapshot.cycle_count == 0 or snapshot.cycle_count < config.error_rate_min_samples:
        return None
    rate = snapshot.error_rate_pct
    if config.error_rate_halt_pct is not None and rate >= config.error_rate_halt_pct:
        return TradingState.HALTED
    if config.error_rate_reduce_only_pct is not None and rate >= config.error_rate_reduce_only_pct:
        return TradingState.REDUCE_ONLY
    return None


def is_reducing(current_quantity: Decimal, side: Side, quantity: Decimal) -> bool:
    """True when the order shrinks |position| without flipping it (opposite side, size <= |position|)."""
    if current_quantity == 0 or quantity <= 0:
        return False
    opposite = (current_quantity > 0 and side is Side.SELL) or (current_quantity < 0 and side is Side.BUY)
    return opposite and quantity <= abs(current_quantity)


# --- state-level breaches -----------------------------------------------------------------------------------


def daily_loss_breach(
    config: RiskConfig, tracker: DailyPnlTracker | None, snapshot: RiskSnapshot, now: datetime
) -> Breach | None:
    """Trip REDUCE_ONLY when today's loss reaches ``daily_loss_limit_usd`` or ``daily_loss_limit_pct``."""
    pnl = daily_pnl_usd(tracker, snapshot, now)
    if pnl >= 0:
        return None
    loss = -pnl
    pct = -daily_pnl_pct(tracker, snapshot, now)
    if config.daily_loss_limit_usd is not None and loss >= config.daily_loss_limit_usd:
        return Breach(
            ReasonCode.DAILY_LOSS_LIMIT,
            TradingState.REDUCE_ONLY,
            f"daily loss {loss:.2f} USD >= limit {config.daily_loss_limit_usd} USD",
        )
    if config.daily_loss_limit_pct is not None and pct >= config.daily_loss_limit_pct:
        return Breach(
            ReasonCode.DAILY_LOSS_LIMIT,
            TradingState.REDUCE_ONLY,
            f"daily loss {pct:.2f}% >= limit {config.daily_loss_limit_pct}%",
        )
    return None


def drawdown_breach(config: RiskConfig, peak_equity_usd: Decimal, equity_usd: Decimal) -> Breach | None:
    """Trip HALTED or REDUCE_ONLY (``drawdown_action``) when the drop from the peak reaches the limit."""
    if config.max_drawdown_pct is None:
        return None
    dd = drawdown_pct(peak_equity_usd, equity_usd)
    if dd < config.max_drawdown_pct:
        return None
    level = TradingState.HALTED if config.drawdown_action is DrawdownAction.HALT else TradingState.REDUCE_ONLY
    peak = max(peak_equity_usd, equity_usd)
    return Breach(
        ReasonCode.DRAWDOWN,
        level,
        f"drawdown {dd:.2f}% from peak {peak:.2f} USD >= limit {config.max_drawdown_pct}%",
    )


def staleness_breach(config: RiskConfig, snapshot: RiskSnapshot, now: datetime) -> Breach | None:
    """Trip REDUCE_ONLY when any traded symbol's quote is older than the limit or was never seen."""
    stale = [sym for sym in snapshot.symbols if _is_stale(config, snapshot, sym, now)]
    if not stale:
        return None
    return Breach(
        ReasonCode.MARK_STALE,
        TradingState.REDUCE_ONLY,
        f"stale marks (> {config.max_mark_staleness_seconds:g}s or never seen): {', '.join(sorted(stale))}",
    )


def volatility_breach(config: RiskConfig, snapshot: RiskSnapshot) -> Breach | None:
    """Trip REDUCE_ONLY / HALTED when any symbol's price move reaches the reduce-only / halt threshold."""
    worst: TradingState | None = None
    hits: list[str] = []
    for sym, move in sorted(snapshot.volatility_pct.items()):
        level, _ = volatility_level(config, move)
        if level is None:
            continue
        hits.append(f"{sym} {move:.2f}%")
        worst = level if worst is None else worst.worst(level)
    if worst is None:
        return None
    return Breach(ReasonCode.VOLATILITY, worst, f"price move over threshold: {', '.join(hits)}")


def error_rate_breach(config: RiskConfig, snapshot: RiskSnapshot) -> Breach | None:
    """Trip REDUCE_ONLY / HALTED when the cycle error rate reaches its thresholds (after min samples)."""
    level = _error_rate_level(config, snapshot)
    if level is None:
        return None
    return Breach(
        ReasonCode.ERROR_RATE,
        level,
        f"error rate {snapshot.error_rate_pct:.1f}% ({snapshot.error_count}/{snapshot.cycle_count} cycles)",
    )


def liquidation_buffer_breach(config: RiskConfig, snapshot: RiskSnapshot) -> Breach | None:
    """Trip REDUCE_ONLY when the derivatives liquidation buffer is below the minimum."""
    buffer = snapshot.liquidation_buffer_pct
    if config.min_liquidation_buffer_pct is None or buffer is None:
        return None
    if buffer >= config.min_liquidation_buffer_pct:
        return None
    return Breach(
        ReasonCode.LIQUIDATION_BUFFER,
        TradingState.REDUCE_ONLY,
        f"liquidation buffer {buffer}% < minimum {config.min_liquidation_buffer_pct}%",
    )


# --- order guards -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderContext:
    """Everything an order guard may look at. Built by ``RiskEngine.check_order``; pure data."""

    order: OrderRequest
    snapshot: RiskSnapshot
    config: RiskConfig
    now: datetime
    trading_state: TradingState
    state_detail: str
    kill_switch: bool
    reduce_only_mode: bool
    daily_pnl_tracker: DailyPnlTracker | None
    equity_peak_usd: Decimal
    recent_order_times: tuple[datetime, ...]

    @property
    def current_quantity(self) -> Decimal:
        return self.snapshot.position_quantity(self.order.symbol)

    @property
    def new_quantity(self) -> Decimal:
        return self.current_quantity + self.order.side.sign * self.order.quantity

    @property
    def reducing(self) -> bool:
        return is_reducing(self.current_quantity, self.order.side, self.order.quantity)

    @property
    def quote(self) -> Quote | None:
        return self.snapshot.quotes.get(self.order.symbol)

    @property
    def product(self) -> Product | None:
        return self.snapshot.products.get(self.order.symbol)

    @property
    def valuation_price(self) -> Decimal | None:
        """The highest price the order may plausibly see (quote, limit, stop); None when nothing is known."""
        candidates = [p for p in (self.order.limit_price, self.order.stop_price) if p is not None]
        if self.quote is not None:
            candidates += [self.quote.bid, self.quote.ask]
        candidates = [p for p in candidates if p > 0]
        return max(candidates) if candidates else None

    @property
    def new_notional_usd(self) -> Decimal | None:
        price = self.valuation_price
        if price is None:
            return None
        return abs(self.new_quantity) * self.snapshot.contract_size(self.order.symbol) * price


Guard = Callable[[OrderContext], GuardResult]


def _ok(name: str, reason: str, warning: bool = False) -> GuardResult:
    return GuardResult(name, True, reason, warning)


def _deny(name: str, reason: str) -> GuardResult:
    return GuardResult(name, False, reason)


def guard_trading_state(ctx: OrderContext) -> GuardResult:
    """HALTED denies everything; REDUCE_ONLY passes only reducing orders."""
    name = "trading_state"
    if ctx.trading_state is TradingState.HALTED:
        return _deny(name, f"trading HALTED ({ctx.state_detail})")
    if ctx.trading_state is TradingState.REDUCE_ONLY and not ctx.reducing:
        return _deny(name, f"REDUCE_ONLY ({ctx.state_detail}) and this order does not reduce the position")
    return _ok(name, f"state {ctx.trading_state.value}")


def guard_kill_switch(ctx: OrderContext) -> GuardResult:
    """The kill switch (config or runtime control) denies every order."""
    if ctx.kill_switch:
        return _deny("kill_switch", "kill switch is on")
    return _ok("kill_switch", "kill switch off")


def guard_reduce_only(ctx: OrderContext) -> GuardResult:
    """Reduce-only mode, or an order flagged reduce-only, requires the order to shrink the position."""
    name = "reduce_only"
    if ctx.reducing:
        return _ok(name, "order reduces the position")
    if ctx.reduce_only_mode:
        return _deny(
            name, f"reduce-only mode: order would move position {ctx.current_quantity} -> {ctx.new_quantity}"
        )
    if ctx.order.reduce_only:
        return _deny(
            name,
            f"order is flagged reduce-only but moves position {ctx.current_quantity} -> {ctx.new_quantity}",
        )
    return _ok(name, "reduce-only mode off")


def guard_product(ctx: OrderContext) -> GuardResult:
    """The product must be known, tradable, and the order must fit its increments and limits."""
    name = "product"
    product = ctx.product
    if product is None:
        return _deny(name, f"unknown product {ctx.order.symbol}")
    if product.trading_disabled:
        return _deny(name, f"trading is disabled on {product.symbol}")
    try:
        ctx.order.validate_for(product)
    except InvalidOrderError as exc:
        return _deny(name, str(exc))
    return _ok(name, "order fits the product's increments and limits")


def guard_mark_staleness(ctx: OrderContext) -> GuardResult:
    """The symbol's quote must be younger than ``max_mark_staleness_seconds`` (never seen = stale)."""
    name = "mark_staleness"
    age = mark_age_seconds(ctx.snapshot, ctx.order.symbol, ctx.now)
    limit = ctx.config.max_mark_staleness_seconds
    if age is None:
        return _deny(name, f"no quote seen yet for {ctx.order.symbol} (never seen counts as stale)")
    if age > limit:
        return _deny(name, f"mark is {age:.1f}s old (limit {limit:g}s)")
    return _ok(name, f"mark is {age:.1f}s old (limit {limit:g}s)")


def guard_max_leverage(ctx: OrderContext) -> GuardResult:
    """Account leverage after the order (total exposure / equity) and the order's leverage <= max."""
    name = "max_leverage"
    if ctx.reducing:
        return _ok(name, "reducing order")
    limit = ctx.config.max_leverage
    if ctx.order.leverage is not None and ctx.order.leverage > limit:
        return _deny(name, f"order leverage {ctx.order.leverage} > max {limit}")
    notional = ctx.new_notional_usd
    if notional is None:
        return _deny(name, "no price to value the order")
    equity = ctx.snapshot.equity_usd
    if equity <= 0:
        return _deny(name, f"equity {equity} USD <= 0")
    exposure = ctx.snapshot.total_exposure_usd(exclude=ctx.order.symbol) + notional
    leverage = exposure / equity
    if leverage > limit:
        return _deny(name, f"leverage after order {leverage:.2f}x > max {limit}x")
    return _ok(name, f"leverage after order {leverage:.2f}x <= max {limit}x")


def guard_max_position_size(ctx: OrderContext) -> GuardResult:
    """|position| after the order <= the symbol's max size (base units)."""
    name = "max_position_size"
    limit = ctx.config.position_size_limit(ctx.order.symbol)
    if limit is None:
        return _ok(name, "no limit")
    if ctx.reducing:
        return _ok(name, "reducing order")
    size = abs(ctx.new_quantity)
    if size > limit:
        return _deny(name, f"position after order {size} > max {limit}")
    return _ok(name, f"position after order {size} <= max {limit}")


def guard_max_notional_per_symbol(ctx: OrderContext) -> GuardResult:
    """|position| x price after the order <= ``max_notional_per_symbol_usd``."""
    name = "max_notional_per_symbol"
    limit = ctx.config.max_notional_per_symbol_usd
    if limit is None:
        return _ok(name, "no limit")
    if ctx.reducing:
        return _ok(name, "reducing order")
    notional = ctx.new_notional_usd
    if notional is None:
        return _deny(name, "no price to value the order")
    if notional > limit:
        return _deny(name, f"notional after order {notional:.2f} USD > max {limit} USD")
    return _ok(name, f"notional after order {notional:.2f} USD <= max {limit} USD")


def guard_max_total_exposure(ctx: OrderContext) -> GuardResult:
    """Sum of all position notionals after the order <= ``max_total_exposure_usd``."""
    name = "max_total_exposure"
    limit = ctx.config.max_total_exposure_usd
    if limit is None:
        return _ok(name, "no limit")
    if ctx.reducing:
        return _ok(name, "reducing order")
    notional = ctx.new_notional_usd
    if notional is None:
        return _deny(name, "no price to value the order")
    exposure = ctx.snapshot.total_exposure_usd(exclude=ctx.order.symbol) + notional
    if exposure > limit:
        return _deny(name, f"total exposure after order {exposure:.2f} USD > max {limit} USD")
    return _ok(name, f"total exposure after order {exposure:.2f} USD <= max {limit} USD")


def guard_open_positions(ctx: OrderContext) -> GuardResult:
    """Opening a position in a new symbol needs fewer than ``max_open_positions`` open already."""
    name = "open_positions"
    limit = ctx.config.max_open_positions
    count = ctx.snapshot.open_positions_count
    if limit is None:
        return _ok(name, "no limit")
    if ctx.current_quantity != 0:
        return _ok(name, "symbol already has a position")
    if count >= limit:
        return _deny(name, f"{count} positions open, max {limit}")
    return _ok(name, f"{count} positions open, max {limit}")


def guard_daily_loss(ctx: OrderContext) -> GuardResult:
    """After the daily loss limit is reached only reducing orders pass (until 00:00 UTC)."""
    name = "daily_loss"
    breach = daily_loss_breach(ctx.config, ctx.daily_pnl_tracker, ctx.snapshot, ctx.now)
    if breach is not None and not ctx.reducing:
        return _deny(name, breach.detail)
    pnl = daily_pnl_usd(ctx.daily_pnl_tracker, ctx.snapshot, ctx.now)
    return _ok(name, breach.detail + " (reducing order)" if breach else f"daily PnL {pnl:.2f} USD")


def guard_drawdown(ctx: OrderContext) -> GuardResult:
    """A drawdown breach denies every order (HALT) or increasing ones (REDUCE_ONLY)."""
    name = "drawdown"
    breach = drawdown_breach(ctx.config, ctx.equity_peak_usd, ctx.snapshot.equity_usd)
    if breach is None:
        dd = drawdown_pct(ctx.equity_peak_usd, ctx.snapshot.equity_usd)
        return _ok(name, f"drawdown {dd:.2f}%")
    return _by_level(name, breach.level, breach.detail, ctx.reducing)


def guard_volatility(ctx: OrderContext) -> GuardResult:
    """The symbol's price move: warn passes, reduce-only threshold denies increasing, halt denies all."""
    name = "volatility"
    move = ctx.snapshot.volatility_pct.get(ctx.order.symbol, ZERO)
    level, warn = volatility_level(ctx.config, move)
    detail = f"price move {move:.2f}%"
    if level is None:
        return _ok(name, detail + (" (warning threshold reached)" if warn else ""), warning=warn)
    return _by_level(name, level, detail + f" reached the {level.value} threshold", ctx.reducing)


def guard_error_rate(ctx: OrderContext) -> GuardResult:
    """The cycle error rate: reduce-only threshold denies increasing orders, halt threshold denies all."""
    name = "error_rate"
    level = _error_rate_level(ctx.config, ctx.snapshot)
    detail = f"error rate {ctx.snapshot.error_rate_pct:.1f}%"
    if level is None:
        return _ok(name, detail)
    return _by_level(name, level, detail + f" reached the {level.value} threshold", ctx.reducing)


def guard_slippage(ctx: OrderContext) -> GuardResult:
    """Expected fill price distance from the mid must be <= ``max_slippage_bps``.

    Market: the touch (ask for a buy, bid for a sell) plus ``expected_slippage_bps``. Limit: the limit price.
    Stop-limit: the limit price against the stop price (the order is judged where it will trigger).
    """
    name = "slippage"
    limit = ctx.config.max_slippage_bps
    if limit is None:
        return _ok(name, "no limit")
    order, quote = ctx.order, ctx.quote
    if order.order_type is OrderType.STOP_LIMIT and order.stop_price and order.limit_price:
        reference, price = order.stop_price, order.limit_price
    elif quote is None or quote.mid <= 0:
        return _deny(name, "no quote to measure slippage against")
    elif order.order_type is OrderType.MARKET or order.limit_price is None:
        reference = quote.mid
        touch = quote.ask if order.side is Side.BUY else quote.bid
        extra = ctx.snapshot.expected_slippage_bps.get(order.symbol, ZERO)
        price = touch * (1 + order.side.sign * extra / 10_000)
    else:
        reference, price = quote.mid, order.limit_price
    bps = order.side.sign * (price - reference) / reference * 10_000
    if bps > limit:
        return _deny(name, f"expected slippage {bps:.1f} bps > max {limit} bps")
    return _ok(name, f"expected slippage {max(bps, ZERO):.1f} bps <= max {limit} bps")


def guard_order_rate(ctx: OrderContext) -> GuardResult:
    """Fewer than ``max_orders_per_minute`` orders submitted in the last 60 s."""
    name = "order_rate"
    limit = ctx.config.max_orders_per_minute
    if limit is None:
        return _ok(name, "no limit")
    since = ctx.now - ORDER_RATE_WINDOW
    count = sum(1 for t in ctx.recent_order_times if since < t <= ctx.now)
    if count >= limit:
        return _deny(name, f"{count} orders in the last 60s, max {limit}")
    return _ok(name, f"{count} orders in the last 60s, max {limit}")


def guard_liquidation_buffer(ctx: OrderContext) -> GuardResult:
    """Derivatives: below ``min_liquidation_buffer_pct`` only reducing orders pass."""
    name = "liquidation_buffer"
    product = ctx.product
    if product is None or not product.is_derivative:
        return _ok(name, "not a derivative")
    breach = liquidation_buffer_breach(ctx.config, ctx.snapshot)
    if breach is None:
        buffer = ctx.snapshot.liquidation_buffer_pct
        return _ok(name, "buffer not reported" if buffer is None else f"liquidation buffer {buffer}%")
    return _by_level(name, breach.level, breach.detail, ctx.reducing)


def guard_funding(ctx: OrderContext) -> GuardResult:
    """Perpetual-style futures: with |funding rate| above ``max_funding_rate`` an order may not open or grow a
    position on the side that pays it (long when the rate is positive, short when negative); reducing orders
    and the receiving side pass."""
    name = "funding"
    limit = ctx.config.max_funding_rate
    product = ctx.product
    if product is None or not product.perpetual:
        return _ok(name, "not a perpetual")
    rate = product.funding_rate
    if limit is None or rate is None:
        return _ok(name, "no limit" if limit is None else "funding rate not reported")
    if abs(rate) <= limit or ctx.reducing:
        return _ok(
            name, f"funding rate {rate} (max |{limit}|)" + (" (reducing order)" if ctx.reducing else "")
        )
    paying = Side.BUY if rate > 0 else Side.SELL
    if ctx.order.side is not paying:
        return _ok(name, f"funding rate {rate}: this side receives it")
    return _deny(name, f"funding rate {rate} above |{limit}|: {ctx.order.side.value} would pay it")


def _by_level(name: str, level: TradingState, detail: str, reducing: bool) -> GuardResult:
    if level is TradingState.HALTED:
        return _deny(name, detail)
    if level is TradingState.REDUCE_ONLY and not reducing:
        return _deny(name, detail)
    return _ok(name, detail + " (reducing order)", warning=True)


ORDER_GUARDS: tuple[Guard, ...] = (
    guard_trading_state,
    guard_kill_switch,
    guard_reduce_only,
    guard_product,
    guard_mark_staleness,
    guard_max_leverage,
    guard_max_position_size,
    guard_max_notional_per_symbol,
    guard_max_total_exposure,
    guard_open_positions,
    guard_daily_loss,
    guard_drawdown,
    guard_volatility,
    guard_error_rate,
    guard_slippage,
    guard_order_rate,
    guard_liquidation_buffer,
    guard_funding,
)
"""Every order guard, in the order a ``RiskVerdict`` lists them."""
