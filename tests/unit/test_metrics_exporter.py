"""The bot's /metrics endpoint (monitoring/exporter.py) and the series added for operators: rate-limit headroom
and the lease holder. Real sockets on ephemeral ports; the registry is read back over HTTP."""

from __future__ import annotations

import logging
import math
import socket
import urllib.request
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bot_v2.errors import ConfigError
from bot_v2.monitoring.exporter import serve_metrics
from bot_v2.monitoring.metrics import BotMetrics


@dataclass(frozen=True)
class _Rate:
    limit: int | None
    remaining: int | None


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_served_with_the_bot_id_on_an_ephemeral_port() -> None:
    with serve_metrics(0, bot_id="perps-x") as port:
        assert port is not None and port > 0
        text = _scrape(port)
    assert 'perps_bot_trading_state{bot_id="perps-x"}' in text
    with pytest.raises(OSError):  # closed with the block
        _scrape(port)


def test_port_none_serves_nothing() -> None:
    with serve_metrics(None) as port:
        assert port is None


def test_busy_port_explicit_is_a_config_error_default_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        explicit = rf"METRICS_PORT: cannot listen on 127.0.0.1:{busy} .*0 for no"
        with pytest.raises(ConfigError, match=explicit), serve_metrics(busy, required=True):
            pass
        with (
            caplog.at_level(logging.WARNING, logger="bot_v2.monitoring.exporter"),
            serve_metrics(busy, required=False) as port,
        ):
            assert port is None
    assert "give each bot its own METRICS_PORT" in caplog.text


def _value(metrics: BotMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_rate_limit_headroom_is_read_at_scrape_time() -> None:
    metrics = BotMetrics(CollectorRegistry())
    assert math.isnan(_value(metrics, "perps_bot_rate_limit_headroom_ratio") or 0.0)  # no source yet
    info: list[_Rate | None] = [None]
    metrics.watch_rate_limit(lambda: info[0])
    assert math.isnan(_value(metrics, "perps_bot_rate_limit_remaining") or 0.0)  # no answer yet
    info[0] = _Rate(limit=30, remaining=3)
    assert _value(metrics, "perps_bot_rate_limit_remaining") == 3
    assert _value(metrics, "perps_bot_rate_limit_limit") == 30
    assert _value(metrics, "perps_bot_rate_limit_headroom_ratio") == pytest.approx(0.1)
    info[0] = _Rate(limit=None, remaining=5)  # a window size never announced: no ratio
    assert math.isnan(_value(metrics, "perps_bot_rate_limit_headroom_ratio") or 0.0)
    metrics.watch_rate_limit(None)
    assert math.isnan(_value(metrics, "perps_bot_rate_limit_remaining") or 0.0)


def test_lease_holder_is_one_series_that_follows_takeovers() -> None:
    metrics = BotMetrics(CollectorRegistry())
    metrics.set_lease_holder("h1:10:ab", "h1", 10, "primary", 4)
    metrics.set_lease_holder("h1:10:ab", "h1", 10, "primary", 4)  # a renewal changes nothing
    metrics.set_lease_holder("h2:20:cd", "h2", 20, "standby", 5)  # a takeover: the old series goes
    text = generate_latest(metrics.registry).decode()
    assert text.count("perps_bot_lease_holder{") == 1
    assert (
        _value(metrics, "perps_bot_lease_holder", holder="h2:20:cd", host="h2", pid="20", role="standby") == 5
    )
    metrics.set_lease_holder(None)
    assert "perps_bot_lease_holder{" not in generate_latest(metrics.registry).decode()
