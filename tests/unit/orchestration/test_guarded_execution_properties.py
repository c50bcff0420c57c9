"""Property: no order that violates a configured limit ever reaches the broker.

Random limits, random starting positions and random batches of orders go through the real execution path
(``OrderExecutor.submit_all``: guards -> durable intents -> broker). A recording fake broker keeps what it was
asked to place; replaying those orders on the starting positions must never break a limit with an order that
grew a position -- including orders judged in the same cycle, whose intended exposure must count.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot_v2.config import BotSettings
from bot_v2.domain import OrderRequest, OrderType, Position, Quote, Side, Symbol
from bot_v2.monitoring.events import EventStore
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.execution import OrderExecutor
from bot_v2.orchestration.tracking import OrderTracker
from bot_v2.risk import RiskConfig, RiskEngine, RiskSnapshot
from bot_v2.state import StateManager
from tests.unit.orchestration.fakes import BTC, ETH, FakeBroker, product

NOW = datetime.now(UTC)
QUOTES = {
    BTC: Quote(BTC, Decimal("49999"), Decimal("50001"), NOW),
    ETH: Quote(ETH, Decimal("2999"), Decimal("3001"), NOW),
}
EQUITY = Decimal(100_000)

sizes = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("3"), places=4)
limits_usd = st.one_of(st.none(), st.decimals(min_value=Decimal(500), max_value=Decimal(200_000), places=0))
orders = st.lists(
    st.tuples(st.sampled_from([BTC, ETH]), st.sampled_from([Side.BUY, Side.SELL]), sizes),
    min_size=1,
    max_size=5,
)
start_positions = st.fixed_dictionaries(
    {
        BTC: st.decimals(min_value=Decimal(-1), max_value=Decimal(1), places=4),
        ETH: st.decimals(min_value=Decimal(-10), max_value=Decimal(10), places=4),
    }
)


def _value(symbol: Symbol, quantity: Decimal) -> Decimal:
    """The most lenient valuation (the bid): a guard valuing higher can only be stricter."""
    return abs(quantity) * QUOTES[symbol].bid


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=orders,
    start=start_positions,
    max_size=st.one_of(st.none(), st.decimals(min_value=Decimal("0.01"), max_value=Decimal(5), places=2)),
    max_notional=limits_usd,
    max_exposure=limits_usd,
    max_leverage=st.sampled_from([Decimal("0.5"), Decimal(1), Decimal(3)]),
)
async def test_no_order_breaking_a_limit_reaches_the_broker(
    batch: list[tuple[Symbol, Side, Decimal]],
    start: dict[Symbol, Decimal],
    max_size: Decimal | None,
    max_notional: Decimal | None,
    max_exposure: Decimal | None,
    max_leverage: Decimal,
    state: StateManager,
    settings: BotSettings,
) -> None:
    config = RiskConfig(
        max_position_size=max_size,
        max_notional_per_symbol_usd=max_notional,
        max_total_exposure_usd=max_exposure,
        max_leverage=max_leverage,
        max_orders_per_minute=None,
        max_open_positions=None,
        daily_loss_limit_pct=None,
        max_drawdown_pct=None,
        max_slippage_bps=None,
    )
    broker = FakeBroker()
    positions = {s: Position(s, q, QUOTES[s].mid) for s, q in start.items() if q != 0}
    snapshot = RiskSnapshot(
        equity_usd=EQUITY,
        positions=positions,
        quotes=QUOTES,
        products={BTC: product(BTC), ETH: product(ETH)},
        symbols=(BTC, ETH),
    )
    metrics = BotMetrics()
    events = EventStore(settings.events_path)
    try:
        executor = OrderExecutor(
            broker=broker,
            state=state,
            risk=RiskEngine(config),
            tracker=OrderTracker(metrics),
            events=events,
            metrics=metrics,
            client_id_prefix="pb-",
        )
        requests = [OrderRequest(sym, side, OrderType.MARKET, qty) for sym, side, qty in batch]
        await executor.submit_all(requests, snapshot, NOW)
    finally:
        events.close()

    held = dict(start)
    for placed in broker.placed:
        before = held.get(placed.symbol, Decimal(0))
        after = before + placed.side.sign * placed.quantity
        held[placed.symbol] = after
        grows = abs(after) > abs(before) or (before != 0 and after != 0 and (before > 0) != (after > 0))
        if not grows:
            continue  # reducing orders are allowed past the size/exposure limits by design
        if max_size is not None:
            assert abs(after) <= max_size, (placed, before, after)
        if max_notional is not None:
            assert _value(placed.symbol, after) <= max_notional, (placed, after)
        exposure = sum((_value(s, q) for s, q in held.items()), Decimal(0))
        if max_exposure is not None:
            assert exposure <= max_exposure, (placed, held)
        assert exposure <= max_leverage * EQUITY, (placed, held)
