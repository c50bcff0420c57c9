"""Preflight's ``metrics`` check against real sockets: this bot answering, the port free, the port held by
another bot or by something that is not an HTTP endpoint (explicit METRICS_PORT: FAIL; the default: WARN)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from bot_v2.config import BotSettings, load_settings
from bot_v2.monitoring.labels import bot_registry
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.tools.common import CheckStatus
from bot_v2.tools.metrics_check import metrics_preflight


def _settings(tmp_path: Path, port: int) -> BotSettings:
    return load_settings("dev", {"METRICS_PORT": str(port)}, root=tmp_path)


@pytest.fixture
def served() -> Iterator[tuple[int, BotMetrics]]:
    metrics = BotMetrics(CollectorRegistry())
    server, thread = start_http_server(
        0, addr="127.0.0.1", registry=bot_registry("perps-dev", metrics.registry)
    )
    try:
        yield int(server.server_address[1]), metrics
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_this_bot_answering_passes_and_another_bot_on_its_port_fails(
    tmp_path: Path, served: tuple[int, BotMetrics]
) -> None:
    import time

    port, metrics = served
    metrics.last_cycle_timestamp.set(time.time())
    result = metrics_preflight(_settings(tmp_path, port))
    assert result.status is CheckStatus.PASS and "answering: bot perps-dev" in result.reason
    other = load_settings("dev", {"METRICS_PORT": str(port), "PERPS_BOT_ID": "desk1"}, root=tmp_path)
    result = metrics_preflight(other)
    assert result.status is CheckStatus.FAIL
    assert "served by bot perps-dev: this bot would exit 2 (METRICS_PORT busy)" in result.reason


def test_free_port_passes_busy_port_fails_or_warns(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = int(holder.getsockname()[1])
        holder.listen()  # accepts, never answers HTTP: the scrape times out, the bind fails
        explicit = _settings(tmp_path, port)
        result = metrics_preflight(explicit, timeout=0.3)
        assert result.status is CheckStatus.FAIL and "port in use" in result.reason
        default = dataclasses.replace(explicit, metrics_port_explicit=False)  # as if the profile's port
        result = metrics_preflight(default, timeout=0.3)
        assert result.status is CheckStatus.WARN and "give it its own METRICS_PORT" in result.reason
    result = metrics_preflight(_settings(tmp_path, port))
    assert result.status is CheckStatus.PASS and result.reason.endswith(
        "free: the bot will serve its metrics there"
    )


def test_metrics_off_warns(tmp_path: Path) -> None:
    result = metrics_preflight(_settings(tmp_path, 0))
    assert result.status is CheckStatus.WARN and "METRICS_PORT=0" in result.reason
