from decimal import Decimal

import pytest

from bot_v2.domain import OrderType, Position, Side, TimeInForce
from bot_v2.errors import ConfigError
from bot_v2.strategies import Action, MaCrossoverParams, MaCrossoverStrategy, create_strategy

from .factories import BTC, D, long, product, short, view

FAST, SLOW = 3, 6


def strategy(**kw: object) -> MaCrossoverStrategy:
    return MaCrossoverStrategy(MaCrossoverParams(fast_window=FAST, slow_window=SLOW, **kw))  # type: ignore[arg-type]


def run(series: list[int], strat: MaCrossoverStrategy) -> list[tuple[int, Action]]:
    """Feed the series sample by sample, applying trades to the position; return (index, action) trades."""
    position: Position | None = None
    trades: list[tuple[int, Action]] = []
    for i in range(1, len(series) + 1):
        decision = strat.decide(view(series[:i]), position)
        if decision.action is Action.HOLD:
            continue
        trades.append((i - 1, decision.action))
        qty = (position.quantity if position else D(0)) + decision.quantity * (
            decision.side.sign if decision.side else 0
        )
        position = Position(BTC, qty, D(series[i - 1])) if qty else None
    return trades


# flat, then up (golden cross), then down (death cross)
SERIES = [100] * 8 + [101, 102, 103, 104, 105, 106] + [105, 103, 100, 97, 94, 91]


def test_buys_on_golden_cross_and_closes_on_death_cross() -> None:
    trades = run(SERIES, strategy())
    assert trades == [(8, Action.BUY), (16, Action.CLOSE)]


def test_exact_crossing_moment() -> None:
    strat = strategy()
    assert strat.decide(view(SERIES[:8]), None).action is Action.HOLD  # flat: fast == slow
    buy = strat.decide(view(SERIES[:9]), None)
    assert buy.action is Action.BUY and buy.side is Side.BUY and "golden cross" in buy.reason
    assert strat.decide(view(SERIES[:10]), None).action is Action.HOLD  # trend continues, no new cross


def test_short_side() -> None:
    trades = run([100] * 8 + [99, 98, 97, 96] + [98, 101, 104, 107], strategy(allow_short=True))
    assert trades == [(8, Action.SELL), (13, Action.CLOSE)]
    assert run([100] * 8 + [99, 98, 97], strategy()) == []  # no shorting by default


def test_close_short_on_golden_cross_and_hold_when_already_long() -> None:
    strat = strategy()
    up = view(SERIES[:9])
    close = strat.decide(up, short("0.5"))
    assert close.action is Action.CLOSE and close.side is Side.BUY and close.quantity == D("0.5")
    assert strat.decide(up, long()).action is Action.HOLD


def test_warming_up() -> None:
    d = strategy().decide(view([100] * SLOW), None)
    assert d.action is Action.HOLD and "warming up: 6/7" in d.reason
    assert strategy().required_history == SLOW + 1


def test_size_on_increment_and_fraction_of_equity() -> None:
    d = strategy(position_fraction=D("0.1")).decide(view(SERIES[:9], equity="10000"), None)
    # 1000 USD at mid 101 -> 9.900990... -> rounded down to 0.001
    assert d.quantity == D("9.900")
    assert str(d.quantity) == "9.900"
    assert d.quantity % D("0.001") == 0


def test_size_capped_at_max_and_hold_below_min() -> None:
    big = strategy(position_fraction=D(1)).decide(view(SERIES[:9], equity="1000000"), None)
    assert big.quantity == D(10)
    assert str(big.quantity) == "10.000"
    tiny = strategy().decide(view(SERIES[:9], equity="0.5"), None)
    assert tiny.action is Action.HOLD and "below the product minimum" in tiny.reason


def test_volatility_scaling_shrinks_size() -> None:
    noisy = [100, 104, 96, 104, 96, 104, 96, 100, 96, 108]  # fast crosses above slow at the end
    base = strategy().decide(view(noisy), None)
    scaled = strategy(target_volatility_pct=D("0.5")).decide(view(noisy), None)
    assert base.action is Action.BUY and scaled.action is Action.BUY
    assert scaled.quantity < base.quantity


def test_trading_disabled_holds() -> None:
    d = strategy().decide(view(SERIES[:9], prod=product(trading_disabled=True)), None)
    assert d.action is Action.HOLD and "disabled" in d.reason


def test_decision_to_order_request() -> None:
    d = strategy().decide(view(SERIES[:9]), None)
    req = d.to_order_request()
    assert req is not None
    assert (req.symbol, req.side, req.order_type, req.quantity, req.time_in_force) == (
        BTC,
        Side.BUY,
        OrderType.MARKET,
        d.quantity,
        TimeInForce.IOC,
    )
    req.validate_for(product())
    assert strategy().decide(view(SERIES[:8]), None).to_order_request() is None


def test_params_from_config() -> None:
    s = create_strategy("ma_crossover", {"fast_window": "4", "slow_window": 9, "position_fraction": 0.2})
    assert isinstance(s, MaCrossoverStrategy)
    assert s.params.slow_window == 9 and s.params.position_fraction == Decimal("0.2")
    with pytest.raises(ConfigError, match=r"strategy.ma_crossover.fast"):
        create_strategy("ma_crossover", {"fast": 3})
    with pytest.raises(ConfigError, match="fast_window"):
        create_strategy("ma_crossover", {"fast_window": 10, "slow_window": 5})
    with pytest.raises(ConfigError, match="integer"):
        create_strategy("ma_crossover", {"fast_window": 2.5})
