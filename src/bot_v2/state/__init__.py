"""Tiered, versioned, checksummed state: ``StateManager`` and its value types."""

from bot_v2.state.manager import StateManager
from bot_v2.state.models import (
    CoherenceMismatch,
    CoherenceReport,
    HotRecovery,
    HotState,
    StateCategory,
    StateHealth,
    StateWrite,
    StorageStats,
    Tier,
)
from bot_v2.state.settings import ColdBackend, HotBackend, StateSettings, WarmBackend

__all__ = [
    "CoherenceMismatch",
    "CoherenceReport",
    "ColdBackend",
    "HotBackend",
    "HotRecovery",
    "HotState",
    "StateCategory",
    "StateHealth",
    "StateManager",
    "StateSettings",
    "StateWrite",
    "StorageStats",
    "Tier",
    "WarmBackend",
]
