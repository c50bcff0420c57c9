"""Warm start: the strategy has its history on the first cycle (candles, stored history); failures fall back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot_v2.errors import ExchangeUnavailableError
from bot_v2.monitoring.events import EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.warmup import warm_start
from bot_v2.orchestration.wiring import Runtime
from bot_v2.state import StateCategory, StateManager
from bot_v2.strategies import PriceHistory
from tests.unit.orchestration.fakes import BTC, ETH, FakeBroker, RecordingStrategy


async def test_first_cycle_sees_enough_history_from_candles(runtime: Runtime, broker: FakeBroker) -> None:
    broker.seed_candles(60, datetime.now(UTC))
    strategy = RecordingStrategy(required=21)
    summary = await run_bot(runtime, once=True, strategy=strategy, metrics=BotMetrics())
    assert strategy.seen[BTC][0] >= 21 and strategy.seen[ETH][0] >= 21
    assert summary.warm_start is not None and summary.warm_start["errors"] == {}
    (event,) = read_events(runtime.settings.events_path, EventType.WARM_START)
    assert event["samples"]["BTC-USD"] >= 21


async def test_candles_are_ordered_by_start_whatever_the_answer_order(
    broker: FakeBroker, state: StateManager
) -> None:
    now = datetime.now(UTC)
    broker.seed_candles(40, now)  # newest first
    history = PriceHistory(30)
    report = await warm_start(broker, state, history, [BTC], now)
    mids = history.mids(BTC)
    assert report.from_candles[BTC] >= 30 and len(mids) == 30
    assert list(mids) == sorted(mids, reverse=True)  # the fake's oldest candle has the highest close


async def test_candles_failure_falls_back_to_warming_up(runtime: Runtime, broker: FakeBroker) -> None:
    broker.candles_error = ExchangeUnavailableError("candles: 503")
    strategy = RecordingStrategy()
    summary = await run_bot(runtime, once=True, strategy=strategy, metrics=BotMetrics())
    assert summary.errors == [] and summary.cycles == 1
    assert strategy.seen[BTC] == [1]  # warming up from live quotes, as before
    assert summary.warm_start is not None and "503" in summary.warm_start["errors"][BTC]


async def test_history_persists_across_a_clean_restart(
    runtime: Runtime, broker: FakeBroker, state: StateManager
) -> None:
    await run_bot(runtime, max_cycles=3, strategy=RecordingStrategy(), metrics=BotMetrics())
    stored = await state.get_state(keys.history_key(BTC))
    assert len(stored["samples"]["BTC-USD"]) == 3
    strategy = RecordingStrategy()
    summary = await run_bot(runtime, once=True, strategy=strategy, metrics=BotMetrics())
    assert summary.warm_start is not None and summary.warm_start["restored"][BTC] == 3
    assert strategy.seen[BTC] == [4]


async def test_stale_or_corrupted_stored_history_is_ignored(broker: FakeBroker, state: StateManager) -> None:
    now = datetime.now(UTC)
    old = PriceHistory(30)
    old.append(BTC, Decimal(100), now - timedelta(hours=2))
    await state.set_state(keys.history_key(BTC), old.to_dict(), StateCategory.MARKS)
    await state.set_state(keys.history_key(ETH), {"max_samples": "x"}, StateCategory.MARKS)
    history = PriceHistory(30)
    report = await warm_start(broker, state, history, [BTC, ETH], now)
    assert report.restored == {} and history.mids(BTC) == () and ETH in report.ignored
