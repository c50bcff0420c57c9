"""The SDK's WSClient against the simulator's WebSocket feed."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from coinbase.websocket import WebsocketResponse, WSClient
from websockets.sync.client import connect

from bot_v2.brokerages.simulated import RunningSimulator
from tests.helpers import eventually


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
    eventually(lambda: sum(m["channel"] == "subscriptions" for m in list(received)) >= 2)


def test_user_channel_without_a_jwt_is_refused(simulator: RunningSimulator) -> None:
    assert simulator.ws_url is not None
    with connect(simulator.ws_url, open_timeout=5) as ws:
        ws.send(json.dumps({"type": "subscribe", "channel": "user", "product_ids": ["BTC-USD"]}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "error", "message": "authentication failure"}
