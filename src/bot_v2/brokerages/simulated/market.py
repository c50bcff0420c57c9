"""The simulated market: a seeded price walk per product, a synthetic book around it, trades and candles."""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot_v2.brokerages.simulated.models import ZERO, Clock, ceil_to, floor_to
from bot_v2.brokerages.simulated.products import ProductSpec

__all__ = ["GRANULARITY_SECONDS", "Level", "Market", "MarketTrade"]

Level = tuple[Decimal, Decimal]  # (price, size)
MAX_CANDLE_MINUTES = 1440
TRADES_KEPT = 200

GRANULARITY_SECONDS: dict[str, int] = {
    "ONE_MINUTE": 60,
    "FIVE_MINUTE": 300,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "TWO_HOUR": 7200,
    "FOUR_HOUR": 14400,
    "SIX_HOUR": 21600,
    "ONE_DAY": 86400,
}


@dataclass(frozen=True, slots=True)
class MarketTrade:
    trade_id: str
    product_id: str
    price: Decimal
    size: Decimal
    side: str
    time: datetime


class Market:
    """Mid prices, books, recent trades and 1-minute candles for every product.

    Deterministic for a given seed: step ``n`` of product ``p`` draws from ``Random(f"{seed}:{p}:{n}")``, so
    the walk needs no RNG state to persist, only the step counter.
    """

    def __init__(
        self,
        products: dict[str, ProductSpec],
        clock: Clock,
        seed: int,
        step_seconds: float,
        history_minutes: int = 300,
    ) -> None:
        self.products = products
        self.clock = clock
        self.seed = seed
        self.step_seconds = step_seconds
        self.step_count = 0
        self.trade_count = 0
        self._mids: dict[str, Decimal] = {}
        self._trades: dict[str, deque[MarketTrade]] = {pid: deque(maxlen=TRADES_KEPT) for pid in products}
        # minute epoch -> [open, high, low, close, volume]
        self._candles: dict[str, dict[int, list[Decimal]]] = {pid: {} for pid in products}
        for spec in products.values():
            if spec.underlying is None:
                self._mids[spec.product_id] = spec.initial_price
        self._link_futures()
        self._backfill(history_minutes)

    # --- prices ----------------------------------------------------------------------------------------

    def mid(self, product_id: str) -> Decimal:
        return self._mids[product_id]

    def last_price(self, product_id: str) -> Decimal:
        trades = self._trades[product_id]
        return trades[-1].price if trades else self._quantized_mid(product_id)

    def set_price(self, product_id: str, price: Decimal) -> None:
        """Move a product's mid (a future moves its underlying, so the pair stays linked)."""
        if price <= 0:
            raise ValueError(f"price must be positive, got {price}")
        spec = self.products[product_id]
        if spec.underlying is not None:
            under = self.products[spec.underlying]
            self._mids[spec.underlying] = price * under.initial_price / spec.initial_price
        else:
            self._mids[product_id] = price
        self._link_futures()
        for pid in self._affected(product_id):
            self._record_trade(pid, self._quantized_mid(pid), ZERO, "BUY")

    def step(self) -> None:
        """Advance every walk by one step and print one synthetic trade per product."""
        self.step_count += 1
        dt = math.sqrt(self.step_seconds)
        for spec in self.products.values():
            if spec.underlying is not None:
                continue
            rng = random.Random(f"{self.seed}:{spec.product_id}:{self.step_count}")
            shock = float(spec.volatility_per_sqrt_second) * dt * rng.gauss(0.0, 1.0)
            self._mids[spec.product_id] *= Decimal(repr(math.exp(shock)))
        self._link_futures()
        for spec in self.products.values():
            rng = random.Random(f"{self.seed}:trade:{spec.product_id}:{self.step_count}")
            size = floor_to(spec.level_size * Decimal(repr(rng.uniform(0.01, 0.2))), spec.base_increment)
            side = "BUY" if rng.random() < 0.5 else "SELL"
            self._record_trade(spec.product_id, self._quantized_mid(spec.product_id), size, side)

    def _affected(self, product_id: str) -> list[str]:
        spec = self.products[product_id]
        root = spec.underlying or product_id
        return [p.product_id for p in self.products.values() if p.product_id == root or p.underlying == root]

    def _link_futures(self) -> None:
        for spec in self.products.values():
            if spec.underlying is not None:
                under = self.products[spec.underlying]
                self._mids[spec.product_id] = (
                    self._mids[spec.underlying] * spec.initial_price / under.initial_price
                )

    def _quantized_mid(self, product_id: str) -> Decimal:
        spec = self.products[product_id]
        return max(floor_to(self._mids[product_id], spec.quote_increment), spec.quote_increment)

    # --- book ------------------------------------------------------------------------------------------

    def book(self, product_id: str, depth: int | None = None) -> tuple[list[Level], list[Level]]:
        """Synthetic bids (best first) and asks (best first) at the product's increments."""
        spec = self.products[product_id]
        inc = spec.quote_increment
        mid = self._mids[product_id]
        half = max(inc, mid * spec.spread_bps / Decimal(20_000))
        best_bid = floor_to(mid - half, inc)
        best_ask = ceil_to(mid + half, inc)
        if best_ask <= best_bid:
            best_ask = best_bid + inc
        step = max(inc, floor_to(mid * spec.level_step_bps / Decimal(10_000), inc))
        n = min(depth or spec.book_depth, spec.book_depth)
        bids: list[Level] = []
        asks: list[Level] = []
        for i in range(n):
            size = floor_to(spec.level_size * (1 + Decimal(i) / 2), spec.base_increment)
            if best_bid - step * i > 0:
                bids.append((best_bid - step * i, size))
            asks.append((best_ask + step * i, size))
        return bids, asks

    def best_bid_ask(self, product_id: str) -> tuple[Decimal, Decimal]:
        bids, asks = self.book(product_id, 1)
        return (bids[0][0] if bids else ZERO), asks[0][0]

    # --- trades and candles ---------------------------------------------------------------------------

    def record_fill(self, product_id: str, price: Decimal, size: Decimal, side: str) -> None:
        """Account a user fill in the tape and the candles."""
        self._record_trade(product_id, price, size, side)

    def _record_trade(self, product_id: str, price: Decimal, size: Decimal, side: str) -> None:
        self.trade_count += 1
        now = self.clock.now()
        self._trades[product_id].append(
            MarketTrade(str(self.trade_count), product_id, price, size, side, now)
        )
        self._add_to_candle(product_id, int(now.timestamp()) // 60 * 60, price, size)

    def _add_to_candle(self, product_id: str, minute: int, price: Decimal, size: Decimal) -> None:
        candles = self._candles[product_id]
        bar = candles.get(minute)
        if bar is None:
            candles[minute] = [price, price, price, price, size]
            if len(candles) > MAX_CANDLE_MINUTES:
                for old in sorted(candles)[: len(candles) - MAX_CANDLE_MINUTES]:
                    del candles[old]
            return
        bar[1] = max(bar[1], price)
        bar[2] = min(bar[2], price)
        bar[3] = price
        bar[4] += size

    def trades(self, product_id: str, limit: int) -> list[MarketTrade]:
        """Most recent trades, newest first."""
        return list(reversed(self._trades[product_id]))[:limit]

    def candles(
        self, product_id: str, start: int | None, end: int | None, granularity: int, limit: int = 350
    ) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
        """OHLCV buckets of ``granularity`` seconds within [start, end], newest first, at most ``limit``."""
        end_ts = end if end is not None else int(self.clock.now().timestamp())
        start_ts = start if start is not None else end_ts - granularity * limit
        buckets: dict[int, list[Decimal]] = {}
        for minute in sorted(self._candles[product_id]):
            if minute < start_ts - 59 or minute > end_ts:
                continue
            o, h, low, c, v = self._candles[product_id][minute]
            key = minute // granularity * granularity
            bar = buckets.get(key)
            if bar is None:
                buckets[key] = [o, h, low, c, v]
            else:
                bar[1], bar[2], bar[3], bar[4] = max(bar[1], h), min(bar[2], low), c, bar[4] + v
        out = [(k, b[0], b[1], b[2], b[3], b[4]) for k, b in sorted(buckets.items(), reverse=True)]
        return out[: min(limit, 350)]

    def _backfill(self, minutes: int) -> None:
        """Invent a seeded price history ending at the current mid, so candles exist from the start."""
        now_minute = int(self.clock.now().timestamp()) // 60 * 60
        for spec in self.products.values():
            rng = random.Random(f"{self.seed}:history:{spec.product_id}")
            price = self._quantized_mid(spec.product_id)
            sigma = float(spec.volatility_per_sqrt_second) * math.sqrt(60.0)
            for i in range(minutes):
                close = price
                open_ = max(
                    floor_to(close / Decimal(repr(math.exp(sigma * rng.gauss(0, 1)))), spec.quote_increment),
                    spec.quote_increment,
                )
                wiggle = Decimal(repr(abs(rng.gauss(0, 1)) * sigma / 2))
                high = ceil_to(max(open_, close) * (1 + wiggle), spec.quote_increment)
                low = floor_to(min(open_, close) * (1 - wiggle), spec.quote_increment)
                volume = floor_to(spec.level_size * Decimal(repr(rng.uniform(1, 20))), spec.base_increment)
                self._candles[spec.product_id][now_minute - 60 * (i + 1)] = [open_, high, low, close, volume]
                price = open_

    # --- persistence -----------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "trade_count": self.trade_count,
            "mids": {pid: str(v) for pid, v in self._mids.items()},
            "candles": {
                pid: [[m, *(str(x) for x in bar)] for m, bar in sorted(c.items())]
                for pid, c in self._candles.items()
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.trade_count = int(state["trade_count"])
        for pid, value in state["mids"].items():
            if pid in self._mids:
                self._mids[pid] = Decimal(value)
        self._link_futures()
        for pid, rows in state["candles"].items():
            if pid in self._candles:
                self._candles[pid] = {int(r[0]): [Decimal(x) for x in r[1:]] for r in rows}
