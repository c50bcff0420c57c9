"""Rate limits, fault switches, persistence across restarts, the standalone process, async start-up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from bot_v2.brokerages.simulated import RunningSimulator, run_simulator_in_thread, start_simulator
from bot_v2.brokerages.simulated.remote import parse_ready_line
from tests.fixtures.simulator import make_sdk_client, simulator_config
from tests.helpers import eventually


def test_rate_limit_answers_429_with_headers(fresh_simulator: RunningSimulator) -> None:
    client = make_sdk_client(fresh_simulator, rate_limit_headers=True)
    try:
        fresh_simulator.control.set_rate_limit(3)
        first = client.get_accounts()
        assert (first.rate_limit_limit, first.rate_limit_remaining) == ("3", "2")
        with pytest.raises(requests.HTTPError) as excinfo:
            for _ in range(10):
                client.get_accounts()
        response = excinfo.value.response
        assert response.status_code == 429
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert float(response.headers["x-ratelimit-reset"]) > 0
        fresh_simulator.control.reset_faults()
        assert client.get_accounts().accounts
    finally:
        client.session.close()


def test_fault_switches_5xx_latency_and_dropped_responses(
    sdk_client: Any, simulator: RunningSimulator
) -> None:
    simulator.control.fail_next(2, status=500)
    for _ in range(2):
        with pytest.raises(requests.HTTPError) as excinfo:
            sdk_client.get_accounts()
        assert excinfo.value.response.status_code == 500
    assert sdk_client.get_accounts().accounts

    simulator.control.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        sdk_client.get_accounts()
    assert sdk_client.get_accounts().accounts

    simulator.control.set_latency(0.3)
    started = time.monotonic()
    sdk_client.get_unix_time()
    assert time.monotonic() - started >= 0.3
    simulator.control.reset_faults()


def test_resting_order_fills_when_the_price_is_moved(sdk_client: Any, simulator: RunningSimulator) -> None:
    ask = float(sdk_client.get_best_bid_ask(product_ids=["SOL-USD"]).pricebooks[0].asks[0].price)
    price = f"{ask * 0.9:.2f}"
    created = sdk_client.limit_order_gtc_buy(
        f"t-{uuid.uuid4().hex}", "SOL-USD", base_size="0.5", limit_price=price
    )
    order_id = created.success_response["order_id"]
    simulator.control.set_price("SOL-USD", f"{ask * 0.85:.2f}")
    order = eventually(lambda: (o := sdk_client.get_order(order_id).order).status == "FILLED" and o)
    # the API writes decimals without trailing zeros ("135.2" for a 135.20 limit)
    assert Decimal(order.average_filled_price) == Decimal(price)
    (fill,) = sdk_client.get_fills(order_ids=[order_id]).fills
    assert fill.liquidity_indicator == "MAKER"
    simulator.control.set_price("SOL-USD", f"{ask:.2f}")


def test_state_survives_a_restart(tmp_path: Path) -> None:
    config = simulator_config(tmp_path, tick_seconds=0)
    with run_simulator_in_thread(config) as sim:
        client = make_sdk_client(sim)
        created = client.limit_order_gtc_sell("restart-1", "BTC-USD", base_size="0.1", limit_price="99999.00")
        client.market_order_buy("restart-2", "ETH-USD", base_size="0.5")
        before_accounts = {a.currency: a.to_dict() for a in client.get_accounts().accounts}
        before_fills = client.get_fills().to_dict()["fills"]
        key_name, ca = sim.api_key, sim.ca_path.read_bytes()
        client.session.close()
    with run_simulator_in_thread(config) as sim:
        assert (sim.api_key, sim.ca_path.read_bytes()) == (key_name, ca)
        client = make_sdk_client(sim)
        order = client.get_order(created.success_response["order_id"]).order
        assert (order.status, order.client_order_id) == ("OPEN", "restart-1")
        after = {a.currency: a.to_dict() for a in client.get_accounts().accounts}
        for currency, account in before_accounts.items():
            assert after[currency]["available_balance"] == account["available_balance"]
            assert after[currency]["hold"] == account["hold"]
            assert after[currency]["uuid"] == account["uuid"]
        assert client.get_fills().to_dict()["fills"] == before_fills
        duplicate = client.limit_order_gtc_sell(
            "restart-1", "BTC-USD", base_size="0.2", limit_price="99999.00"
        )
        assert duplicate.success_response["order_id"] == order.order_id
        client.session.close()
    saved = json.loads((tmp_path / "exchange.json").read_text())
    assert {o["client_order_id"] for o in saved["orders"]} >= {"restart-1", "restart-2"}


def test_standalone_process_prints_ready_and_serves_until_sigterm(tmp_path: Path) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "bot_v2.brokerages.simulated", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "examples:" in help_text
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot_v2.brokerages.simulated",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path),
            "--tick-seconds",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        fields = parse_ready_line(proc.stdout.readline())  # ValueError if it is not the READY line
        from coinbase.rest import RESTClient

        client = RESTClient(key_file=fields["key_file"], base_url=fields["base_url"], timeout=5)
        client.session.trust_env = False
        client.session.verify = fields["ca"]
        assert client.get_accounts().accounts
        assert client.market_order_buy("standalone-1", "BTC-USD", base_size="0.001").success
        client.session.close()
        assert fields["ws_url"].startswith("wss://127.0.0.1:")  # the feed, over TLS with the same CA
        assert '"subscriptions"' in asyncio.run(_first_heartbeats_answer(fields["ws_url"], fields["ca"]))
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
        assert proc.returncode == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    saved = json.loads((tmp_path / "exchange.json").read_text())
    assert [o["client_order_id"] for o in saved["orders"]] == ["standalone-1"]


async def _first_heartbeats_answer(ws_url: str, ca: str) -> str:
    """Subscribe to heartbeats over wss:// and return the first answer. websockets' asyncio client: its sync
    client reads and writes one TLS session from two threads at once (see test_websocket.py)."""
    from websockets.asyncio.client import connect

    async with connect(ws_url, ssl=ssl.create_default_context(cafile=ca), open_timeout=20) as ws:
        await ws.send('{"type": "subscribe", "channel": "heartbeats", "product_ids": []}')
        return str(await asyncio.wait_for(ws.recv(), 5))


async def test_start_simulator_runs_inside_an_existing_loop(tmp_path: Path) -> None:
    async with start_simulator(simulator_config(tmp_path, tick_seconds=0.05)) as sim:
        before = await asyncio.to_thread(sim.control.price, "BTC-USD")
        sim.control.advance(3)  # on the loop's own thread the hook runs directly

        def fetch() -> Any:
            client = make_sdk_client(sim)
            try:
                return client.get_product("BTC-USD")
            finally:
                client.session.close()

        product = await asyncio.to_thread(fetch)
        assert product.product_id == "BTC-USD"
        assert sim.control.price("BTC-USD") != before
