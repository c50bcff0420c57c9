"""Strategies by name: ``create_strategy("ma_crossover", params)`` builds one from its config section."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from bot_v2.errors import ConfigError
from bot_v2.strategies.base import Strategy
from bot_v2.strategies.hold import HoldStrategy
from bot_v2.strategies.ma_crossover import MaCrossoverStrategy
from bot_v2.strategies.momentum import MomentumStrategy

__all__ = ["StrategyFactory", "available_strategies", "create_strategy", "register_strategy"]

StrategyFactory = Callable[[Mapping[str, object]], Strategy]
"""Builds a strategy from its params dict; raises ``ConfigError`` naming a bad key."""

_REGISTRY: dict[str, StrategyFactory] = {
    HoldStrategy.name: HoldStrategy.from_params,
    MaCrossoverStrategy.name: MaCrossoverStrategy.from_params,
    MomentumStrategy.name: MomentumStrategy.from_params,
}


def register_strategy(name: str, factory: StrategyFactory) -> None:
    """Add a strategy under ``name`` (a plug-in point); re-registering a name is an error."""
    if not name or name != name.strip().lower():
        raise ValueError(f"strategy names are lower-case identifiers, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"strategy {name!r} is already registered")
    _REGISTRY[name] = factory


def available_strategies() -> tuple[str, ...]:
    """Return the registered names, sorted."""
    return tuple(sorted(_REGISTRY))


def create_strategy(name: str, params: Mapping[str, object] | None = None) -> Strategy:
    """Build the strategy called ``name``; unknown names and bad params raise ``ConfigError``."""
    factory = _REGISTRY.get(name.strip().lower())
    if factory is None:
        raise ConfigError(
            f"strategy: unknown strategy {name!r} (available: {', '.join(available_strategies())})"
        )
    return factory(MappingProxyType(dict(params or {})))
