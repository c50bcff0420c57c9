"""Moving-average crossover: buy when the fast SMA crosses above the slow one, exit when it crosses below.

Acts only on the sample where the cross happens (comparing the previous and the current SMAs), so a bot
that holds no position between crosses does not re-enter on every cycle. Entries are sized as a fraction
of equity, optionally scaled down by realized volatility, on the product's base increment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from bot_v2.domain import Position
from bot_v2.strategies.base import (
    Decision,
    MarketView,
    check_sizing,
    parse_params,
    sma,
    volatility_scaled_size,
)

__all__ = ["MaCrossoverParams", "MaCrossoverStrategy"]


@dataclass(frozen=True, slots=True)
class MaCrossoverParams:
    """``fast_window`` < ``slow_window`` in samples; ``position_fraction`` of equity per entry (0, 10]."""

    fast_window: int = 5
    slow_window: int = 20
    position_fraction: Decimal = Decimal("0.1")
    target_volatility_pct: Decimal | None = None
    max_volatility_scale: Decimal = Decimal(1)
    allow_short: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.fast_window < self.slow_window:
            raise ValueError(f"need 1 <= fast_window ({self.fast_window}) < slow_window ({self.slow_window})")
        check_sizing(self.position_fraction, self.target_volatility_pct, self.max_volatility_scale)


class MaCrossoverStrategy:
    """Golden cross: close a short, or buy from flat. Death cross: close a long, or sell short if allowed."""

    name: ClassVar[str] = "ma_crossover"

    def __init__(self, params: MaCrossoverParams | None = None) -> None:
        self.params = params if params is not None else MaCrossoverParams()

    @classmethod
    def from_params(cls, data: Mapping[str, object]) -> MaCrossoverStrategy:
        return cls(parse_params(MaCrossoverParams, data, f"strategy.{cls.name}"))

    @property
    def required_history(self) -> int:
        return self.params.slow_window + 1

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        p = self.params
        symbol = view.symbol
        mids = view.mids
        if len(mids) < self.required_history:
            return Decision.hold(symbol, f"warming up: {len(mids)}/{self.required_history} samples")
        fast, slow = sma(mids, p.fast_window), sma(mids, p.slow_window)
        prev_fast, prev_slow = sma(mids[:-1], p.fast_window), sma(mids[:-1], p.slow_window)
        qty = position.quantity if position is not None else Decimal(0)
        levels = f"fast {fast:.6g} / slow {slow:.6g}"

        if prev_fast <= prev_slow and fast > slow:
            if qty < 0 and position is not None:
                return Decision.close(position, f"golden cross ({levels}): close short")
            if qty > 0:
                return Decision.hold(symbol, f"golden cross ({levels}): already long")
            return self._enter(view, buy=True, why=f"golden cross ({levels})")
        if prev_fast >= prev_slow and fast < slow:
            if qty > 0 and position is not None:
                return Decision.close(position, f"death cross ({levels}): close long")
            if qty < 0:
                return Decision.hold(symbol, f"death cross ({levels}): already short")
            if not p.allow_short:
                return Decision.hold(symbol, f"death cross ({levels}): flat, shorting disabled")
            return self._enter(view, buy=False, why=f"death cross ({levels})")
        return Decision.hold(symbol, f"no crossover ({levels})")

    def _enter(self, view: MarketView, buy: bool, why: str) -> Decision:
        if view.product.trading_disabled:
            return Decision.hold(view.symbol, f"{why}: trading disabled on {view.symbol}")
        p = self.params
        quantity, sizing = volatility_scaled_size(
            view, p.position_fraction, p.target_volatility_pct, p.max_volatility_scale, p.slow_window
        )
        if quantity <= 0:
            return Decision.hold(view.symbol, f"{why}: size below the product minimum ({sizing})")
        if buy:
            return Decision.buy(view.symbol, quantity, f"{why}: buy {quantity} ({sizing})")
        return Decision.sell(view.symbol, quantity, f"{why}: sell {quantity} ({sizing})")
