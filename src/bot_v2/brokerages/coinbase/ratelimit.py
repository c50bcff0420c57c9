"""Rate-limit bookkeeping from the ``x-ratelimit-*`` headers the SDK merges into each response."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["RateLimitInfo", "RateLimitTracker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """The last rate-limit headers seen: the window's limit, what is left of it, and the reset value."""

    limit: int | None
    remaining: int | None
    reset: float | None

    @property
    def low(self) -> bool:
        """True when at most 10% (and at least one request's worth) of the window is left."""
        if self.remaining is None:
            return False
        floor = max(1, (self.limit or 0) // 10)
        return self.remaining <= floor


def _number(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None


class RateLimitTracker:
    """Remembers the latest ``RateLimitInfo`` and logs a throttled warning while the budget is low."""

    def __init__(
        self, warn_interval_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._info: RateLimitInfo | None = None
        self._warn_interval = warn_interval_seconds
        self._clock = clock
        self._last_warning: float | None = None
        self.suppressed_warnings = 0

    @property
    def info(self) -> RateLimitInfo | None:
        return self._info

    def observe(self, limit: Any, remaining: Any, reset: Any) -> RateLimitInfo | None:
        """Record header values (strings, numbers or None); ignore a response that carried none of them."""
        lim, rem, rst = _number(limit), _number(remaining), _number(reset)
        if lim is None and rem is None and rst is None:
            return self._info
        info = RateLimitInfo(
            limit=int(lim) if lim is not None else None,
            remaining=int(rem) if rem is not None else None,
            reset=float(rst) if rst is not None else None,
        )
        with self._lock:
            self._info = info
            warn = False
            if info.low:
                now = self._clock()
                if self._last_warning is None or now - self._last_warning >= self._warn_interval:
                    self._last_warning = now
                    warn = True
                else:
                    self.suppressed_warnings += 1
        if warn:
            logger.warning(
                "coinbase rate limit low: %s of %s requests left (reset %s)",
                info.remaining,
                info.limit,
                info.reset,
                extra={"rate_limit_remaining": info.remaining, "rate_limit_limit": info.limit},
            )
        return info

    def observe_response(self, response: Any) -> RateLimitInfo | None:
        """Record the ``rate_limit_*`` attributes of an SDK response object (missing ones are fine)."""
        return self.observe(
            getattr(response, "rate_limit_limit", None),
            getattr(response, "rate_limit_remaining", None),
            getattr(response, "rate_limit_reset", None),
        )

    def observe_headers(self, headers: Any) -> RateLimitInfo | None:
        """Record ``x-ratelimit-*`` headers of a raw HTTP response (an error answer, e.g. a 429)."""
        if headers is None:
            return self._info
        return self.observe(
            headers.get("x-ratelimit-limit"),
            headers.get("x-ratelimit-remaining"),
            headers.get("x-ratelimit-reset"),
        )
