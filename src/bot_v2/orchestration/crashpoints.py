"""TEST-ONLY crash hook: ``PERPS_TEST_CRASH_AT=after_intent|after_ack`` makes the bot SIGKILL itself there.

Read once, when the executor is built. ``after_intent`` fires after an order intent is durable and before the
exchange is called; ``after_ack`` after the exchange acknowledged the order and before any bookkeeping. The
crash tests use it to make the two dangerous windows deterministic. Never set it in production.
"""

from __future__ import annotations

import enum
import os
import signal
from collections.abc import Mapping

from bot_v2.errors import ConfigError

__all__ = ["CRASH_ENV", "CrashPoint", "crash_point_from_env", "maybe_crash"]

CRASH_ENV = "PERPS_TEST_CRASH_AT"


class CrashPoint(enum.StrEnum):
    AFTER_INTENT = "after_intent"
    AFTER_ACK = "after_ack"


def crash_point_from_env(environ: Mapping[str, str] | None = None) -> CrashPoint | None:
    """Return the configured crash point (None when unset); an unknown value is a ``ConfigError``."""
    raw = (os.environ if environ is None else environ).get(CRASH_ENV, "").strip().lower()
    if not raw:
        return None
    try:
        return CrashPoint(raw)
    except ValueError:
        choices = ", ".join(p.value for p in CrashPoint)
        raise ConfigError(f"{CRASH_ENV}: expected one of {choices}, got {raw!r}") from None


def maybe_crash(configured: CrashPoint | None, here: CrashPoint) -> None:
    """SIGKILL this process when ``here`` is the configured crash point."""
    if configured is here:
        os.kill(os.getpid(), signal.SIGKILL)
