"""Fixtures for the loop's unit tests: settings on a tmp data dir, an embedded StateManager, a FakeBroker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot_v2.config import BotSettings, load_settings
from bot_v2.orchestration.wiring import Runtime
from bot_v2.state import StateManager
from tests.unit.orchestration.fakes import FakeBroker

# Guards that would trip on a test's synthetic prices are switched off; each test enables what it tests.
QUIET_RISK_ENV = {
    "RISK_VOLATILITY_WARN_PCT": "none",
    "RISK_VOLATILITY_REDUCE_ONLY_PCT": "none",
    "RISK_VOLATILITY_HALT_PCT": "none",
    "RISK_MAX_SLIPPAGE_BPS": "none",
    "RISK_ERROR_RATE_REDUCE_ONLY_PCT": "none",
    "RISK_ERROR_RATE_HALT_PCT": "none",
}


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., BotSettings]:
    def build(**env: str) -> BotSettings:
        merged = {"PERPS_DATA_DIR": str(tmp_path / "data"), "PERPS_INTERVAL_SECONDS": "0.05"}
        merged |= QUIET_RISK_ENV
        merged |= env
        return load_settings("dev", merged, root=tmp_path)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., BotSettings]) -> BotSettings:
    return make_settings()


@pytest.fixture
async def state(settings: BotSettings) -> AsyncIterator[StateManager]:
    manager = await StateManager.create(settings.state)
    try:
        yield manager
    finally:
        await manager.close()


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def runtime(settings: BotSettings, broker: FakeBroker, state: StateManager) -> Runtime:
    return Runtime(settings=settings, exchange=broker, broker=broker, state=state)


def runtime_for(settings: BotSettings, broker: Any, state: Any) -> Runtime:
    return Runtime(settings=settings, exchange=broker, broker=broker, state=state)
