"""Dashboard data source: ``DashboardSource`` opens what the view needs and keeps it open between refreshes.

The state layer (with no start-up repair, so it never writes to a shared HOT cache; the memory HOT tier of a
separate process is empty, so reads come from WARM: the bot's SQLite file in WAL mode allows this concurrent
reader) and, only with ``with_exchange``, a runtime for balances and quotes; ``snapshot()`` gathers a
``DashboardData`` per refresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from collections.abc import Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bot_v2.config import BotSettings
from bot_v2.domain import Symbol
from bot_v2.domain.jsonable import to_jsonable
from bot_v2.errors import PerpsBotError
from bot_v2.monitoring.health import read_health
from bot_v2.orchestration import keys
from bot_v2.state import StateHealth, StateManager, StorageStats, WarmBackend
from bot_v2.state.models import LeaseRecord
from bot_v2.tools.dashboard.view import (
    DashboardData,
    ExchangeView,
)
from bot_v2.tools.eventlog import (
    tail_events,
)

# --- gathering ----------------------------------------------------------------------------------------------


def _pid_running(pid: object) -> bool | None:
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DashboardSource:
    """Opens the state layer (and the exchange with ``with_exchange``) once; ``snapshot()`` per refresh."""

    def __init__(
        self,
        settings: BotSettings,
        *,
        window_minutes: float,
        refresh_seconds: float,
        with_exchange: bool = False,
        max_event_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.settings = settings
        self.window_minutes = window_minutes
        self.refresh_seconds = refresh_seconds
        self.with_exchange = with_exchange
        self.max_event_bytes = max_event_bytes
        self._stack = AsyncExitStack()
        self._state: StateManager | None = None
        self._exchange: Any = None
        self._exchange_note: str | None = None
        self._exchange_error: str | None = None

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        if self.with_exchange:
            await self._open_exchange()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def _reader_settings(self) -> BotSettings:
        # A viewer is a reader: it writes nothing to any tier, and starts even when HOT is down.
        from bot_v2.orchestration.wiring import reader_settings

        return reader_settings(self.settings)

    async def _open_state(self) -> str | None:
        if self._state is not None:
            return None
        state_settings = self.settings.state
        if state_settings.warm_backend is WarmBackend.SQLITE and not state_settings.sqlite_path.exists():
            return f"no state yet at {state_settings.sqlite_path} (has the bot run with this profile?)"
        try:
            self._state = await StateManager.create(self._reader_settings().state)
        except PerpsBotError as exc:
            return exc.one_line()
        self._stack.push_async_callback(self._state.close)
        return None

    async def _open_exchange(self) -> None:
        from bot_v2.orchestration.wiring import exchange_connection_needs_simulator, open_runtime

        settings = self.settings
        if exchange_connection_needs_simulator(settings):
            # Never share the bot's simulator directory: run a private one and say so.
            sim_dir = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="perps-dash-sim-"))
            simulator = dataclasses.replace(settings.simulator, state_dir=Path(sim_dir))
            settings = dataclasses.replace(settings, simulator=simulator)
            self._exchange_note = "private in-process simulator (not the running bot's exchange)"
        try:
            runtime = await self._stack.enter_async_context(open_runtime(settings, with_state=False))
        except PerpsBotError as exc:
            self._exchange_error = exc.one_line()
            return
        self._exchange = runtime.exchange

    async def _exchange_view(self) -> ExchangeView | None:
        if not self.with_exchange:
            return None
        if self._exchange is None:
            return ExchangeView(note=self._exchange_note, error=self._exchange_error or "not connected")
        symbols = [Symbol(s) for s in self.settings.symbols]
        try:
            balances, quotes = await asyncio.gather(
                self._exchange.list_balances(), self._exchange.get_quotes(symbols)
            )
        except PerpsBotError as exc:
            return ExchangeView(note=self._exchange_note, error=exc.one_line())
        return ExchangeView(
            balances=[to_jsonable(b) | {"total": b.total} for b in balances if b.total != 0],
            quotes={str(s): {"bid": q.bid, "ask": q.ask, "time": q.time} for s, q in quotes.items()},
            note=self._exchange_note,
        )

    async def snapshot(self, now: datetime | None = None) -> DashboardData:
        """Read everything one frame shows."""
        settings = self.settings
        now = now or datetime.now(UTC)
        health: Mapping[str, Any] | None = None
        health_error: str | None = None
        try:
            health = await asyncio.to_thread(read_health, settings.health_path)
        except FileNotFoundError:
            health_error = f"no {settings.health_path.name} at {settings.health_path.parent}"
        except (OSError, ValueError) as exc:
            health_error = f"unreadable: {exc}"
        since = now - timedelta(minutes=self.window_minutes)
        events = await asyncio.to_thread(
            tail_events, settings.events_path, since, max_bytes=self.max_event_bytes
        )
        values: dict[str, Any] = {}
        lease: LeaseRecord | None = None
        state_error = await self._open_state()
        state_health: StateHealth | None = None
        storage: StorageStats | None = None
        if self._state is not None:
            try:
                values = await _read_state(self._state)
                lease = await self._state.read_lease()
                state_health = self._state.health()
                storage = await self._state.get_storage_stats()
            except PerpsBotError as exc:
                state_error = exc.one_line()
        return DashboardData(
            profile=settings.profile.value,
            bot_id=settings.bot_id,
            symbols=tuple(settings.symbols),
            interval_seconds=settings.interval_seconds,
            window_minutes=self.window_minutes,
            refresh_seconds=self.refresh_seconds,
            now=now,
            health=health,
            health_error=health_error,
            pid_running=_pid_running((health or {}).get("pid")),
            lease=lease,
            safety=_mapping(values.get(keys.SAFETY_KEY)),
            control=_mapping(values.get(keys.CONTROL_KEY)),
            guards=_mapping(values.get(keys.GUARDS_KEY)),
            pnl=_mapping(values.get(keys.PNL_KEY)),
            positions=_by_suffix(values, keys.POSITION_PREFIX),
            marks=_by_suffix(values, keys.MARK_PREFIX),
            orders=_by_suffix(values, keys.ORDER_PREFIX),
            events=events,
            state_health=state_health,
            storage=storage,
            state_error=state_error,
            exchange=await self._exchange_view(),
            risk_config=settings.risk,
        )


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _by_suffix(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {keys.suffix(k, prefix): v for k, v in values.items() if k.startswith(prefix)}


async def _read_state(state: StateManager) -> dict[str, Any]:
    """The records a frame shows: fixed keys plus every position, mark and order (one batch read)."""
    wanted: list[str] = [keys.SAFETY_KEY, keys.CONTROL_KEY, keys.GUARDS_KEY, keys.PNL_KEY]
    for prefix in (keys.POSITION_PREFIX, keys.MARK_PREFIX, keys.ORDER_PREFIX):
        wanted.extend(await state.get_keys_by_pattern(prefix + "*"))
    return await state.batch_get_state(wanted)
