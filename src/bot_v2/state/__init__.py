"""Tiered, versioned, checksummed state: ``StateManager`` and its value types."""

from bot_v2.state.checkpoint import CheckpointStore, checkpoint_due
from bot_v2.state.checkpoint.pacing import foreground
from bot_v2.state.manager import StateManager
from bot_v2.state.models import (
    CheckpointInfo,
    CoherenceMismatch,
    CoherenceReport,
    ColdRecovery,
    ColdState,
    HotRecovery,
    HotState,
    RestoreReport,
    StateCategory,
    StateHealth,
    StateWrite,
    StorageStats,
    Tier,
)
from bot_v2.state.settings import ColdBackend, HotBackend, StateSettings, WarmBackend

__all__ = [
    "CheckpointInfo",
    "CheckpointStore",
    "CoherenceMismatch",
    "CoherenceReport",
    "ColdBackend",
    "ColdRecovery",
    "ColdState",
    "HotBackend",
    "HotRecovery",
    "HotState",
    "RestoreReport",
    "StateCategory",
    "StateHealth",
    "StateManager",
    "StateSettings",
    "StateWrite",
    "StorageStats",
    "Tier",
    "WarmBackend",
    "checkpoint_due",
    "foreground",
]
