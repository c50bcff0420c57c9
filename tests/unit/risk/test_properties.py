"""Property tests: no order that breaks a configured limit ever gets a passing verdict."""

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot_v2.domain import OrderRequest, OrderType, Position, Quote, Side, Symbol, TimeInForce
from bot_v2.risk import DrawdownAction, ReasonCode, RiskConfig, RiskEngine, RiskSnapshot, TradingState
from bot_v2.risk.guards import daily_loss_breach, drawdown_breach

from .factories import BTC, ETH, NOW, PERP, product

SYMBOLS = (BTC, ETH, PERP)
PRODUCTS = {BTC: product(BTC), ETH: product(ETH), PERP: product(PERP, derivative=True)}
MIDS = {BTC: Decimal(50000), ETH: Decimal(3000), PERP: Decimal(50000)}

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def dec(lo: str, hi: str, places: int = 2) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(lo), Decimal(hi), places=places, allow_nan=False, allow_infinity=False)


def optional(s: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.none(), s)


def rarely(draw: st.DrawFn, one_in: int = 10) -> bool:
    """True about once in ``one_in`` draws: trips are rare so most examples reach the limit guards."""
    # hypothesis favours boundary values (0, max), so take a residue of a wide range instead
    return draw(st.integers(0, 10**6)) % one_in == 1


@st.composite
def configs(draw: st.DrawFn) -> RiskConfig:
    vols = sorted(draw(st.lists(dec("0.5", "20"), min_size=3, max_size=3)))
    return RiskConfig(
        kill_switch_enabled=rarely(draw, 20),
        reduce_only_mode=rarely(draw, 10),
        max_leverage=draw(dec("0.5", "10")),
        max_position_size=draw(optional(dec("0.01", "5"))),  # type: ignore[arg-type]
        max_position_size_by_symbol=draw(
            st.dictionaries(st.sampled_from(SYMBOLS), dec("0.01", "50"), max_size=2)
        ),
        max_notional_per_symbol_usd=draw(optional(dec("100", "200000"))),  # type: ignore[arg-type]
        max_total_exposure_usd=draw(optional(dec("100", "300000"))),  # type: ignore[arg-type]
        daily_loss_limit_pct=draw(optional(dec("0.5", "10"))),  # type: ignore[arg-type]
        daily_loss_limit_usd=draw(optional(dec("10", "5000"))),  # type: ignore[arg-type]
        max_drawdown_pct=draw(optional(dec("1", "50"))),  # type: ignore[arg-type]
        drawdown_action=draw(st.sampled_from(DrawdownAction)),
        max_mark_staleness_seconds=draw(st.floats(5, 120)),
        volatility_warn_pct=vols[0],
        volatility_reduce_only_pct=vols[1],
        volatility_halt_pct=vols[2],
        max_slippage_bps=draw(optional(dec("1", "200"))),  # type: ignore[arg-type]
        max_orders_per_minute=draw(optional(st.integers(1, 10))),  # type: ignore[arg-type]
        max_open_positions=draw(optional(st.integers(1, 3))),  # type: ignore[arg-type]
        min_liquidation_buffer_pct=draw(optional(dec("0", "50"))),  # type: ignore[arg-type]
    )


@st.composite
def snapshots(draw: st.DrawFn) -> RiskSnapshot:
    positions: dict[Symbol, Position] = {}
    quotes: dict[Symbol, Quote] = {}
    for sym in SYMBOLS:
        inc = PRODUCTS[sym].base_increment
        steps = draw(st.integers(-10000, 10000)) if sym != PERP else draw(st.integers(-40, 40))
        if draw(st.booleans()) and steps:
            mark = MIDS[sym] * draw(dec("0.8", "1.2"))
            positions[sym] = Position(
                sym, steps * inc, mark, mark_price=mark, unrealized_pnl=draw(dec("-3000", "3000"))
            )
        if not rarely(draw, 20):
            mid = MIDS[sym] * draw(dec("0.9", "1.1"))
            spread = mid * draw(st.one_of(dec("0", "0.001", 5), dec("0", "0.01", 4)))
            age = draw(st.one_of(st.floats(0, 5), st.floats(0, 200)))
            quotes[sym] = Quote(sym, mid - spread / 2, mid + spread / 2, NOW - timedelta(seconds=age))
    cycles = draw(st.integers(0, 40))
    return RiskSnapshot(
        equity_usd=draw(st.one_of(dec("20000", "500000"), dec("-1000", "500000"))),
        positions=positions,
        quotes=quotes,
        products=PRODUCTS,
        symbols=SYMBOLS,
        volatility_pct={s: draw(dec("0", "25")) for s in SYMBOLS if rarely(draw, 5)},
        error_count=draw(st.integers(0, cycles)) if rarely(draw, 5) else 0,
        cycle_count=cycles,
        liquidation_buffer_pct=draw(dec("0", "100")) if rarely(draw, 2) else None,
    )


@st.composite
def orders(draw: st.DrawFn, snap: RiskSnapshot) -> OrderRequest:
    sym = draw(st.sampled_from(SYMBOLS))
    inc = PRODUCTS[sym].base_increment
    current = snap.position_quantity(sym)
    if current and draw(st.booleans()):
        steps = max(int(abs(current) / inc) + draw(st.integers(-5, 5)), 1)  # near a full close / flip
    else:
        steps = draw(st.integers(1, 10000 if sym != PERP else 80))
    order_type = draw(st.sampled_from([OrderType.MARKET, OrderType.LIMIT]))
    limit = None
    if order_type is OrderType.LIMIT:
        quote = snap.quotes.get(sym)
        ref = quote.mid if quote is not None else MIDS[sym]
        limit = (ref * draw(st.one_of(dec("0.995", "1.005", 4), dec("0.9", "1.1")))).quantize(Decimal("0.01"))
    return OrderRequest(
        symbol=sym,
        side=draw(st.sampled_from(Side)),
        order_type=order_type,
        quantity=steps * inc,
        limit_price=limit,
        time_in_force=TimeInForce.IOC if order_type is OrderType.MARKET else TimeInForce.GTC,
        reduce_only=sym == PERP and rarely(draw, 4),
        leverage=draw(dec("1", "10")) if sym == PERP and rarely(draw, 3) else None,
    )


@st.composite
def engines(draw: st.DrawFn, cfg: RiskConfig) -> RiskEngine:
    engine = RiskEngine(cfg)
    if draw(st.booleans()):
        engine.evaluate_cycle(draw(snapshots()), NOW - timedelta(minutes=draw(st.integers(1, 600))))
    if rarely(draw, 3):
        engine.record_realized_pnl(draw(dec("-5000", "1000")), NOW)
    engine.apply_controls(rarely(draw, 20), rarely(draw, 10), NOW)
    if rarely(draw, 10):
        engine.raise_reason(
            ReasonCode.MANUAL,
            draw(st.sampled_from([TradingState.REDUCE_ONLY, TradingState.HALTED])),
            "x",
            NOW,
        )
    for _ in range(draw(st.integers(0, 12))):
        engine.record_order(NOW - timedelta(seconds=draw(st.integers(0, 120))))
    return engine


def exposure_of(snap: RiskSnapshot, sym: Symbol) -> Decimal:
    pos = snap.positions.get(sym)
    if pos is None:
        return Decimal(0)
    q = snap.quotes.get(sym)
    mark = q.mid if q is not None else pos.mark_price
    assert mark is not None
    return abs(pos.quantity) * PRODUCTS[sym].contract_size * mark


@SETTINGS
@given(data=st.data())
def test_no_passing_order_breaks_a_limit(data: st.DataObject) -> None:
    cfg = data.draw(configs())
    engine = data.draw(engines(cfg))
    snap = data.draw(snapshots())
    if data.draw(st.booleans()):
        engine.evaluate_cycle(snap, NOW)
    order = data.draw(orders(snap))
    verdict = engine.check_order(order, snap, NOW)
    if not verdict.allowed:
        assert verdict.denials
        return

    sym = order.symbol
    current = snap.position_quantity(sym)
    new = current + order.side.sign * order.quantity
    reducing = current != 0 and (current > 0) != (order.side is Side.BUY) and order.quantity <= abs(current)

    assert engine.state is not TradingState.HALTED
    assert not engine.kill_switch_active
    if engine.state is TradingState.REDUCE_ONLY or engine.reduce_only_active or order.reduce_only:
        assert reducing and abs(new) < abs(current)
    quote = snap.quotes.get(sym)
    assert quote is not None and (NOW - quote.time).total_seconds() <= cfg.max_mark_staleness_seconds
    vol = snap.volatility_pct.get(sym, Decimal(0))
    assert cfg.volatility_halt_pct is None or vol < cfg.volatility_halt_pct
    assert drawdown_breach(cfg, engine.equity_peak_usd, snap.equity_usd) is None or (
        reducing and cfg.drawdown_action is DrawdownAction.REDUCE_ONLY
    )
    if reducing:
        return
    # increasing (or flipping) orders: the resulting position is within every limit
    assert cfg.volatility_reduce_only_pct is None or vol < cfg.volatility_reduce_only_pct
    assert daily_loss_breach(cfg, engine.daily_pnl_tracker, snap, NOW) is None
    price = max(p for p in (quote.bid, quote.ask, order.limit_price or Decimal(0)))
    notional = abs(new) * PRODUCTS[sym].contract_size * price
    size_limit = cfg.max_position_size_by_symbol.get(sym, cfg.max_position_size)
    assert size_limit is None or abs(new) <= size_limit
    assert cfg.max_notional_per_symbol_usd is None or notional <= cfg.max_notional_per_symbol_usd
    total = sum((exposure_of(snap, s) for s in SYMBOLS if s != sym), start=Decimal(0)) + notional
    assert cfg.max_total_exposure_usd is None or total <= cfg.max_total_exposure_usd
    assert snap.equity_usd > 0 and total / snap.equity_usd <= cfg.max_leverage
    assert order.leverage is None or order.leverage <= cfg.max_leverage
    if current == 0 and cfg.max_open_positions is not None:
        assert snap.open_positions_count < cfg.max_open_positions
    if (
        PRODUCTS[sym].is_derivative
        and cfg.min_liquidation_buffer_pct is not None
        and snap.liquidation_buffer_pct is not None
    ):
        assert snap.liquidation_buffer_pct >= cfg.min_liquidation_buffer_pct


@SETTINGS
@given(data=st.data())
def test_halted_never_passes(data: st.DataObject) -> None:
    cfg = data.draw(configs())
    engine = data.draw(engines(cfg))
    engine.raise_reason(ReasonCode.MANUAL, TradingState.HALTED, "halt", NOW)
    snap = data.draw(snapshots())
    assert not engine.check_order(data.draw(orders(snap)), snap, NOW).allowed


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_restore_gives_identical_decisions(data: st.DataObject) -> None:
    cfg = data.draw(configs())
    engine = data.draw(engines(cfg))
    restored = RiskEngine.restore(cfg, engine.export_state())
    snap = data.draw(snapshots())
    order = data.draw(orders(snap))
    assert restored.check_order(order, snap, NOW) == engine.check_order(order, snap, NOW)
    assert restored.evaluate_cycle(snap, NOW) == engine.evaluate_cycle(snap, NOW)
    assert restored.export_state() == engine.export_state()
