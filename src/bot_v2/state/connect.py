"""Open a manager's tiers: WARM, HOT, then COLD, each bounded by the connect timeout.

WARM is required (it is the truth). HOT may be down at start when ``hot_required_at_start`` is off (the
manager starts degraded and restores the hot set later); COLD may be down when ``cold_required_at_start`` is
off or a spool is waiting (the manager starts spooling). Anything else closes what was opened and raises.
"""

from __future__ import annotations

import asyncio

from bot_v2.errors import StateUnavailableError
from bot_v2.state.settings import StateSettings
from bot_v2.state.tiers.cold import ColdTier
from bot_v2.state.tiers.hot import HotTier
from bot_v2.state.tiers.spool import SpoolingColdTier
from bot_v2.state.tiers.warm import WarmTier


async def connect_tiers(
    settings: StateSettings, hot: HotTier, warm: WarmTier, cold: SpoolingColdTier
) -> tuple[StateUnavailableError | None, StateUnavailableError | None]:
    """Connect every tier; return the errors of a HOT and a COLD tier the manager may start without."""
    opened: list[HotTier | WarmTier | ColdTier] = []
    hot_error: StateUnavailableError | None = None
    cold_error: StateUnavailableError | None = None
    order: tuple[HotTier | WarmTier | ColdTier, ...] = (warm, hot, cold)
    try:
        for tier in order:
            try:
                try:
                    async with asyncio.timeout(settings.connect_timeout_seconds * 2):
                        await tier.connect()
                except TimeoutError:
                    raise StateUnavailableError(
                        f"{tier!r}: no answer within {settings.connect_timeout_seconds}s"
                    ) from None
            except StateUnavailableError as exc:
                if tier is hot and not settings.hot_required_at_start:
                    hot_error = exc  # start degraded: WARM serves, HOT is probed and restored later
                elif tier is cold and (cold.spooled_objects or not settings.cold_required_at_start):
                    cold_error = exc  # start cold-degraded: writes spool, the spool is synced later
                else:
                    raise
            opened.append(tier)
    except BaseException:
        for tier in reversed(opened):
            await tier.close()
        raise
    return hot_error, cold_error
