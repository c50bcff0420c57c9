"""A running bot on the simulator's WebSocket feed (wss://, its CA): quotes from memory, a user-channel fill
booked once although the REST reconciliation sees it too, and REST quotes while the feed is stalled or has a
sequence gap -- without a failed cycle; health.json (the dashboard's source) says which."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.config import BotSettings
from bot_v2.domain import Position, Symbol
from bot_v2.monitoring.events import EventType, read_events
from bot_v2.monitoring.health import read_health
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration import keys
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.wiring import Runtime, open_runtime
from bot_v2.strategies import Decision, MarketView
from tests.fixtures.simulator import make_sdk_client
from tests.helpers import eventually_async

pytestmark = pytest.mark.e2e
BTC = Symbol("BTC-USD")


class Hold:
    name = "e2e_hold"
    required_history = 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        return Decision.hold(view.symbol, "e2e hold")


async def test_feed_quotes_user_channel_fill_once_and_rest_fallback(
    fresh_simulator: RunningSimulator, sim_settings: Callable[..., BotSettings]
) -> None:
    sim, control = fresh_simulator, fresh_simulator.control
    assert sim.ws_url is not None
    settings = sim_settings(
        PERPS_INTERVAL_SECONDS="0.1",
        PERPS_SYMBOLS="BTC-USD",
        PERPS_RECONCILE_EVERY_CYCLES="5",  # adopts the test's order (and sees its fill over REST too)
        COINBASE_WS_URL=sim.ws_url,
        COINBASE_WS_STALE_SECONDS="2",
    )
    metrics = BotMetrics()

    def sample(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    stop = asyncio.Event()
    async with open_runtime(settings) as runtime:
        task = asyncio.create_task(run_bot(runtime, stop_event=stop, strategy=Hold(), metrics=metrics))
        try:
            await eventually_async(
                _true(lambda: sample("perps_bot_market_data_cycles_total", source="ws") >= 3)
            )
            assert sample("perps_bot_ws_connected") == 1
            feed = read_health(settings.health_path)["market_data"]  # what the dashboard shows
            assert feed["connected"] is True and feed["source"] == "ws", feed
            assert 0 <= feed["quote_age_seconds"]["BTC-USD"] < 2, feed

            # a resting order with the bot's prefix: discovery adopts it, the user channel reports its fill
            control.set_ticking(False)
            price = control.price(BTC)
            limit = (price * Decimal("0.99")).quantize(Decimal("0.01"))
            client = make_sdk_client(sim)
            cid = f"{settings.client_id_prefix}feed-{id(task) % 10_000}"
            client.limit_order_gtc_buy(cid, "BTC-USD", base_size="0.001", limit_price=str(limit))
            client.session.close()
            await eventually_async(_has_state(runtime, keys.order_key(cid)), timeout=10)
            await asyncio.to_thread(control.set_price, BTC, limit * Decimal("0.99"))
            await eventually_async(_true(lambda: sample("perps_bot_fills_total", symbol="BTC-USD") >= 1))
            assert sample("perps_bot_fill_booking_seconds_count", source="ws") == 1, (
                sample("perps_bot_fill_booking_seconds_count", source="rest"),
                sample("perps_bot_ws_connected"),
            )
            await asyncio.sleep(0.5)  # several cycles of REST reconciliation see the same fill
            assert sample("perps_bot_fills_total", symbol="BTC-USD") == 1
            position = await runtime.state.get_state(keys.position_key(BTC)) if runtime.state else None
            assert position is not None and Decimal(str(position["quantity"])) == Decimal("0.001")

            # a stalled feed: detected within COINBASE_WS_STALE_SECONDS, REST quotes meanwhile, then back
            rest_before = sample("perps_bot_market_data_cycles_total", source="rest")
            await asyncio.to_thread(control.stall_websockets, True)
            await eventually_async(_true(lambda: sample("perps_bot_ws_connected") == 0), timeout=3)
            await eventually_async(
                _true(lambda: sample("perps_bot_market_data_cycles_total", source="rest") >= rest_before + 3)
            )
            feed = read_health(settings.health_path)["market_data"]
            assert feed["connected"] is False and feed["source"] == "rest", feed
            assert feed["down_seconds"] > 0 and feed["last_disconnect"].startswith("stale"), feed
            await asyncio.to_thread(control.stall_websockets, False)
            await eventually_async(_true(lambda: sample("perps_bot_ws_connected") == 1), timeout=5)

            # a lost message: a gap, a resubscribe
            await asyncio.to_thread(control.skip_websocket_sequence, 1)
            await eventually_async(_true(lambda: sample("perps_bot_ws_sequence_gaps_total") == 1), timeout=5)
            await eventually_async(_true(lambda: sample("perps_bot_ws_connected") == 1), timeout=5)
        finally:
            stop.set()
            summary = await task
    assert summary.errors == []
    assert sample("perps_bot_ws_reconnects_total", reason="stale") >= 1
    assert sample("perps_bot_ws_reconnects_total", reason="gap") == 1
    events = read_events(settings.events_path)
    kinds = [e["type"] for e in events]
    # the REST side saw the fill too: every discovery after the booking listed the order and asked for its
    # fills (orders since the watermark minus 5 min), and none was booked again
    after_fill = events[kinds.index(EventType.FILL.value) :]
    seen_again = [e for e in after_fill if e["type"] == EventType.RECONCILIATION.value]
    assert seen_again and all(e["listed_orders"] >= 1 and e["missed_fills"] == 0 for e in seen_again)
    assert (
        kinds.count(EventType.WS_DISCONNECTED.value) >= 2 and kinds.count(EventType.WS_CONNECTED.value) >= 3
    )
    assert kinds.count(EventType.FILL.value) == 1
    assert EventType.CYCLE_ERROR.value not in kinds


def _true(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


def _has_state(runtime: Runtime, key: str) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return runtime.state is not None and await runtime.state.get_state(key) is not None

    return run
