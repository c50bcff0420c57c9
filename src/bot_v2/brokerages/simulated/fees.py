"""Maker/taker fee tiers keyed by trailing 30-day USD volume (Coinbase Advanced's published schedule)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["DEFAULT_FEE_TIERS", "FeeTier", "tier_for_volume"]

D = Decimal


@dataclass(frozen=True, slots=True)
class FeeTier:
    pricing_tier: str
    usd_from: Decimal
    usd_to: Decimal | None
    taker_fee_rate: Decimal
    maker_fee_rate: Decimal


DEFAULT_FEE_TIERS: tuple[FeeTier, ...] = (
    FeeTier("Advanced 1", D(0), D(10_000), D("0.006"), D("0.004")),
    FeeTier("Advanced 2", D(10_000), D(50_000), D("0.004"), D("0.0025")),
    FeeTier("Advanced 3", D(50_000), D(100_000), D("0.0025"), D("0.0015")),
    FeeTier("Intro 1", D(100_000), D(1_000_000), D("0.002"), D("0.001")),
    FeeTier("Intro 2", D(1_000_000), D(15_000_000), D("0.0018"), D("0.0008")),
    FeeTier("Intro 3", D(15_000_000), D(75_000_000), D("0.0016"), D("0.0006")),
    FeeTier("VIP 1", D(75_000_000), D(250_000_000), D("0.0012"), D("0.0003")),
    FeeTier("VIP 2", D(250_000_000), D(400_000_000), D("0.0008"), D(0)),
    FeeTier("VIP 3", D(400_000_000), None, D("0.0005"), D(0)),
)


def tier_for_volume(volume: Decimal, tiers: tuple[FeeTier, ...] = DEFAULT_FEE_TIERS) -> FeeTier:
    """Return the tier whose [usd_from, usd_to) range holds ``volume``."""
    chosen = tiers[0]
    for tier in tiers:
        if volume >= tier.usd_from:
            chosen = tier
    return chosen
