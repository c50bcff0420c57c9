"""Unit-test helpers for the Coinbase adapter: a stub transport for the real SDK client (no network).

``StubTransport`` is a ``requests`` adapter mounted on the SDK's own session, the way httpx tests use
a ``MockTransport``: the real ``RESTClient`` builds, signs and sends the request; the stub answers it with a
real ``requests.Response`` (or raises a real ``requests`` exception).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from bot_v2.brokerages.coinbase import CoinbaseBroker, CoinbaseConnection
from bot_v2.brokerages.coinbase.connection import build_client
from bot_v2.brokerages.simulated.auth import new_private_pem

API_KEY = "organizations/test-org/apiKeys/test-key-1234ABCD"
HOST = "exchange.test"


PEM = new_private_pem()


def make_response(
    status: int = 200,
    body: Any = None,
    headers: dict[str, str] | None = None,
    request: requests.PreparedRequest | None = None,
    text: str | None = None,
) -> requests.Response:
    """A real ``requests.Response`` with the given status, JSON body (or raw text) and headers."""
    response = requests.Response()
    response.status_code = status
    response.reason = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        429: "Too Many Requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }.get(status, "Status")
    content = text if text is not None else json.dumps(body if body is not None else {})
    response._content = content.encode()
    response.headers = CaseInsensitiveDict({"content-type": "application/json", **(headers or {})})
    response.encoding = "utf-8"
    if request is not None:
        response.request = request
        response.url = request.url or ""
    return response


class Call:
    """One request as the stub saw it."""

    def __init__(self, request: requests.PreparedRequest) -> None:
        parts = urlsplit(request.url or "")
        self.method = request.method
        self.path = parts.path.removeprefix("/api/v3/brokerage")
        self.query = parse_qs(parts.query)
        body = request.body
        self.body: Any = json.loads(body) if isinstance(body, bytes | str) and body else None
        self.headers = request.headers


Handler = Callable[[Call], "requests.Response | dict[str, Any] | Exception"]


class StubTransport(BaseAdapter):
    """Answer each request with ``handler(call)``: a dict (200 JSON), a ``Response``, or an exception."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.calls: list[Call] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        call = Call(request)
        self.calls.append(call)
        result = self.handler(call)
        if isinstance(result, Exception):
            raise result
        if isinstance(result, requests.Response):
            result.request = request
            result.url = request.url or ""
            return result
        return make_response(200, result, request=request)

    def close(self) -> None:
        pass

    def paths(self) -> list[str]:
        return [c.path for c in self.calls]


@pytest.fixture
def connection() -> CoinbaseConnection:
    return CoinbaseConnection(base_url=HOST, api_key=API_KEY, api_secret=PEM, timeout_seconds=2)


BuildBroker = Callable[..., tuple[CoinbaseBroker, StubTransport]]


@pytest.fixture
async def stub_broker(connection: CoinbaseConnection) -> AsyncIterator[BuildBroker]:
    """Build ``CoinbaseBroker``s over the real SDK client whose session is served by a ``StubTransport``."""
    made: list[CoinbaseBroker] = []

    def build(
        handler: Handler, conn: CoinbaseConnection | None = None
    ) -> tuple[CoinbaseBroker, StubTransport]:
        conn = conn or connection
        client = build_client(conn)
        transport = StubTransport(handler)
        client.session.mount("https://", transport)
        broker = CoinbaseBroker(conn, client=client)
        made.append(broker)
        return broker, transport

    yield build
    for broker in made:
        await broker.close()
