"""Momentum: hold a position while the return over ``lookback`` samples stays beyond a threshold.

Flat: enter long when the lookback return >= ``entry_threshold_pct`` (short when <= -threshold and shorts are
allowed). In a position: close when the return turns against it by ``exit_threshold_pct``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from bot_v2.domain import Position
from bot_v2.strategies.base import Decision, MarketView, check_sizing, parse_params, volatility_scaled_size

__all__ = ["MomentumParams", "MomentumStrategy"]


@dataclass(frozen=True, slots=True)
class MomentumParams:
    """Thresholds are percent returns over ``lookback`` samples."""

    lookback: int = 20
    entry_threshold_pct: Decimal = Decimal(1)
    exit_threshold_pct: Decimal = Decimal(0)
    position_fraction: Decimal = Decimal("0.1")
    target_volatility_pct: Decimal | None = None
    max_volatility_scale: Decimal = Decimal(1)
    allow_short: bool = False

    def __post_init__(self) -> None:
        if self.lookback < 1:
            raise ValueError(f"lookback must be >= 1, got {self.lookback}")
        if self.entry_threshold_pct <= 0:
            raise ValueError(f"entry_threshold_pct must be > 0, got {self.entry_threshold_pct}")
        if self.exit_threshold_pct < 0:
            raise ValueError(f"exit_threshold_pct must be >= 0, got {self.exit_threshold_pct}")
        check_sizing(self.position_fraction, self.target_volatility_pct, self.max_volatility_scale)


class MomentumStrategy:
    """Trend-following on the lookback return."""

    name: ClassVar[str] = "momentum"

    def __init__(self, params: MomentumParams | None = None) -> None:
        self.params = params if params is not None else MomentumParams()

    @classmethod
    def from_params(cls, data: Mapping[str, object]) -> MomentumStrategy:
        return cls(parse_params(MomentumParams, data, f"strategy.{cls.name}"))

    @property
    def required_history(self) -> int:
        return self.params.lookback + 1

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        p = self.params
        mids = view.mids
        if len(mids) < self.required_history:
            return Decision.hold(view.symbol, f"warming up: {len(mids)}/{self.required_history} samples")
        start, last = mids[-1 - p.lookback], mids[-1]
        ret = (last - start) / start * 100 if start > 0 else Decimal(0)
        qty = position.quantity if position is not None else Decimal(0)
        what = f"{p.lookback}-sample return {ret:.2f}%"
        if qty > 0 and position is not None:
            if ret <= -p.exit_threshold_pct:
                return Decision.close(position, f"{what}: momentum gone, close long")
            return Decision.hold(view.symbol, f"{what}: stay long")
        if qty < 0 and position is not None:
            if ret >= p.exit_threshold_pct:
                return Decision.close(position, f"{what}: momentum gone, close short")
            return Decision.hold(view.symbol, f"{what}: stay short")
        if ret >= p.entry_threshold_pct:
            return self._enter(view, buy=True, why=what)
        if ret <= -p.entry_threshold_pct and p.allow_short:
            return self._enter(view, buy=False, why=what)
        return Decision.hold(view.symbol, f"{what}: below entry threshold {p.entry_threshold_pct}%")

    def _enter(self, view: MarketView, buy: bool, why: str) -> Decision:
        if view.product.trading_disabled:
            return Decision.hold(view.symbol, f"{why}: trading disabled on {view.symbol}")
        p = self.params
        quantity, sizing = volatility_scaled_size(
            view, p.position_fraction, p.target_volatility_pct, p.max_volatility_scale, p.lookback
        )
        if quantity <= 0:
            return Decision.hold(view.symbol, f"{why}: size below the product minimum ({sizing})")
        if buy:
            return Decision.buy(view.symbol, quantity, f"{why}: buy {quantity} ({sizing})")
        return Decision.sell(view.symbol, quantity, f"{why}: sell {quantity} ({sizing})")
