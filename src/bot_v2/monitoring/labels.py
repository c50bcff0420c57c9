"""A ``bot_id`` label on every metric the bot exports.

Several bots share one Redis, PostgreSQL and S3, and one Prometheus scrapes them all: each series must name
its bot. The metrics are declared without the label (``BotMetrics``: one bot per process, and the call sites
stay ``.labels(symbol=...)``); the exporter serves them through ``bot_registry``, which adds
``bot_id="<id>"`` to every sample at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["BotLabelled", "bot_registry"]


class BotLabelled(Collector):
    """Every family of ``source`` with ``bot_id`` added to each sample's labels."""

    def __init__(self, source: CollectorRegistry, bot_id: str) -> None:
        self._source = source
        self._bot_id = bot_id

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [s._replace(labels={"bot_id": self._bot_id, **s.labels}) for s in family.samples]
            yield out


def bot_registry(bot_id: str, source: CollectorRegistry | None = None) -> CollectorRegistry:
    """A registry to serve: ``source`` (default: the bot's ``REGISTRY``) with the ``bot_id`` label."""
    if source is None:
        from bot_v2.monitoring.metrics import REGISTRY

        source = REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BotLabelled(source, bot_id))
    return registry
