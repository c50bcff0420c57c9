from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot_v2.domain import Candle, Symbol
from bot_v2.errors import ConfigError, StateIntegrityError
from bot_v2.strategies import (
    Action,
    HoldStrategy,
    MomentumParams,
    MomentumStrategy,
    PriceHistory,
    available_strategies,
    create_strategy,
    realized_volatility_pct,
    register_strategy,
    size_for_notional,
    sma,
)

from .factories import BTC, NOW, D, long, product, view

ETH = Symbol("ETH-USD")


def test_registry() -> None:
    assert {"hold", "ma_crossover", "momentum"} <= set(available_strategies())
    assert isinstance(create_strategy("HOLD"), HoldStrategy)
    with pytest.raises(ConfigError, match=r"unknown strategy 'nope'.*ma_crossover"):
        create_strategy("nope")
    with pytest.raises(ConfigError, match=r"strategy.hold.x"):
        create_strategy("hold", {"x": 1})
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("hold", HoldStrategy.from_params)


def test_hold_never_trades() -> None:
    d = HoldStrategy().decide(view([100, 200, 50]), long())
    assert d.action is Action.HOLD and d.quantity == 0


def test_momentum() -> None:
    strat = MomentumStrategy(MomentumParams(lookback=3, entry_threshold_pct=D(2), exit_threshold_pct=D(1)))
    assert strat.decide(view([100, 100, 100]), None).action is Action.HOLD  # warming up
    assert strat.decide(view([100, 100, 101, 101]), None).action is Action.HOLD
    buy = strat.decide(view([100, 100, 101, 103]), None)
    assert buy.action is Action.BUY and buy.quantity > 0
    assert strat.decide(view([100, 101, 102, 100]), long()).action is Action.HOLD  # 0 %: stay long
    assert strat.decide(view([100, 101, 102, 99]), long()).action is Action.CLOSE  # -1 %
    with pytest.raises(ConfigError, match="lookback"):
        create_strategy("momentum", {"lookback": 0})


def test_sma_and_volatility() -> None:
    assert sma([D(1), D(2), D(3), D(4)], 2) == D("3.5")
    assert realized_volatility_pct([D(100)] * 5) == 0
    assert realized_volatility_pct([D(100), D(110), D(99), D(108.9)]) > 5


def test_size_for_notional_contracts() -> None:
    perp = product(base_increment=D(1), base_min_size=D(1), contract_size=D("0.01"), quote_min_size=D(0))
    # 1000 USD at 50000 per BTC = 0.02 BTC = 2 contracts of 0.01
    assert size_for_notional(perp, D(1000), D(50000)) == D(2)
    assert size_for_notional(perp, D(400), D(50000)) == 0


@settings(max_examples=200, deadline=None)
@given(
    notional=st.decimals(D(0), D(10**6), places=2),
    price=st.decimals(D("0.01"), D(10**5), places=2),
    inc=st.sampled_from([D("0.00000001"), D("0.001"), D("0.1"), D(1)]),
    min_mult=st.integers(1, 100),
)
def test_size_for_notional_properties(notional: Decimal, price: Decimal, inc: Decimal, min_mult: int) -> None:
    prod = product(
        base_increment=inc, base_min_size=inc * min_mult, base_max_size=D(1000), quote_min_size=D(1)
    )
    qty = size_for_notional(prod, notional, price)
    if qty == 0:
        return
    assert qty % inc == 0
    assert prod.base_min_size <= qty <= prod.base_max_size
    assert qty * price <= notional
    assert qty * price >= prod.quote_min_size


def test_price_history_bounded_ordered_and_round_trips() -> None:
    h = PriceHistory(max_samples=3)
    for i in range(5):
        assert h.append(BTC, D(100 + i), NOW + timedelta(seconds=i))
    assert not h.append(BTC, D(1), NOW)  # older sample ignored
    h.append(ETH, D("3000.5"), NOW)
    assert h.mids(BTC) == (D(102), D(103), D(104))
    assert h.mids(Symbol("SOL-USD")) == ()
    restored = PriceHistory.from_dict(h.to_dict())
    assert restored.to_dict() == h.to_dict()
    assert restored.last_time(BTC) == NOW + timedelta(seconds=4)
    # stringly-encoded (as a JSON state layer may store it)
    text = {"max_samples": 3, "samples": {"BTC-USD": [[(NOW).isoformat(), "100.5"]]}}
    assert PriceHistory.from_dict(text).mids(BTC) == (D("100.5"),)


def test_strategy_continues_after_restart() -> None:
    strat = create_strategy("ma_crossover", {"fast_window": 3, "slow_window": 6})
    series = [100] * 8 + [101]
    h = PriceHistory(max_samples=strat.required_history)
    for i, m in enumerate(series[:-1]):
        h.append(BTC, D(m), NOW + timedelta(seconds=i))
    restarted = PriceHistory.from_dict(h.to_dict())
    restarted.append(BTC, D(series[-1]), NOW + timedelta(seconds=len(series)))
    assert strat.decide(view(restarted.mids(BTC)), None).action is Action.BUY


def test_seed_from_candles() -> None:
    candles = [Candle(NOW + timedelta(minutes=i), D(1), D(1), D(1), D(100 + i), D(1)) for i in (2, 0, 1)]
    h = PriceHistory(10)
    assert h.seed_from_candles(BTC, candles) == 3
    assert h.mids(BTC) == (D(100), D(101), D(102))
    assert h.seed_from_candles(BTC, candles) == 0


@pytest.mark.parametrize(
    "data",
    [
        {"max_samples": 1, "samples": {}},
        {"max_samples": 5},
        {"max_samples": 5, "samples": {"BTC-USD": [["2026-01-01T00:00:00", "1"]]}},
        {"max_samples": 5, "samples": {"BTC-USD": [[NOW, 1.5]]}},
        {"max_samples": 5, "samples": {"BTC-USD": [[NOW, "-1"]]}},
        {"max_samples": 5, "samples": {"BTC-USD": [[NOW, "2"], [NOW, "3"]]}},
        {"max_samples": 5, "samples": {"BTC-USD": "oops"}},
        {"max_samples": True, "samples": {}},
    ],
)
def test_price_history_rejects_corruption(data: dict[str, object]) -> None:
    with pytest.raises(StateIntegrityError):
        PriceHistory.from_dict(data)
