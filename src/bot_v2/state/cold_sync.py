"""COLD availability of one ``StateManager``: its ``TierSupervisor``, the spool sync and ``system:s3_available``.

A COLD write the store cannot take goes to the local spool (``tiers/spool.py``) and succeeds; the supervisor
then probes the store on its own timer at a short fixed interval (``cold_probe_interval_seconds``, like HOT:
a refused connection costs next to nothing, and the spool must start draining as soon as S3 answers, idle bot
or not), and when it answers the spool is uploaded oldest first, several puts in flight, every object
verified, before COLD writes go to the store again. The METADATA record ``system:s3_available`` says which
of the two is true; it is written (one single-key batch through the manager) only when it changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot_v2.errors import StateError, StateUnavailableError
from bot_v2.state import codec
from bot_v2.state.models import ColdRecovery, ColdState
from bot_v2.state.settings import StateSettings
from bot_v2.state.supervisor import ProbePolicy, TierSupervisor
from bot_v2.state.tiers.spool import SpooledObject, SpoolingColdTier

logger = logging.getLogger(__name__)

S3_AVAILABLE_KEY = "system:s3_available"
"""METADATA record (WARM) holding whether the COLD store takes writes (False while they are spooled)."""


class ColdSync:
    """COLD state machine + spool sync + the ``system:s3_available`` record, for one manager."""

    def __init__(
        self,
        settings: StateSettings,
        cold: SpoolingColdTier,
        *,
        fetch: Callable[[list[str]], Awaitable[dict[str, bytes]]],
        write_flag: Callable[[bool], Awaitable[None]],
        writable: Callable[[], bool],
    ) -> None:
        self._cold = cold
        self._fetch = fetch  # the manager's read path (HOT -> WARM), for the stored flag
        self._write_flag = write_flag  # one METADATA batch through the manager (under its lock)
        self._writable = writable  # False for a reader or a closed manager: nothing is written
        self._synced = (0, 0)  # objects, bytes uploaded from the spool during the current outage
        self.flag_pending: bool | None = None  # system:s3_available value still to be written
        self._flag_lock = asyncio.Lock()
        self.supervisor: TierSupervisor[ColdState, ColdRecovery] = TierSupervisor(
            repr(cold),
            ProbePolicy(
                settings.cold_probe_interval_seconds,
                settings.cold_probe_max_interval_seconds,
                settings.cold_probe_timeout_seconds,
                settings.cold_degraded_warn_interval_seconds,
                watch=True,
            ),
            (ColdState.UP, ColdState.DEGRADED, ColdState.SYNCING),
            ping=cold.probe,
            recover=self._sync,
            warn_down=self._warn_down,
            warn_still_down=self._warn_still_down,
            on_down=self._went_down,
            on_failure=self._spool,
            may_probe=writable,
            task_name=f"state-cold-probe-{settings.bot_id}",
            recovery_name="syncing the COLD spool",
        )
        cold.on_unavailable = self.supervisor.failed

    async def at_start(self, error: StateUnavailableError | None, read_only: bool) -> None:
        """COLD did not answer (start spooling) or a previous process left a spool (sync it now); then make
        ``system:s3_available`` agree with the state we start in. A reader only notes the COLD state."""
        if error is not None:
            self.supervisor.failed(error)
        elif self._cold.spooling:  # objects spooled by a previous process: COLD answers, sync them now
            self.supervisor.failed(StateUnavailableError("spool left by a previous process"), log=False)
            if not read_only:
                await self.supervisor.probe()
        if not read_only:
            await self.republish_flag()

    def _went_down(self) -> None:
        self._synced = (0, 0)
        self.flag_pending = False

    def _spool(self) -> None:
        self._cold.spooling = True
        # a writer probes the store on a timer, so its reads need not ask the dead endpoint meanwhile; a
        # reader never probes (nor syncs): its reads keep asking the store
        self._cold.down = self._writable()

    def _warn_down(self, exc: BaseException) -> None:
        logger.warning(
            "COLD tier %r unavailable: degraded, COLD writes go to the spool %s until it answers: %s",
            self._cold,
            self._cold.spool_dir,
            exc,
        )

    def _warn_still_down(self, exc: BaseException, next_probe_seconds: float) -> None:
        logger.warning(
            "COLD tier still unavailable since %s (%d objects / %d bytes spooled, next probe in %.1fs): %s",
            self.supervisor.down_since,
            self._cold.spooled_objects,
            self._cold.spooled_bytes,
            next_probe_seconds,
            exc,
        )

    async def _sync(self) -> bool:
        """COLD answers again: upload the spool oldest first (each object verified, then deleted from the
        spool); when it is empty, COLD writes go to COLD again and ``system:s3_available`` becomes true."""
        started = time.perf_counter()
        supervisor = self.supervisor
        supervisor.begin_recovery()

        def synced(entry: SpooledObject) -> None:
            self._synced = (self._synced[0] + 1, self._synced[1] + entry.size)

        await self._cold.sync(synced)
        if not supervisor.recovering:  # a COLD read failed meanwhile: degraded again
            self._cold.spooling = True
            return False
        recovered = datetime.now(UTC)
        objects, nbytes = self._synced
        recovery = ColdRecovery(
            detected_at=supervisor.down_since or recovered,
            recovered_at=recovered,
            sync_seconds=time.perf_counter() - started,
            objects_synced=objects,
            bytes_synced=nbytes,
        )
        supervisor.recovered(recovery)
        self._synced = (0, 0)
        self.flag_pending = True
        logger.warning(
            "COLD tier recovered after %.3fs degraded: %d spooled objects (%d bytes) synced and verified in %.3fs",
            recovery.outage_seconds,
            objects,
            nbytes,
            recovery.sync_seconds,
        )
        await self.publish_flag()
        return True

    async def republish_flag(self) -> None:
        """Make ``system:s3_available`` agree with the COLD state (at start, and after a checkpoint restore
        rewrote or deleted it). A missing record means available: nothing is written while COLD is up."""
        stored = await self._fetch([S3_AVAILABLE_KEY])
        available = self.supervisor.up
        self.flag_pending = None
        if S3_AVAILABLE_KEY in stored:
            if codec.decode_value(stored[S3_AVAILABLE_KEY], S3_AVAILABLE_KEY) is not available:
                self.flag_pending = available
        elif not available:
            self.flag_pending = False
        await self.publish_flag()

    async def publish_flag(self) -> None:
        """Write ``system:s3_available`` if it changed. Never raises: the caller's own write succeeded; if
        WARM fails the value stays pending and the next write retries."""
        async with self._flag_lock:
            value = self.flag_pending
            if value is None or not self._writable():
                return
            try:
                await self._write_flag(value)
            except StateError as exc:
                logger.warning(
                    "writing %s=%s failed (retried with the next write): %s", S3_AVAILABLE_KEY, value, exc
                )
                return
            if self.flag_pending is value:
                self.flag_pending = None
