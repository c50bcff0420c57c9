"""The SDK's WSClient against the simulator's WebSocket feed (wss://, the simulator's CA), and its fault switches."""

from __future__ import annotations

import copy
import json
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from coinbase.websocket import WebsocketResponse, WSClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bot_v2.brokerages.simulated import RunningSimulator
from tests.fixtures.simulator import WS_OPEN_TIMEOUT, assert_skip_and_stall, recv_json
from tests.helpers import eventually

# The SDK's WSClient builds ``ssl.SSLContext()`` (no protocol, no verification) for wss:// URLs; Python warns.
pytestmark = [
    pytest.mark.filterwarnings("ignore:ssl.SSLContext\\(\\) without protocol argument:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning"),
]


@pytest.fixture
def ws_messages(simulator: RunningSimulator) -> Iterator[tuple[WSClient, list[dict[str, Any]]]]:
    assert simulator.ws_url is not None
    received: list[dict[str, Any]] = []
    client = WSClient(
        api_key=simulator.api_key,
        api_secret=simulator.api_secret,
        base_url=simulator.ws_url,
        on_message=lambda text: received.append(json.loads(text)),
        timeout=5,
    )
    client._retry_factor = 0.01  # reconnect within milliseconds in tests
    client.open()
    try:
        yield client, received
    finally:
        client.close()


def _trusting(sim: RunningSimulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(sim.ca_path))


def _channels(received: list[dict[str, Any]]) -> set[str]:
    return {m.get("channel", "") for m in list(received)}


def test_sdk_subscribes_and_gets_market_and_user_updates(
    ws_messages: tuple[WSClient, list[dict[str, Any]]], sdk_client: Any
) -> None:
    client, received = ws_messages
    client.subscribe(["BTC-USD"], ["ticker", "level2", "market_trades", "heartbeats", "user"])
    eventually(
        lambda: (
            {"subscriptions", "ticker", "l2_data", "market_trades", "heartbeats", "user"}
            <= _channels(received)
        )
    )
    for message in list(received):
        WebsocketResponse(copy.deepcopy(message))  # every message has the full envelope (it pops keys)
    sequences = [m["sequence_num"] for m in list(received)]
    assert sequences == sorted(sequences)
    snapshot = next(m for m in received if m["channel"] == "l2_data")["events"][0]
    assert snapshot["type"] == "snapshot" and {u["side"] for u in snapshot["updates"]} == {"bid", "offer"}

    cid = f"ws-{uuid.uuid4().hex}"
    created = sdk_client.limit_order_gtc_buy(cid, "BTC-USD", base_size="0.001", limit_price="1000.00")
    order_id = created.success_response["order_id"]

    def order_update() -> dict[str, Any] | None:
        for message in list(received):
            if message["channel"] == "user":
                for event in message["events"]:
                    for order in event["orders"]:
                        if order["order_id"] == order_id:
                            return order
        return None

    update = eventually(order_update)
    assert (update["status"], update["client_order_id"], update["order_type"]) == ("OPEN", cid, "LIMIT")
    sdk_client.cancel_orders([order_id])


def test_feed_reconnects_after_a_forced_1011_close(
    ws_messages: tuple[WSClient, list[dict[str, Any]]], simulator: RunningSimulator
) -> None:
    client, received = ws_messages
    client.subscribe(["ETH-USD"], ["ticker"])
    eventually(lambda: sum(m["channel"] == "subscriptions" for m in list(received)) >= 1)
    simulator.control.close_websockets(code=1011)
    # the SDK reconnects on its own thread: on a loaded 2-CPU runner that can take well over 10 s
    eventually(lambda: sum(m["channel"] == "subscriptions" for m in list(received)) >= 2, timeout=30)


async def test_user_channel_without_a_jwt_is_refused(simulator: RunningSimulator) -> None:
    assert simulator.ws_url is not None
    async with connect(simulator.ws_url, open_timeout=WS_OPEN_TIMEOUT, ssl=_trusting(simulator)) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "user", "product_ids": ["BTC-USD"]}))
        assert await recv_json(ws) == {"type": "error", "message": "authentication failure"}


async def test_feed_is_tls_with_the_rest_ca_and_market_trades_starts_with_a_snapshot(
    simulator: RunningSimulator,
) -> None:
    assert simulator.ws_url is not None and simulator.ws_url.startswith("wss://127.0.0.1:")
    async with connect(simulator.ws_url, open_timeout=WS_OPEN_TIMEOUT, ssl=_trusting(simulator)) as ws:
        await ws.send(
            json.dumps({"type": "subscribe", "channel": "market_trades", "product_ids": ["BTC-USD"]})
        )
        ack, first = await recv_json(ws), await recv_json(ws)
    assert ack["channel"] == "subscriptions"
    event = first["events"][0]
    assert first["channel"] == "market_trades" and event["type"] == "snapshot" and event["trades"]
    ids = [int(t["trade_id"]) for t in event["trades"]]
    assert ids == sorted(ids, reverse=True)  # newest first


async def test_feed_fault_switches_skip_stall_and_refuse(fresh_simulator: RunningSimulator) -> None:
    sim = fresh_simulator
    assert sim.ws_url is not None
    control = sim.control
    async with connect(sim.ws_url, open_timeout=WS_OPEN_TIMEOUT, ssl=_trusting(sim)) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "heartbeats", "product_ids": []}))
        await assert_skip_and_stall(ws, control)
    control.refuse_websockets(True)
    with pytest.raises(InvalidStatus, match="503"):
        await connect(sim.ws_url, open_timeout=WS_OPEN_TIMEOUT, ssl=_trusting(sim))
    control.reset_faults()
    before = control.websocket_connections()
    async with connect(sim.ws_url, open_timeout=WS_OPEN_TIMEOUT, ssl=_trusting(sim)):
        pass
    assert control.websocket_connections() == before + 1
