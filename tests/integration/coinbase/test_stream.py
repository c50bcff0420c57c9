"""``CoinbaseStream`` against the simulator's feed over wss:// (its CA): quotes from memory, and every way the
feed can fail -- a skipped sequence number, a stall, a dropped socket the exchange then refuses -- detected,
reported, and recovered by resubscribing -- and ``MarketFeed``'s rule for the REST order sync on top of it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from bot_v2.brokerages.coinbase import OrderUpdate
from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.domain import ClientOrderId, OrderId, OrderRequest, OrderType, Side, Symbol
from bot_v2.monitoring.events import EventStore, EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.marketfeed import open_feed
from bot_v2.orchestration.tracking import OrderTracker
from tests.helpers import eventually_async
from tests.integration.coinbase.conftest import MakeBroker

BTC, ETH = Symbol("BTC-USD"), Symbol("ETH-USD")
T = TypeVar("T")


async def test_quotes_come_from_the_feed_and_match_rest(
    simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(simulator, ws_url=simulator.ws_url)
    states: list[tuple[bool, str]] = []
    stream = broker.open_stream([BTC, ETH], on_state=lambda up, why: states.append((up, why)))
    assert stream is not None
    async with stream:
        quotes = await eventually_async(_async(stream.quotes))
        assert set(quotes) == {BTC, ETH}
        assert all(q.bid < q.ask for q in quotes.values())
        rest = await broker.get_quotes([BTC])
        assert abs(rest[BTC].mid - quotes[BTC].mid) / rest[BTC].mid < Decimal("0.01")
        assert stream.status.connections == 1 and stream.status.sequence_gaps == 0
    assert states[0] == (True, "subscribed")


async def test_gap_stall_and_refused_socket_drop_the_feed_and_it_comes_back(
    fresh_simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    sim = fresh_simulator
    control = sim.control
    broker = make_broker(sim, ws_url=sim.ws_url, ws_stale_seconds=1.0)
    states: list[tuple[bool, str]] = []
    stream = broker.open_stream([BTC], on_state=lambda up, why: states.append((up, why)))
    assert stream is not None
    async with stream:
        await eventually_async(_async(lambda: stream.healthy))

        await asyncio.to_thread(control.skip_websocket_sequence, 1)  # a lost message
        await eventually_async(_async(lambda: stream.status.sequence_gaps == 1))
        await eventually_async(_async(lambda: stream.healthy and stream.status.connections == 2))
        assert states[1][0] is False and states[1][1].startswith("gap")

        await asyncio.to_thread(control.stall_websockets, True)  # open socket, nothing sent
        stalled_at = time.monotonic()
        await eventually_async(_async(lambda: not stream.healthy))
        assert time.monotonic() - stalled_at <= 1.0 + 0.5
        assert stream.quotes() is None  # the loop falls back to REST
        await asyncio.to_thread(control.stall_websockets, False)
        await eventually_async(_async(lambda: stream.healthy))

        await asyncio.to_thread(control.refuse_websockets, True)
        await asyncio.to_thread(control.close_websockets, 1011)
        await eventually_async(_async(lambda: not stream.healthy))
        await asyncio.sleep(0.3)  # refused meanwhile
        accepted_at = time.monotonic()
        await asyncio.to_thread(control.refuse_websockets, False)
        await eventually_async(_async(lambda: stream.healthy))
        assert time.monotonic() - accepted_at < 1.0  # the backoff is capped at 0.5 s
    reasons = [why.split(":")[0] for up, why in states if not up]
    assert reasons[:3] == ["gap", "stale", "closed"]
    assert stream.status.reconnects >= 3


async def test_user_channel_reports_this_keys_orders(
    simulator: RunningSimulator, make_broker: MakeBroker
) -> None:
    broker = make_broker(simulator, ws_url=simulator.ws_url)
    updates: list[OrderUpdate] = []
    stream = broker.open_stream([BTC], on_order=lambda update, snapshot: updates.append(update))
    assert stream is not None
    async with stream:
        await eventually_async(_async(lambda: stream.healthy))
        cid = ClientOrderId(f"stream-{uuid.uuid4().hex[:12]}")
        request = OrderRequest(BTC, Side.BUY, OrderType.MARKET, Decimal("0.001"), client_order_id=cid)
        order = await broker.place_order(request)

        def mine() -> list[OrderUpdate]:
            return [u for u in updates if u.order_id == order.order_id]

        assert (await eventually_async(_async(mine)))[-1].client_order_id == cid
        await eventually_async(
            _async(lambda: any(u.status == "FILLED" and u.filled_quantity > 0 for u in mine()))
        )


async def test_rest_sync_is_periodic_while_the_feed_is_healthy_and_after_every_reconnect(
    fresh_simulator: RunningSimulator, make_broker: MakeBroker, tmp_path: Path
) -> None:
    """The per-cycle REST poll of open orders becomes a reconciliation: due once per healthy socket (a gap may
    have hidden fills), then every ``rest_sync_seconds``, and every cycle while the feed is down."""
    sim = fresh_simulator
    control = sim.control
    broker = make_broker(sim, ws_url=sim.ws_url, ws_stale_seconds=1.0)
    metrics, events = BotMetrics(), EventStore(tmp_path / "events.jsonl")
    feed = open_feed(
        broker,
        [BTC],
        tracker=OrderTracker(metrics),
        events=events,
        metrics=metrics,
        user_channel=True,
        rest_sync_seconds=0.5,
    )
    assert feed is not None
    assert feed.rest_sync_due()  # not connected yet: every cycle polls

    async def book(order_ids: set[OrderId]) -> None:
        pass

    def connected() -> float | None:
        return metrics.registry.get_sample_value("perps_bot_ws_connected")

    feed.start(book)
    try:
        await eventually_async(_async(lambda: feed.quotes() is not None and connected() == 1))
        assert feed.rest_sync_due()  # the first healthy socket: what came before it is unknown
        feed.rest_synced()
        assert not feed.rest_sync_due()
        await asyncio.sleep(0.55)
        assert feed.rest_sync_due()  # the periodic reconciliation
        feed.rest_synced()
        assert not feed.rest_sync_due()

        await asyncio.to_thread(control.skip_websocket_sequence, 1)  # a lost message: maybe a lost fill
        stream = feed.stream
        # the gap is counted before the socket is closed and the feed marked down; a poll may also only see
        # the next socket: either way the sync is due
        await eventually_async(
            _async(
                lambda: stream.status.sequence_gaps == 1 and (not stream.healthy or stream.generation == 2)
            )
        )
        assert feed.rest_sync_due()  # down: every cycle
        await eventually_async(_async(lambda: stream.healthy))
        assert feed.rest_sync_due()  # a new socket: due once more
        feed.rest_synced()
        assert not feed.rest_sync_due()

        await asyncio.to_thread(control.stall_websockets, True)
        await eventually_async(_async(lambda: feed.quotes() is None))
        assert feed.rest_sync_due() and feed.down_seconds() > 0
        feed.rest_synced()  # a sync while down does not cover the socket that comes next
        await asyncio.to_thread(control.stall_websockets, False)
        await eventually_async(_async(lambda: stream.healthy and connected() == 1))
        assert feed.rest_sync_due()
    finally:
        await feed.close()
        events.close()
    assert connected() == 0
    status = feed.status().to_dict()
    assert status["sequence_gaps"] == 1 and status["reconnects"] >= 2
    assert metrics.registry.get_sample_value("perps_bot_ws_reconnects_total", {"reason": "gap"}) == 1
    kinds = [e["type"] for e in read_events(tmp_path / "events.jsonl")]
    assert kinds[:2] == [EventType.WS_CONNECTED.value, EventType.WS_DISCONNECTED.value]
    assert kinds.count(EventType.WS_CONNECTED.value) == 3


def _async(check: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def run() -> T:
        return check()

    return run
