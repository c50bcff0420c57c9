"""``TierSupervisor``: the availability state machine of a tier the bot keeps running without (HOT, COLD).

One instance per tier. It holds the state (``up`` / ``degraded`` / recovering: ``restoring`` for HOT,
``syncing`` for COLD), when and why the tier went down, the probe schedule and the one probe task, the
throttled "still down" warning, and the count and record of recoveries. What a probe and a recovery *do*
(PING + restore the hot set, probe + sync the spool) and what the warnings say belong to the owner (the
``StateManager``), passed in as callables, so both tiers share one implementation of the rules:

* the first failure degrades the tier and warns once; later failures (a failed probe, a failed recovery, an
  operation that failed again) back off the next probe up to ``ProbePolicy.max_interval_seconds`` and warn
  at most every ``warn_interval_seconds``;
* a probe is bounded by ``timeout_seconds`` (a hung server is a failed probe, not a stuck task);
* only one probe (and recovery) runs at a time; operations never wait for it;
* with ``ProbePolicy.watch`` the supervisor probes on its own timer while the tier is down (HOT: it must come
  back within milliseconds of answering, idle bot or not); otherwise an operation asks (``maybe_probe``) once
  the interval has passed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from bot_v2.errors import StateError, StateUnavailableError

logger = logging.getLogger(__name__)

S = TypeVar("S", bound=enum.Enum)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ProbePolicy:
    """When to probe a degraded tier and how loudly to say it is still down."""

    interval_seconds: float  # first probe after the tier failed
    max_interval_seconds: float  # the interval doubles per failure up to this (equal to interval: fixed)
    timeout_seconds: float  # a probe without an answer by then failed (hung server)
    warn_interval_seconds: float  # "still down" warnings at most this often
    watch: bool = False  # probe on a timer while down (else only when an operation calls maybe_probe)


class TierSupervisor(Generic[S, R]):
    """Availability of one tier: ``failed`` degrades it, probes bring it back through ``recover``."""

    def __init__(
        self,
        tier: str,
        policy: ProbePolicy,
        states: tuple[S, S, S],
        *,
        ping: Callable[[], Awaitable[None]],
        recover: Callable[[], Awaitable[bool]],
        warn_down: Callable[[BaseException], None],
        warn_still_down: Callable[[BaseException, float], None],
        on_down: Callable[[], None] | None = None,
        on_failure: Callable[[], None] | None = None,
        may_probe: Callable[[], bool] = lambda: True,
        task_name: str = "state-probe",
        recovery_name: str = "recovering the tier",
    ) -> None:
        self._tier = tier
        self.policy = policy
        self._up, self._degraded, self._recovering = states
        self._ping = ping
        self._recover = recover
        self._warn_down = warn_down
        self._warn_still_down = warn_still_down
        self._on_down = on_down
        self._on_failure = on_failure
        self._may_probe = may_probe
        self._task_name = task_name
        self._recovery_name = recovery_name
        self.state: S = self._up
        self.down_since: datetime | None = None
        self.last_error: str | None = None
        self.recoveries = 0
        self.last_recovery: R | None = None
        self._interval = policy.interval_seconds
        self._next_probe = 0.0  # time.monotonic() of the next allowed probe while degraded
        self._last_warning = -math.inf
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # --- state ------------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self.state is self._up

    @property
    def degraded(self) -> bool:
        """Down: the last probe, recovery or operation failed and no probe has answered since."""
        return self.state is self._degraded

    @property
    def recovering(self) -> bool:
        return self.state is self._recovering

    def next_probe_in(self) -> float | None:
        """Seconds until the next probe is allowed (None unless degraded)."""
        if self.state is not self._degraded:
            return None
        return max(0.0, self._next_probe - time.monotonic())

    # --- failure ----------------------------------------------------------------------------------

    def failed(self, exc: BaseException, *, log: bool = True) -> None:
        """The tier did not answer: degrade it and schedule the next probe (with backoff after the first)."""
        now = time.monotonic()
        self.last_error = str(exc)
        if self.state is self._up:
            self.down_since = datetime.now(UTC)
            self._interval = self.policy.interval_seconds
            if self._on_down is not None:
                self._on_down()
            if log:
                self._last_warning = now
                self._warn_down(exc)
        else:  # a probe, a recovery or another operation failed: back off
            self._interval = min(self._interval * 2, self.policy.max_interval_seconds)
            if now - self._last_warning >= self.policy.warn_interval_seconds:
                self._last_warning = now
                self._warn_still_down(exc, self._interval)
        self.state = self._degraded
        if self._on_failure is not None:
            self._on_failure()
        self._next_probe = now + self._interval
        if self.policy.watch:
            self._arm_timer()

    @contextmanager
    def io(self) -> Iterator[None]:
        """Run tier I/O: a ``StateUnavailableError`` degrades the tier, then propagates."""
        try:
            yield
        except StateUnavailableError as exc:
            self.failed(exc)
            raise

    # --- probes -----------------------------------------------------------------------------------

    def maybe_probe(self) -> None:
        """While degraded, start one background probe (and recovery) once the interval has passed."""
        if self.state is not self._degraded or self._closed or time.monotonic() < self._next_probe:
            return
        self._start_probe()

    def _start_probe(self) -> None:
        if self._closed or self.state is not self._degraded or not self._may_probe():
            return
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self.probe(), name=self._task_name)

    def _arm_timer(self) -> None:
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (cannot happen in the manager): operations probe instead
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(self._interval, self._start_probe)

    async def probe(self) -> bool:
        """Probe now (if degraded) and recover if the tier answers; return whether it is up."""
        async with self._lock:
            if self.state is self._up:
                return True
            if self._closed:
                return False
            timeout = self.policy.timeout_seconds
            try:
                async with asyncio.timeout(timeout):
                    await self._ping()
            except StateUnavailableError as exc:
                self.failed(exc)
                return False
            except TimeoutError:
                self.failed(StateUnavailableError(f"{self._tier}: no answer within {timeout}s"))
                return False
            try:
                return await self._recover()
            except Exception as exc:  # the tier or WARM failed mid-recovery, or a bug: retry later
                if not isinstance(exc, StateError):
                    logger.exception("%s failed", self._recovery_name)
                if self.state is not self._degraded:
                    self.failed(exc)
                return False

    async def probe_now(self) -> bool:
        """Wait for a running probe, then probe (ignoring the schedule); return whether the tier is up."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.shield(task)
        return await self.probe()

    # --- recovery ---------------------------------------------------------------------------------

    def begin_recovery(self) -> None:
        self.state = self._recovering

    def recovered(self, record: R) -> None:
        """The tier is up again; ``record`` describes this recovery."""
        self.state = self._up
        self.recoveries += 1
        self.last_recovery = record
        self.down_since = self.last_error = None
        self._interval = self.policy.interval_seconds
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def close(self) -> None:
        """Stop probing: cancel the timer and a running probe (waiting for it to finish)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # close() itself was cancelled
