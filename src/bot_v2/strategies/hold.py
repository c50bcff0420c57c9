"""The ``hold`` strategy: never trades (for monitoring-only runs and tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from bot_v2.domain import Position
from bot_v2.errors import ConfigError
from bot_v2.strategies.base import Decision, MarketView

__all__ = ["HoldStrategy"]


class HoldStrategy:
    """Always HOLD."""

    name: ClassVar[str] = "hold"

    @classmethod
    def from_params(cls, data: Mapping[str, object]) -> HoldStrategy:
        if data:
            raise ConfigError(f"strategy.hold.{next(iter(data))}: unknown parameter (hold takes none)")
        return cls()

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        return Decision.hold(view.symbol, "hold strategy never trades")
