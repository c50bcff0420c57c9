"""The running bot's Prometheus endpoint: on by default, on 127.0.0.1 at its profile's port.

Why a port that is busy is not always fatal: a port the operator chose (``METRICS_PORT``) that cannot be bound
is a configuration error (exit 2, before anything is touched). The profile's default port is busy when two bots
of one profile share a host (a standby beside its primary, several bot ids, a drill); refusing to trade for a
monitoring port would turn a metrics clash into an outage, so that bot logs a warning naming the fix and runs
without metrics -- Prometheus still sees it missing (``up == 0`` / ``PerpsBotDown``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from bot_v2.errors import ConfigError

__all__ = ["serve_metrics"]

logger = logging.getLogger(__name__)


@contextmanager
def serve_metrics(
    port: int | None,
    host: str = "127.0.0.1",
    *,
    bot_id: str | None = None,
    required: bool = True,
) -> Iterator[int | None]:
    """Serve the bot's registry on ``host:port`` for the life of the block and yield the bound port (None:
    not served). With ``bot_id`` every series carries ``bot_id="<id>"`` (several bots, one Prometheus:
    monitoring/labels.py). ``required``: a port that cannot be bound raises ``ConfigError``; otherwise a
    warning and no endpoint."""
    if port is None:
        yield None
        return
    from prometheus_client import start_http_server

    from bot_v2.monitoring.labels import bot_registry
    from bot_v2.monitoring.metrics import REGISTRY

    registry = REGISTRY if bot_id is None else bot_registry(bot_id, REGISTRY)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if required:
            raise ConfigError(
                f"METRICS_PORT: cannot listen on {host}:{port} ({exc.strerror}); choose a free port, or 0 for "
                "no metrics"
            ) from None
        logger.warning(
            "metrics not served: %s:%d is busy (%s) -- another bot of this profile on this host? give each "
            "bot its own METRICS_PORT (0: none)",
            host,
            port,
            exc.strerror,
        )
        yield None
        return
    bound = int(server.server_address[1])
    logger.info("serving Prometheus metrics on http://%s:%d/metrics", host, bound)
    try:
        yield bound
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
