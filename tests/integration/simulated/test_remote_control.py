"""The control routes of a standalone simulator (``python -m bot_v2.brokerages.simulated`` as a subprocess), over
real HTTPS through ``RemoteSimulatorControl``: the admin token, unknown switches and arguments, and every switch."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from coinbase.rest import RESTClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bot_v2.brokerages.simulated import (
    RemoteSimulatorControl,
    RunningSimulator,
    SimulatorControlError,
    StandaloneSimulator,
)
from bot_v2.brokerages.simulated.admin import ADMIN_PREFIX, ADMIN_TOKEN_HEADER, SWITCHES
from tests.fixtures.simulator import WS_OPEN_TIMEOUT, assert_skip_and_stall, recv_json
from tests.helpers import eventually

BTC = "BTC-USD"


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneSimulator]:
    root = tmp_path_factory.mktemp("standalone")
    with (root / "stderr.txt").open("w") as stderr:
        sim = StandaloneSimulator(root / "sim", "--tick-seconds", "0.1", "--rate-limit", "0", stderr=stderr)
        try:
            yield sim
        finally:
            assert sim.stop() == 0  # SIGTERM: state persisted, exit 0


@pytest.fixture
def control(standalone: StandaloneSimulator) -> Iterator[RemoteSimulatorControl]:
    yield standalone.control
    standalone.control.reset_faults()
    standalone.control.refuse_websockets(False)  # reset_faults clears it too; this checks the call on its own
    standalone.control.set_ticking(True)


@pytest.fixture
def session(standalone: StandaloneSimulator) -> Iterator[requests.Session]:
    http = requests.Session()
    http.trust_env = False
    http.verify = str(standalone.ca_path)
    yield http
    http.close()


@pytest.fixture
def sdk(standalone: StandaloneSimulator) -> Iterator[Any]:
    client = RESTClient(key_file=str(standalone.key_file), base_url=standalone.base_url, timeout=5)
    client.session.trust_env = False
    client.session.verify = str(standalone.ca_path)
    yield client
    client.session.close()


def _url(sim: StandaloneSimulator, path: str) -> str:
    return f"https://{sim.base_url}{path}"


def _rest(session: requests.Session, sim: StandaloneSimulator) -> requests.Response:
    return session.get(_url(sim, "/api/v3/brokerage/time"), timeout=10)


def _token(sim: StandaloneSimulator) -> str:
    return sim.control._token  # the READY line's token, as the control read it


# --- the credential and the errors ---------------------------------------------------------------------------


def test_missing_or_wrong_token_is_401_and_sets_nothing(
    standalone: StandaloneSimulator, session: requests.Session
) -> None:
    url = _url(standalone, ADMIN_PREFIX + "fail_next")
    for headers in ({}, {ADMIN_TOKEN_HEADER: "wrong"}, {ADMIN_TOKEN_HEADER: _token(standalone) + "x"}):
        answer = session.post(url, json={"n": 5}, headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.json()["error"] == "UNAUTHENTICATED", answer.text
    # an unknown switch without the token is a 401 too: nothing is revealed
    assert session.post(_url(standalone, ADMIN_PREFIX + "nope"), timeout=10).status_code == 401
    wrong = RemoteSimulatorControl(standalone.base_url, standalone.ca_path, "not-the-token")
    with wrong, pytest.raises(SimulatorControlError) as refused:
        wrong.fail_next(5)
    assert refused.value.status == 401
    assert "not-the-token" not in repr(wrong) and _token(standalone) not in repr(standalone.control)
    assert _rest(session, standalone).status_code == 200  # no failure was armed


def test_unknown_switch_and_bad_arguments_are_400(
    standalone: StandaloneSimulator, control: RemoteSimulatorControl, session: requests.Session
) -> None:
    with pytest.raises(SimulatorControlError) as unknown:
        control.call("format_disk")
    assert (unknown.value.status, unknown.value.error) == (400, "UNKNOWN_SWITCH")
    for switch, arguments in [
        ("fail_next", {"n": "3"}),  # wrong type
        ("fail_next", {"n": -1}),
        ("fail_next", {"n": 1, "status": 404}),  # a fault is a 5xx
        ("fail_next", {"count": 1}),  # unknown argument
        ("set_price", {"symbol": BTC}),  # missing price
        ("set_price", {"symbol": BTC, "price": "-5"}),
        ("set_price", {"symbol": "NOPE-USD", "price": "5"}),  # unknown product (the engine says so)
        ("stall_websockets", {"stalled": "yes"}),
        ("malformed_next", {"n": 1, "kind": "gibberish"}),
        ("close_websockets", {"code": 99}),
    ]:
        with pytest.raises(SimulatorControlError) as bad:
            control.call(switch, **arguments)
        assert (bad.value.status, bad.value.error) == (400, "INVALID_ARGUMENT"), (switch, arguments)
    headers = {ADMIN_TOKEN_HEADER: _token(standalone)}
    url = _url(standalone, ADMIN_PREFIX + "reset_faults")
    assert session.post(url, data="{not json", headers=headers, timeout=10).status_code == 400
    assert session.post(url, data="[1]", headers=headers, timeout=10).status_code == 400
    assert session.get(url, headers=headers, timeout=10).status_code == 405
    assert session.post(url, headers=headers, timeout=10).json() == {"result": None}  # no body: no arguments
    assert _rest(session, standalone).status_code == 200


def test_the_client_has_every_switch_and_the_ready_line_token_is_printed_nowhere_else(
    standalone: StandaloneSimulator, tmp_path: Path
) -> None:
    assert all(callable(getattr(RemoteSimulatorControl, name, None)) for name in SWITCHES)
    proc = subprocess.run(  # the READY line is the one place the token appears
        [sys.executable, "-m", "bot_v2.brokerages.simulated", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "admin_token=TOKEN" in proc.stdout
    stderr = Path(standalone.state_dir).parent / "stderr.txt"
    assert _token(standalone) not in stderr.read_text()
    assert _token(standalone) not in (standalone.state_dir / "exchange.json").read_text()


# --- prices ---------------------------------------------------------------------------------------------------


def test_set_price_price_advance_and_ticking(control: RemoteSimulatorControl, sdk: Any) -> None:
    control.set_ticking(False)
    control.set_price(BTC, "51234.5")
    assert control.price(BTC) == Decimal("51234.5")
    book = sdk.get_best_bid_ask(product_ids=[BTC]).pricebooks[0]
    assert Decimal(book.bids[0].price) < Decimal("51234.5") < Decimal(book.asks[0].price)
    time.sleep(0.4)  # four ticks' worth: paused, nothing moves
    assert control.price(BTC) == Decimal("51234.5")
    control.advance(3)
    assert control.price(BTC) != Decimal("51234.5")
    moved = control.price(BTC)
    control.set_ticking(True)
    eventually(lambda: control.price(BTC) != moved, timeout=5)


# --- REST faults ------------------------------------------------------------------------------------------------


def test_set_latency_delays_rest_but_not_the_control(
    standalone: StandaloneSimulator, control: RemoteSimulatorControl, session: requests.Session
) -> None:
    control.set_latency(0.6)
    started = time.monotonic()
    assert _rest(session, standalone).status_code == 200
    assert time.monotonic() - started >= 0.6
    started = time.monotonic()
    control.reset_faults()  # the control routes skip the REST faults
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    _rest(session, standalone)
    assert time.monotonic() - started < 0.5


def test_fail_next_answers_the_next_requests_with_the_status(
    standalone: StandaloneSimulator, control: RemoteSimulatorControl, session: requests.Session
) -> None:
    control.fail_next(2, status=502)
    control.websocket_connections()  # a control request does not use one up
    assert [_rest(session, standalone).status_code for _ in range(3)] == [502, 502, 200]


def test_drop_next_closes_without_an_answer(
    standalone: StandaloneSimulator, control: RemoteSimulatorControl, session: requests.Session
) -> None:
    control.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        _rest(session, standalone)
    assert _rest(session, standalone).status_code == 200


def test_lose_acks_next_creates_the_order_but_never_answers(
    control: RemoteSimulatorControl, sdk: Any
) -> None:
    control.lose_acks_next(1, land_after_seconds=0.2)
    cid = f"remote-lost-{time.monotonic_ns()}"
    with pytest.raises(requests.ConnectionError):
        sdk.limit_order_gtc_buy(cid, BTC, base_size="0.001", limit_price="1000.00")

    def landed() -> bool:
        return any(o.client_order_id == cid for o in sdk.list_orders(product_ids=[BTC]).orders)

    eventually(landed, timeout=10)


def test_malformed_next_damages_the_answer(
    standalone: StandaloneSimulator, control: RemoteSimulatorControl, session: requests.Session
) -> None:
    control.malformed_next(1, kind="empty")
    assert _rest(session, standalone).json() == {}
    assert "iso" in _rest(session, standalone).json()


def test_set_rate_limit_and_reset_faults_restore_the_configured_limit(
    standalone: StandaloneSimulator, control: RemoteSimulatorControl, session: requests.Session
) -> None:
    control.set_rate_limit(1)
    assert [_rest(session, standalone).status_code for _ in range(2)] == [200, 429]
    control.fail_next(3)
    control.reset_faults()  # configured with --rate-limit 0: unlimited again, and the failures disarmed
    assert {_rest(session, standalone).status_code for _ in range(5)} == {200}


def test_register_key_accepts_another_key(
    standalone: StandaloneSimulator, control: RemoteSimulatorControl
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    name = f"organizations/remote/apiKeys/{time.monotonic_ns()}"
    client = RESTClient(api_key=name, api_secret=private, base_url=standalone.base_url, timeout=5)
    client.session.trust_env = False
    client.session.verify = str(standalone.ca_path)
    try:
        with pytest.raises(requests.HTTPError, match="401"):
            client.get_accounts()
        control.register_key(name, public)
        assert client.get_accounts().accounts
    finally:
        client.session.close()


# --- the WebSocket feed -------------------------------------------------------------------------------------------


async def _heartbeats(sim: StandaloneSimulator) -> ClientConnection:
    assert sim.ws_url is not None and sim.ws_url.startswith("wss://")
    ws = await connect(
        sim.ws_url, open_timeout=WS_OPEN_TIMEOUT, ssl=ssl.create_default_context(cafile=sim.ca_path)
    )
    await ws.send(json.dumps({"type": "subscribe", "channel": "heartbeats", "product_ids": []}))
    return ws


async def test_feed_switches_count_skip_stall_close_and_refuse(
    standalone: StandaloneSimulator, control: RemoteSimulatorControl
) -> None:
    before = await asyncio.to_thread(control.websocket_connections)
    ws = await _heartbeats(standalone)
    try:
        assert await asyncio.to_thread(control.websocket_connections) == before + 1
        await assert_skip_and_stall(ws, control)

        await asyncio.to_thread(control.close_websockets, 1011)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await recv_json(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    finally:
        await ws.close()

    await asyncio.to_thread(control.refuse_websockets, True)
    with pytest.raises(InvalidStatus, match="503"):
        await _heartbeats(standalone)
    await asyncio.to_thread(control.refuse_websockets, False)
    ws = await _heartbeats(standalone)
    try:
        assert (await recv_json(ws))["channel"] == "subscriptions"
    finally:
        await ws.close()


def test_without_a_token_the_control_routes_are_not_served(fresh_simulator: RunningSimulator) -> None:
    """In-process (no ``admin_token``): the control prefix is an unknown route like any other."""
    http = requests.Session()
    http.trust_env = False
    http.verify = str(fresh_simulator.ca_path)
    try:
        answer = http.post(
            f"https://{fresh_simulator.base_url}{ADMIN_PREFIX}fail_next",
            json={"n": 1},
            headers={ADMIN_TOKEN_HEADER: ""},
            timeout=10,
        )
        assert answer.status_code == 404, answer.text
        assert http.get(f"https://{fresh_simulator.base_url}/api/v3/brokerage/time", timeout=10).ok
    finally:
        http.close()
