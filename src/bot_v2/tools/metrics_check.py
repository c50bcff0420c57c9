"""Is a running bot's Prometheus endpoint answering, and is it fresh? (scripts/monitoring/export_metrics.py)

The previous bot ran a separate exporter process fed by a metrics file; its runbook's "Metrics Exporter Gap"
checks that file, restarts the exporter and curls ``localhost:9102/metrics``. This bot serves its metrics
itself, so the same check asks the bot's endpoint (the profile's address and port, as the bot derives them)
whether it answers, for which bot id, and how old its last completed cycle is; a copy of the scrape can be
written to a file for whoever watched that file.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bot_v2.config import BotSettings
from bot_v2.errors import InputError
from bot_v2.monitoring.metrics import TRADING_STATE_VALUES
from bot_v2.tools.common import CheckResult, CheckStatus

__all__ = ["ScrapeReport", "check_metrics", "metrics_preflight", "metrics_url", "write_atomically"]

_STATE_NAMES = {value: name for name, value in TRADING_STATE_VALUES.items()}
#: A last cycle older than this many intervals (and at least MIN_STALE_SECONDS) is stale, as for health.json.
STALE_INTERVALS = 3
MIN_STALE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ScrapeReport:
    url: str
    answering: bool
    fresh: bool
    message: str
    bot_id: str | None = None
    trading_state: str | None = None
    last_cycle_age_seconds: float | None = None
    series: int = 0
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "answering": self.answering,
            "fresh": self.fresh,
            "message": self.message,
            "bot_id": self.bot_id,
            "trading_state": self.trading_state,
            "last_cycle_age_seconds": self.last_cycle_age_seconds,
            "series": self.series,
        }


def metrics_url(settings: BotSettings) -> str:
    """Where the bot of ``settings`` serves /metrics (a wildcard listen address is asked on 127.0.0.1)."""
    if settings.metrics_port is None:
        raise InputError(
            f"metrics are off for bot {settings.bot_id!r} (METRICS_PORT=0): nothing to check; unset it to "
            "serve on the profile's port"
        )
    host = settings.metrics_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.metrics_port}/metrics"


def check_metrics(settings: BotSettings, *, timeout: float = 5.0, now: float | None = None) -> ScrapeReport:
    """Scrape the bot's endpoint once and judge it: answering, and a last cycle within the stale bound."""
    url = metrics_url(settings)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 -- http:// built above
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return ScrapeReport(
            url,
            answering=False,
            fresh=False,
            message=(
                f"{url} not answering ({reason}): is the bot running (systemctl status perps-bot@"
                f"{settings.profile.value}; health.json)? It serves its metrics itself -- there is no "
                "exporter process to restart"
            ),
        )
    samples = {}
    bot_id: str | None = None
    series = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series += 1
            bot_id = bot_id or sample.labels.get("bot_id")
            if not sample.labels.keys() - {"bot_id"}:
                samples[sample.name] = sample.value
    now = time.time() if now is None else now
    last = samples.get("perps_bot_last_cycle_timestamp_seconds", 0.0)
    state_value = samples.get("perps_bot_trading_state")
    state = None if state_value is None else _STATE_NAMES.get(int(state_value), str(state_value))
    limit = max(STALE_INTERVALS * settings.interval_seconds, MIN_STALE_SECONDS)
    if not last:
        age, fresh = None, False
        message = f"{url} answering (bot {bot_id}) but no cycle completed yet (starting, or a standby)"
    else:
        age = round(now - last, 3)
        fresh = age <= limit
        verdict = "fresh" if fresh else f"STALE (over {limit:g}s: the loop is stuck or stopped)"
        message = f"{url} answering: bot {bot_id}, {state}, last cycle {age:.1f}s ago -- {verdict}"
    return ScrapeReport(url, True, fresh, message, bot_id, state, age, series, text)


def metrics_preflight(settings: BotSettings, *, timeout: float = 2.0) -> CheckResult:
    """Preflight's ``metrics`` check (the previous runbook's "Metric scrape"): this bot's endpoint answers
    (it runs), or its port is free for it (it will serve there); a port held by something else is a FAIL when
    METRICS_PORT chose it (the bot would exit 2), a WARN for the profile's default (it would trade unseen)."""
    name = "metrics"
    if settings.metrics_port is None:
        return CheckResult(
            name, CheckStatus.WARN, "off (METRICS_PORT=0): nothing to scrape, no alert reaches anyone"
        )
    started = time.monotonic()
    report = check_metrics(settings, timeout=timeout)
    took = time.monotonic() - started
    busy = CheckStatus.FAIL if settings.metrics_port_explicit else CheckStatus.WARN
    consequence = (
        "this bot would exit 2 (METRICS_PORT busy)"
        if settings.metrics_port_explicit
        else "this bot would trade without metrics: give it its own METRICS_PORT"
    )
    if report.answering and report.bot_id == settings.bot_id:
        return CheckResult(name, CheckStatus.PASS if report.fresh else CheckStatus.WARN, report.message, took)
    if report.answering:
        return CheckResult(name, busy, f"{report.url} is served by bot {report.bot_id}: {consequence}", took)
    family = socket.AF_INET6 if ":" in settings.metrics_host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the bot's HTTP server does
        try:
            probe.bind((settings.metrics_host, settings.metrics_port))
        except OSError as exc:
            return CheckResult(name, busy, f"{report.url}: port in use ({exc.strerror}): {consequence}", took)
    return CheckResult(
        name, CheckStatus.PASS, f"{report.url} free: the bot will serve its metrics there", took
    )


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: a reader never sees half a scrape."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
