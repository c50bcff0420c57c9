"""Tier ports (``HotTier``, ``WarmTier``, ``ColdTier``) and their backends; ``build_tiers`` picks them."""

from bot_v2.state.tiers.cold import ColdTier
from bot_v2.state.tiers.factory import build_tiers
from bot_v2.state.tiers.hot import HotTier
from bot_v2.state.tiers.warm import WarmTier

__all__ = ["ColdTier", "HotTier", "WarmTier", "build_tiers"]
