"""Pure decision logic: ``Strategy.decide(MarketView, Position | None) -> Decision``, selected by name."""

from bot_v2.strategies.base import (
    Action,
    Decision,
    MarketView,
    PriceHistory,
    Strategy,
    realized_volatility_pct,
    size_for_notional,
    sma,
    volatility_scaled_size,
)
from bot_v2.strategies.hold import HoldStrategy
from bot_v2.strategies.ma_crossover import MaCrossoverParams, MaCrossoverStrategy
from bot_v2.strategies.momentum import MomentumParams, MomentumStrategy
from bot_v2.strategies.registry import (
    StrategyFactory,
    available_strategies,
    create_strategy,
    register_strategy,
)

__all__ = [
    "Action",
    "Decision",
    "HoldStrategy",
    "MaCrossoverParams",
    "MaCrossoverStrategy",
    "MarketView",
    "MomentumParams",
    "MomentumStrategy",
    "PriceHistory",
    "Strategy",
    "StrategyFactory",
    "available_strategies",
    "create_strategy",
    "realized_volatility_pct",
    "register_strategy",
    "size_for_notional",
    "sma",
    "volatility_scaled_size",
]
