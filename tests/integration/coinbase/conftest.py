"""Fixtures for driving ``CoinbaseBroker`` through the real SDK, over TLS, against the simulated exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from bot_v2.brokerages.coinbase import CoinbaseBroker, CoinbaseConnection
from bot_v2.brokerages.coinbase.connection import build_client
from bot_v2.brokerages.simulated import RunningSimulator

MakeBroker = Callable[..., CoinbaseBroker]


def sim_connection(sim: RunningSimulator, **overrides: Any) -> CoinbaseConnection:
    """The connection a bot would use for ``sim``: its key, its CA, a short timeout, derivatives on."""
    settings: dict[str, Any] = {
        "base_url": sim.base_url,
        "api_key": sim.api_key,
        "api_secret": sim.api_secret,
        "ca_file": sim.ca_path,
        "timeout_seconds": 5,
        "enable_derivatives": True,
    }
    settings.update(overrides)
    return CoinbaseConnection(**settings)


class CountingAdapter(HTTPAdapter):
    """The ordinary requests transport, remembering the path of every request that went on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(f"{request.method} {request.path_url.split('?')[0]}")
        return super().send(request, *args, **kwargs)


@pytest.fixture
async def make_broker() -> AsyncIterator[MakeBroker]:
    """``make_broker(sim, **overrides)`` -> a ``CoinbaseBroker`` for ``sim``, closed after the test."""
    made: list[CoinbaseBroker] = []

    def build(sim: RunningSimulator, **overrides: Any) -> CoinbaseBroker:
        broker = CoinbaseBroker(sim_connection(sim, **overrides))
        made.append(broker)
        return broker

    yield build
    for broker in made:
        await broker.close()


@pytest.fixture
async def counting_broker() -> AsyncIterator[Callable[..., tuple[CoinbaseBroker, CountingAdapter]]]:
    """Like ``make_broker`` but also returns the adapter that counts what reached the wire."""
    made: list[CoinbaseBroker] = []

    def build(sim: RunningSimulator, **overrides: Any) -> tuple[CoinbaseBroker, CountingAdapter]:
        connection = sim_connection(sim, **overrides)
        client = build_client(connection)
        adapter = CountingAdapter()
        client.session.mount("https://", adapter)
        broker = CoinbaseBroker(connection, client=client)
        made.append(broker)
        return broker, adapter

    yield build
    for broker in made:
        await broker.close()
