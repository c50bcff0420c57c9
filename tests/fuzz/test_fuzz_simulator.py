"""Fuzz the simulated exchange's HTTP inputs and the Coinbase adapter's handling of damaged answers.

Inputs: malformed and non-object JSON bodies, huge bodies, junk query strings, bad, forged and expired JWTs
(signed with the right key but with odd claims). The simulator answers each with a 4xx (or 200 with
``success: false``), never a 5xx, and keeps serving.

Answers: the simulator's malformed-response fault (``SimulatorControl.malformed_next``: broken JSON, missing
fields, nulls, wrong types, empty objects) under every read and order call of ``CoinbaseBroker``: each ends
in a value or one ``PerpsBotError`` line -- never a ``KeyError``/``TypeError`` out of the adapter.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import jwt
import pytest
import requests
from hypothesis import example, given
from hypothesis import strategies as st

from bot_v2.brokerages.coinbase import CoinbaseBroker, CoinbaseConnection
from bot_v2.brokerages.simulated import RunningSimulator, run_simulator_in_thread
from bot_v2.domain import OrderRequest, OrderType, Side, Symbol
from bot_v2.domain.types import ClientOrderId
from bot_v2.errors import PerpsBotError
from tests.fixtures.simulator import simulator_config
from tests.fuzz.profiles import fuzz

API = "/api/v3/brokerage"
BTC = Symbol("BTC-USD")
PATHS = [
    ("POST", f"{API}/orders"),
    ("POST", f"{API}/orders/preview"),
    ("POST", f"{API}/orders/batch_cancel"),
    ("POST", f"{API}/orders/edit"),
    ("POST", f"{API}/orders/edit_preview"),
    ("GET", f"{API}/accounts"),
    ("GET", f"{API}/orders/historical/batch"),
    ("GET", f"{API}/orders/historical/fills"),
    ("GET", f"{API}/products"),
    ("GET", f"{API}/best_bid_ask"),
    ("GET", f"{API}/products/BTC-USD/candles"),
    ("GET", f"{API}/cfm/positions"),
    ("GET", f"{API}/transaction_summary"),
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    running = run_simulator_in_thread(simulator_config(tmp_path_factory.mktemp("fuzz-simulator")))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def http(sim: RunningSimulator) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sim.ca_path)
    yield session
    session.close()


def _token(sim: RunningSimulator, method: str, path: str, **changes: Any) -> str:
    """A CDP JWT as the SDK builds it, with ``changes`` applied to its claims (None deletes a claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sim.api_key,
        "iss": "cdp",
        "nbf": now,
        "exp": now + 120,
        "uri": f"{method} {sim.base_url}{path}",
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    headers = {"kid": sim.api_key, "nonce": uuid.uuid4().hex}
    # signed as raw JWS: PyJWT's own encode refuses odd claim types, and the point is to send them
    return jwt.PyJWS().encode(json.dumps(claims).encode(), sim.api_secret, algorithm="ES256", headers=headers)


def _still_serving(sim: RunningSimulator, http: requests.Session) -> None:
    path = f"{API}/time"
    answer = http.get(f"https://{sim.base_url}{path}", timeout=5)
    assert answer.status_code == 200 and "iso" in answer.json(), answer.text


claim_values = st.one_of(
    st.none(),
    st.integers(-(2**40), 2**40),
    st.text(max_size=20),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.floats(allow_nan=True),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "client_order_id": st.text(max_size=40),
            "product_id": st.sampled_from(["BTC-USD", "", "X"]),
            "side": st.sampled_from(["BUY", "SELL", "buy", 1]),
            "order_configuration": st.dictionaries(
                st.sampled_from(["market_market_ioc", "limit_limit_gtc", "stop_limit_stop_limit_gtd", "x"]),
                st.dictionaries(
                    st.sampled_from(
                        ["base_size", "quote_size", "limit_price", "end_time", "stop_price", "post_only"]
                    ),
                    st.sampled_from(
                        ["0.001", "-1", "1e999", "NaN", "", None, 5, "x", True, "2026-13-01T00:00:00Z"]
                    ),
                    max_size=4,
                ),
                max_size=2,
            ),
            "order_ids": st.lists(st.text(max_size=8), max_size=3),
            "order_id": st.text(max_size=8),
            "size": st.sampled_from(["1", "-1", "x", None]),
            "price": st.sampled_from(["1", "x", None]),
        }
    ).map(lambda v: json.dumps(v).encode()),
)
queries = st.dictionaries(
    st.sampled_from(
        [
            "limit",
            "cursor",
            "product_id",
            "product_ids",
            "order_status",
            "start",
            "end",
            "granularity",
            "start_sequence_timestamp",
            "order_ids",
            "x",
        ]
    ),
    st.sampled_from(["", "-1", "0", "1e9", "99999999999999999999", "x", "BTC-USD", "OPEN", "\u00e9", "%00"])
    | st.text(max_size=12),
    max_size=4,
)


@fuzz(60)
@given(
    st.sampled_from(PATHS),
    bodies,
    queries,
    st.sampled_from(["good", "claims", "junk", "none", "expired", "other-key"]),
    st.dictionaries(st.sampled_from(["sub", "iss", "nbf", "exp", "uri", "aud"]), claim_values, max_size=3),
)
@example(
    ("GET", f"{API}/accounts"), b"", {}, "claims", {"uri": [1]}
)  # found: an unhashable uri claim was a 500
@example(("POST", f"{API}/orders"), b"[1,2]", {}, "good", {})
@example(("POST", f"{API}/orders/preview"), b"x" * 3_000_000, {}, "good", {})  # a huge body
def test_http_inputs(
    sim: RunningSimulator,
    http: requests.Session,
    route: tuple[str, str],
    body: bytes,
    query: dict[str, str],
    auth: str,
    claims: dict[str, Any],
) -> None:
    method, path = route
    if auth == "good":
        token = _token(sim, method, path)
    elif auth == "claims":
        token = _token(sim, method, path, **claims)
    elif auth == "expired":
        token = _token(sim, method, path, nbf=int(time.time()) - 600, exp=int(time.time()) - 300)
    elif auth == "other-key":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        token = jwt.encode(
            {
                "sub": sim.api_key,
                "iss": "cdp",
                "nbf": int(time.time()),
                "exp": int(time.time()) + 60,
                "uri": f"{method} {sim.base_url}{path}",
            },
            other,
            algorithm="ES256",
            headers={"kid": sim.api_key},
        )
    elif auth == "junk":
        token = "".join(sorted(claims)) + ".eyJhbGciOiJub25lIn0." + str(len(body))
    else:
        token = ""
    headers = {"Content-Type": "application/json"}
    if auth != "none":
        headers["Authorization"] = f"Bearer {token}"
    answer = http.request(
        method, f"https://{sim.base_url}{path}", params=query, data=body, headers=headers, timeout=10
    )
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if auth in ("expired", "other-key", "junk", "none"):
        assert answer.status_code == 401, (answer.status_code, answer.text[:300])
    _still_serving(sim, http)


# --- damaged answers through the adapter -------------------------------------------------------------------


def _broker(sim: RunningSimulator) -> CoinbaseBroker:
    return CoinbaseBroker(
        CoinbaseConnection(
            base_url=sim.base_url,
            api_key=sim.api_key,
            api_secret=sim.api_secret,
            ca_file=sim.ca_path,
            timeout_seconds=5,
            enable_derivatives=True,
        )
    )


def _order(kind: str) -> OrderRequest:
    cid = ClientOrderId(f"fz-{uuid.uuid4().hex[:16]}")
    if kind == "limit":
        return OrderRequest(
            BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001"), limit_price=Decimal(1000), client_order_id=cid
        )
    return OrderRequest(BTC, Side.BUY, OrderType.MARKET, Decimal("0.001"), client_order_id=cid)


CALLS: dict[str, Callable[[CoinbaseBroker], Awaitable[Any]]] = {
    "list_products": lambda b: b.list_products([BTC]),
    "get_quotes": lambda b: b.get_quotes([BTC]),
    "get_product_book": lambda b: b.get_product_book(BTC),
    "list_balances": lambda b: b.list_balances(),
    "list_positions": lambda b: b.list_positions(),
    "get_futures_balance_summary": lambda b: b.get_futures_balance_summary(),
    "get_fee_tier": lambda b: b.get_fee_tier(),
    "get_key_permissions": lambda b: b.get_key_permissions(),
    "list_portfolios": lambda b: b.list_portfolios(),
    "server_time": lambda b: b.server_time(),
    "list_orders": lambda b: b.list_orders(limit=5),
    "list_fills": lambda b: b.list_fills(limit=5),
    "preview_order": lambda b: b.preview_order(_order("market")),
    "place_order": lambda b: b.place_order(_order("limit")),
}


async def _damaged_call(
    sim: RunningSimulator, call: str, kind: str, seed: int, requests_damaged: int
) -> None:
    async with _broker(sim) as broker:
        await broker.list_products([BTC])  # the product cache: the damage falls on the call under test
        sim.control.malformed_next(requests_damaged, kind, seed)
        try:
            await CALLS[call](broker)
        except PerpsBotError as exc:
            text = exc.one_line()
            assert text and "\n" not in text, text
        finally:
            sim.control.reset_faults()


@fuzz(100)
@given(
    st.sampled_from(sorted(CALLS)),
    st.sampled_from(["json", "missing", "nulls", "types", "empty", "random"]),
    st.integers(0, 2**16),
    st.integers(1, 3),
)
def test_damaged_answers(
    sim: RunningSimulator, http: requests.Session, call: str, kind: str, seed: int, n: int
) -> None:
    asyncio.run(_damaged_call(sim, call, kind, seed, n))
    _still_serving(sim, http)
