"""Tier wrappers for failure injection and call recording (delegate everything else to a real backend)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot_v2.errors import StateUnavailableError


class TierSpy:
    """Wraps a tier: records calls by method name; ``fail[name] = exc`` raises instead of calling;
    ``before[name] = async fn(*args)`` runs first (to observe other tiers at that moment)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[str] = []
        self.fail: dict[str, BaseException] = {}
        self.before: dict[str, Callable[..., Awaitable[None]]] = {}

    def __repr__(self) -> str:
        return f"TierSpy({self.inner!r})"

    @property
    def schema_version(self) -> int:
        return int(self.inner.schema_version)

    def set_fence(self, epoch: int | None) -> None:  # synchronous: not wrapped like the I/O calls
        self.inner.set_fence(epoch)

    def scan(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("scan")
        return self.inner.scan(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self.inner, attr)
        if not callable(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(attr)
            if attr in self.before:
                await self.before[attr](*args, **kwargs)
            if attr in self.fail:
                raise self.fail[attr]
            return await target(*args, **kwargs)

        return call


def down(what: str) -> StateUnavailableError:
    return StateUnavailableError(f"{what} down (injected)")
