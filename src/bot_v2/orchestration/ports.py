"""The slice of ``StateManager`` the trading loop uses, as a structural port.

``bot_v2.state.StateManager`` satisfies it; unit tests may pass a small fake. Keys are relative
(``<kind>:<id>``) and values are JSON-able plus ``Decimal`` and aware ``datetime``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bot_v2.state.models import StateCategory, StateWrite

__all__ = ["StateCategory", "StateStore", "StateWrite"]


class StateStore(Protocol):
    """Durable, batched key/value state."""

    async def get_state(self, key: str) -> Any: ...

    async def set_state(
        self, key: str, value: Any, category: StateCategory, ttl_seconds: float | None = None
    ) -> int: ...

    async def delete_state(self, key: str) -> Any: ...

    async def batch_get_state(self, keys: Sequence[str]) -> Mapping[str, Any]: ...

    async def batch_write(self, writes: Sequence[StateWrite]) -> Mapping[str, int]: ...

    async def get_keys_by_pattern(self, pattern: str) -> list[str]: ...
