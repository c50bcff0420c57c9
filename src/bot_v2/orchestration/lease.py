"""One live writer per bot id: the lease, its renewal task with a watchdog, and the gate on exchange calls.

The rules (DESIGN.md "Ownership"):

* The lease row and its fencing epoch live in WARM. Acquiring bumps the epoch in one transaction; from then on
  every WARM batch of this process carries the epoch and commits nothing once a newer one exists
  (``StateManager.take_ownership``).
* ``LeaseKeeper.run`` renews every ``ttl/3`` on its own task -- not once per cycle -- and only while the loop
  keeps completing cycles (``heartbeat``): a loop stuck longer than ``watchdog_seconds`` stops renewing, so a
  standby takes over from a stuck bot.
* Expiry is decided by the store's clock (``now()`` in the database); "my lease is good for at least the
  submit budget" by this process's monotonic clock, counted from the moment the renewal was SENT.
* ``LeasedBroker`` puts the gate in front of the exchange: no call at all once fenced, and an order, cancel or
  edit only while the lease has more than ``submit_budget_seconds`` left.
* PostgreSQL (which holds the lease) down: nobody can acquire the lease without it, so the holder whose
  renewals fail because the store does not answer keeps sending -- under ``PERPS_WARM_OUTAGE_MODE``, which
  the risk engine applies (default reduce_only) -- for at most ``outage_max_seconds`` after its last renewal.
  The one case where another process could hold the lease meanwhile is a partition (the standby reaches the
  database, this holder does not): then the old holder sends at most reduce-only orders and cancels, and
  when it reaches the database again it sees the newer epoch, is fenced, and never replays its journal
  (``after_warm_outage``). docs/RUNBOOK.md "PostgreSQL failure" says why this bound and not the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Literal, Protocol, cast

from bot_v2.brokerages.base import Broker
from bot_v2.config.settings import LeaseSettings
from bot_v2.domain import utc_now
from bot_v2.errors import FencedError, LeaseHeldError, LeaseLostError, StateError, StateUnavailableError
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.state.models import LeaseClaim, LeaseGrant, LeaseRecord

logger = logging.getLogger(__name__)

__all__ = ["LeaseKeeper", "LeaseSettings", "LeaseStore", "LeasedBroker", "new_claim", "warm_lease_gate"]

#: How often a standby reads the lease while the holder is stepping down.
HANDOVER_POLL_SECONDS = 0.01
#: TTLs a standby leaves the holder to renew after the lease store comes back (see wait_for_lease).
STORE_BACK_GRACE_TTLS = 2.0
#: Broker calls that change something at the exchange: sent only with time left on the lease.
ORDER_CALLS = frozenset({"place_order", "cancel_orders", "edit_order"})


class LeaseStore(Protocol):
    """What the keeper needs of the state layer (``StateManager`` satisfies it)."""

    async def acquire_lease(self, claim: LeaseClaim, ttl_seconds: float) -> LeaseGrant: ...

    async def renew_lease(self, holder: str, epoch: int, ttl_seconds: float) -> LeaseRecord: ...

    async def release_lease(self, holder: str, epoch: int) -> bool: ...

    async def read_lease(self) -> LeaseRecord | None: ...


def new_claim(role: str = "primary") -> LeaseClaim:
    """A claim unique to this process: host, pid and a random suffix (a restarted pid is another holder)."""
    host = socket.gethostname()
    pid = os.getpid()
    return LeaseClaim(f"{host}:{pid}:{secrets.token_hex(4)}", host, pid, role)


class LeaseKeeper:
    """Holds one bot id's lease for this process."""

    def __init__(
        self,
        store: LeaseStore,
        settings: LeaseSettings,
        claim: LeaseClaim,
        *,
        bot_id: str,
        events: EventStore | None = None,
        metrics: BotMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        outage_max_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.claim = claim
        self.bot_id = bot_id
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.record: LeaseRecord | None = None
        self.previous: LeaseRecord | None = None  # the lease this process took over (None: first ever)
        self.fenced = False
        self.handover_requested = False
        self.lost = asyncio.Event()  # set when fenced or asked to step down: the loop stops
        self._valid_until = -1.0  # monotonic time the lease is surely good until
        self._last_beat = clock()
        self._renew_failing = False
        self._watchdog_tripped = False
        # WARM outage (see the module docstring): None = no allowance, orders stop with the lease's time
        self.outage_max_seconds = outage_max_seconds
        self._store_unreachable = False  # the last renewal failed because the store did not answer
        self._renewed_sent = -math.inf  # monotonic time the last successful renewal (or acquire) was sent
        self._outage_noted = False

    @property
    def epoch(self) -> int:
        if self.record is None:
            raise RuntimeError("the lease is not held")
        return self.record.epoch

    @property
    def remaining_seconds(self) -> float:
        """Time the lease is surely still held, by this process's monotonic clock (<= 0: not held)."""
        return self._valid_until - self.clock()

    # --- taking the lease ------------------------------------------------------------------------------

    async def acquire(self) -> LeaseRecord:
        """Take the lease. A live holder that keeps renewing: ``LeaseHeldError`` naming it (exit 2). A
        holder that stopped renewing (crashed, stuck, paused): wait for its expiry -- at most its TTL -- and
        take over with epoch + 1."""
        while True:
            grant = await self._try_acquire()
            if grant.acquired:
                return grant.record
            held = await self._observe(grant.record)
            if held is None:
                continue  # it expired or was released while we watched
            if held.renewed_at > grant.record.renewed_at and not self._dead_on_this_host(held):
                raise LeaseHeldError(
                    f"bot {self.bot_id!r} is already running: lease held by {held.describe()}; "
                    "stop it first, or start this one with --standby"
                )
            logger.warning(
                "lease of bot %r: holder stopped renewing (%s); taking over when it expires",
                self.bot_id,
                held.describe(),
            )
            await asyncio.sleep(max(held.remaining_seconds, 0.001))

    async def _observe(self, held: LeaseRecord) -> LeaseRecord | None:
        """Watch a live lease for one and a half renewal periods (less if the holder is a dead process on
        this host); None if it is gone or expired by then."""
        if not self._dead_on_this_host(held):
            await asyncio.sleep(min(held.remaining_seconds, self.settings.renew_every_seconds * 1.5))
        record = await self.store.read_lease()
        return record if record is not None and record.live else None

    def _dead_on_this_host(self, held: LeaseRecord) -> bool:
        if held.host != self.claim.host or held.pid == self.claim.pid:
            return False
        try:
            os.kill(held.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    async def wait_for_lease(
        self, on_wait: Callable[[LeaseRecord], Awaitable[None]] | None = None
    ) -> LeaseRecord:
        """Standby: poll the lease (every TTL/3, or exactly until the holder's expiry when that is sooner;
        every few ms while a step-down is under way) and take it as soon as it expires or is released.

        Except just after the lease store comes back: the holder's renewals failed with it (it may still be
        trading under the WARM outage rules), so a lease that expired meanwhile says nothing about the holder
        yet. For ``STORE_BACK_GRACE_TTLS`` TTLs after the store answers again the holder may renew first;
        only a lease still expired after that is taken (a holder that died during the outage costs that
        much more takeover time)."""
        store_down = False
        store_back_at: float | None = None
        while True:
            try:
                held = await self.store.read_lease()
                if store_down:
                    store_back_at = self.clock()
                if held is None or not held.live:
                    grace = self.settings.ttl_seconds * STORE_BACK_GRACE_TTLS
                    if (
                        held is not None
                        and store_back_at is not None
                        and self.clock() - store_back_at < grace
                    ):
                        store_down = False
                        await asyncio.sleep(self.settings.renew_every_seconds)
                        continue
                    grant = await self._try_acquire()
                    if grant.acquired:
                        return grant.record
                    held = grant.record  # another standby was quicker
            except StateUnavailableError as exc:  # the store is down: a standby waits it out, it never exits
                if not store_down:
                    logger.warning(
                        "standby for bot %r: lease store unavailable (%s); retrying", self.bot_id, exc
                    )
                store_down = True
                await asyncio.sleep(self.settings.renew_every_seconds)
                continue
            store_down = False
            self._publish_holder(held)
            if on_wait is not None:
                await on_wait(held)
            # a holder asked to step down releases within a cycle: watch closely (a read is ~0.5 ms)
            poll = HANDOVER_POLL_SECONDS if held.handover_requested else self.settings.renew_every_seconds
            await asyncio.sleep(min(poll, max(held.remaining_seconds, 0.001)))

    async def _try_acquire(self, min_epoch: int = 1) -> LeaseGrant:
        sent = self.clock()
        before = await self.store.read_lease()
        claim = self.claim if min_epoch <= 1 else replace(self.claim, min_epoch=min_epoch)
        grant = await self.store.acquire_lease(claim, self.settings.ttl_seconds)
        self._publish_holder(grant.record)  # ours, or the holder that kept it
        if grant.acquired:
            self.record = grant.record
            self.previous = before
            self._valid_until = sent + self.settings.ttl_seconds
            self._renewed_sent = sent
            self._last_beat = self.clock()
            kind = "takeover" if before is not None and before.holder != self.claim.holder else "acquired"
            await self._event(
                kind,
                logging.WARNING if kind == "takeover" else logging.INFO,
                "lease of bot %r acquired: epoch %d (%s)",
                self.bot_id,
                grant.record.epoch,
                f"previous holder {before.describe()}" if before is not None else "first holder",
                epoch=grant.record.epoch,
                previous=None if before is None else _record_fields(before),
            )
            if self.metrics is not None:
                self.metrics.lease_epoch.set(grant.record.epoch)
        return grant

    # --- holding it ------------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """The loop completed a cycle (or a start-up step): renewals may go on."""
        self._last_beat = self.clock()
        if self._watchdog_tripped:
            self._watchdog_tripped = False
            logger.warning("lease of bot %r: the loop completes cycles again; renewing", self.bot_id)

    async def run(self) -> None:
        """The renewal task: every TTL/3 renew, unless the watchdog says the loop is stuck. Returns when the
        lease is lost (fenced) or the holder is asked to step down; cancel it to stop."""
        every = self.settings.renew_every_seconds
        # the first renewal is due TTL/3 after the last one SENT (the acquire), not after this task started: a
        # slow start between the acquire and the loop (connecting the exchange, a replay) leaves less lease
        next_at = min(self.clock(), self._renewed_sent) if self._renewed_sent > -math.inf else self.clock()
        while not self.lost.is_set():
            next_at += every
            await asyncio.sleep(max(0.0, next_at - self.clock()))
            if self.clock() - self._last_beat > self.settings.watchdog_seconds:
                await self._watchdog()
                continue
            await self.renew()
            if self.clock() > next_at + every:  # a slow renewal or a paused process: do not burst to catch up
                next_at = self.clock()

    async def renew(self) -> None:
        """Renew once; sets ``lost`` when fenced or asked to step down. Store outages are retried by ``run``."""
        sent = self.clock()
        try:
            async with asyncio.timeout(self.settings.renew_every_seconds * 2):
                record = await self.store.renew_lease(
                    self.claim.holder, self.epoch, self.settings.ttl_seconds
                )
        except FencedError as exc:
            if self._store_unreachable and await self._lease_row_lost():
                return  # PostgreSQL came back without our lease: the state's recovery takes it again
            await self.fence(str(exc))
            return
        except (StateUnavailableError, StateError, TimeoutError) as exc:
            self._store_unreachable = isinstance(exc, StateUnavailableError | TimeoutError)
            if not self._renew_failing:
                self._renew_failing = True
                error = (
                    f"no answer within {self.settings.renew_every_seconds * 2:.3f}s"
                    if isinstance(exc, TimeoutError)
                    else f"{type(exc).__name__}: {exc}"
                )
                await self._event(
                    "renew_failed",
                    logging.WARNING,
                    "lease of bot %r: renewal failed (%s); %.3fs left before orders stop",
                    self.bot_id,
                    error,
                    max(0.0, self.remaining_seconds),
                    error=error,
                )
            self._publish_remaining()
            return
        self.record = record
        # max: the gate's renewal (``check_submit_renewing``) may overlap the task's; the later send counts
        self._valid_until = max(self._valid_until, sent + self.settings.ttl_seconds)
        self._renewed_sent = max(self._renewed_sent, sent)
        self._store_unreachable = self._outage_noted = False
        self._publish_remaining()
        self._publish_holder(record)
        if self._renew_failing:
            self._renew_failing = False
            await self._event(
                "renewed_again", logging.WARNING, "lease of bot %r: renewing again", self.bot_id
            )
        if record.handover_requested and not self.handover_requested:
            self.handover_requested = True
            await self._event(
                "step_down",
                logging.WARNING,
                "lease of bot %r: step-down requested by %s; handing over",
                self.bot_id,
                record.handover_source or "an unrecorded requester",
                source=record.handover_source,
            )
            self.lost.set()

    async def _lease_row_lost(self) -> bool:
        """After an outage: the store has no lease row for this bot, an older epoch than ours, or ours just taken
        again by the recovery (this renewal was sent before that) -- the database came back from a backup (or
        empty), nobody took over. ``after_warm_outage("reacquire")`` (the journal's replay) takes the lease
        again; until then this is still the outage. A newer epoch (or another holder): fenced."""
        try:
            held = await self.store.read_lease()
        except (StateUnavailableError, StateError):
            return False
        if held is None or self.record is None:
            return held is None
        mine = held.holder == self.claim.holder and held.epoch == self.record.epoch  # just taken again
        return held.epoch < self.record.epoch or mine

    async def _watchdog(self) -> None:
        if self._watchdog_tripped:
            return
        self._watchdog_tripped = True
        stuck = self.clock() - self._last_beat
        await self._event(
            "watchdog",
            logging.ERROR,
            "lease of bot %r: no cycle completed for %.1fs (watchdog %.1fs): renewals stop, a standby may take over",
            self.bot_id,
            stuck,
            self.settings.watchdog_seconds,
            stuck_seconds=round(stuck, 3),
        )

    async def fence(self, reason: str) -> None:
        """This process was replaced: from now on it sends nothing and writes nothing."""
        if self.fenced:
            return
        self.fenced = True
        self._valid_until = -1.0
        self.lost.set()
        self._publish_remaining()
        self._publish_holder(None)  # a newer holder: this process no longer reads the lease
        await self._event(
            "fenced",
            logging.ERROR,
            "lease of bot %r lost: %s -- a newer holder trades now; this process stops without another "
            "exchange call or state write",
            self.bot_id,
            reason,
            epoch=None if self.record is None else self.record.epoch,
            reason=reason,
        )

    def check_held(self) -> None:
        """Raise ``FencedError`` once this process was fenced (before ANY exchange call)."""
        if self.fenced:
            raise FencedError(f"bot {self.bot_id!r}: this process lost its lease; no exchange call")

    def check_submit(self, action: str) -> None:
        """Before an order, cancel or edit: ``FencedError`` if fenced, ``LeaseLostError`` (retry next cycle)
        if the lease has no more than the submit budget left."""
        self.check_held()
        left = self.remaining_seconds
        if left <= self.settings.submit_budget_seconds and not self._outage_allows(action):
            raise LeaseLostError(
                f"{action} not sent: the lease of bot {self.bot_id!r} is good for {max(left, 0.0):.3f}s, "
                f"less than the submit budget {self.settings.submit_budget_seconds}s (renewals failing?)"
            )

    async def check_submit_renewing(self, action: str) -> None:
        """``check_submit`` for the exchange gate. A lease short of time is renewed once first when that is
        allowed -- held, not stepping down, renewals not failing, the loop not stuck (watchdog) -- so a lease
        that is still ours is not refused because the renewal task has not run yet (a slow start between the
        acquire and the first order, a starved event loop). A lease taken over fails that renewal (fenced);
        an unreachable store leaves it short (refused, or the WARM outage rules)."""
        if (
            self.remaining_seconds <= self.settings.submit_budget_seconds
            and self.record is not None
            and not (self.fenced or self.lost.is_set() or self._renew_failing or self._watchdog_tripped)
            and self.clock() - self._last_beat <= self.settings.watchdog_seconds
        ):
            await self.renew()
        self.check_submit(action)

    def _outage_allows(self, action: str) -> bool:
        """The lease store does not answer and the last renewal is less than ``outage_max_seconds`` old: the
        holder keeps sending (nobody can acquire without the store; see the module docstring)."""
        if self.outage_max_seconds is None or not (self._renew_failing and self._store_unreachable):
            return False
        since = self.clock() - self._renewed_sent
        if since >= self.outage_max_seconds:
            return False
        if not self._outage_noted:
            self._outage_noted = True
            logger.warning(
                "lease of bot %r: the lease store (PostgreSQL) has not answered for %.3fs: %s goes out under "
                "the WARM outage mode; orders stop %.0fs after the last renewal (PERPS_WARM_OUTAGE_MAX_SECONDS)",
                self.bot_id,
                since,
                action,
                self.outage_max_seconds,
            )
        return True

    async def after_warm_outage(
        self, kind: Literal["renew", "reacquire"], known_epoch: int = 0
    ) -> int | None:
        """The state layer's lease gate (``StateManager.set_lease_gate``): before the journal is replayed,
        renew the lease (same epoch) -- or, when the database came back without it, take it again, with an
        epoch above ``known_epoch`` (the state's) and every epoch this keeper held or saw: the restored row's
        epoch + 1 (or 1) would let a zombie writer of an old, higher epoch pass the fence. Returns the epoch to
        replay under, or None (not renewed yet, or fenced: then nothing is replayed)."""
        if self.fenced:
            return None
        if kind == "renew":
            await self.renew()
            return None if self.fenced or self._renew_failing else self.epoch
        seen = [known_epoch] + [r.epoch for r in (self.record, self.previous) if r is not None]
        grant = await self._try_acquire(min_epoch=max(seen) + 1)
        if not grant.acquired:
            await self.fence(
                f"the database came back without this bot's lease and {grant.record.describe()} took it"
            )
            return None
        logger.error(
            "lease of bot %r taken again with epoch %d: the database came back without it",
            self.bot_id,
            grant.record.epoch,
        )
        return grant.record.epoch

    async def release(self) -> None:
        """Expire the lease now (clean stop, step-down) so the next holder need not wait for the TTL."""
        if self.record is None or self.fenced:
            return
        try:
            released = await self.store.release_lease(self.claim.holder, self.record.epoch)
        except StateError as exc:
            logger.warning(
                "lease of bot %r not released (%s); it expires in at most its TTL", self.bot_id, exc
            )
            return
        self._valid_until = -1.0
        self._publish_remaining()
        self._publish_holder(None)
        if released:
            await self._event(
                "released",
                logging.INFO,
                "lease of bot %r released (epoch %d)",
                self.bot_id,
                self.record.epoch,
            )

    # --- reporting -------------------------------------------------------------------------------------

    def _publish_holder(self, record: LeaseRecord | None) -> None:
        if self.metrics is not None:
            if record is None:
                self.metrics.set_lease_holder(None)
            else:
                self.metrics.set_lease_holder(
                    record.holder, record.host, record.pid, record.role, record.epoch
                )

    def _publish_remaining(self) -> None:
        if self.metrics is not None:
            self.metrics.lease_remaining_seconds.set(max(0.0, self.remaining_seconds))

    async def _event(self, kind: str, level: int, message: str, *args: Any, **fields: Any) -> None:
        logger.log(level, message, *args)
        if self.metrics is not None:
            self.metrics.lease_events.labels(kind=kind).inc()
        if self.events is not None:
            await self.events.emit(
                EventType.LEASE,
                utc_now(),
                kind=kind,
                bot_id=self.bot_id,
                holder=self.claim.holder,
                host=self.claim.host,
                pid=self.claim.pid,
                role=self.claim.role,
                **fields,
            )


def _record_fields(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holder": record.holder,
        "host": record.host,
        "pid": record.pid,
        "epoch": record.epoch,
        "renewal_age_seconds": round(record.renewal_age_seconds, 3),
        "remaining_seconds": round(record.remaining_seconds, 3),
    }


class LeasedBroker:
    """A ``Broker`` behind the lease: every call checks the process still holds it, and order calls that it
    has more than the submit budget left. The exchange cannot check our epoch, so this gate is the fence on
    that side."""

    def __init__(self, inner: Broker, keeper: LeaseKeeper) -> None:
        self._inner = inner
        self._keeper = keeper

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name == "close" or not asyncio.iscoroutinefunction(attr):
            return attr
        keeper = self._keeper

        async def gated(*args: Any, **kwargs: Any) -> Any:
            if name in ORDER_CALLS:
                await keeper.check_submit_renewing(name)
            else:
                keeper.check_held()
            return await attr(*args, **kwargs)

        return gated

    @classmethod
    def wrap(cls, inner: Broker, keeper: LeaseKeeper) -> Broker:
        """``inner`` behind the lease, typed as the port it implements."""
        return cast(Broker, cls(inner, keeper))


class _Owner(Protocol):
    @property
    def known_epoch(self) -> int: ...

    async def take_ownership(self, epoch: int) -> None: ...


def warm_lease_gate(
    keeper: LeaseKeeper, state: _Owner
) -> Callable[[Literal["renew", "reacquire"]], Awaitable[int | None]]:
    """The gate ``StateManager.set_lease_gate`` takes: ``keeper.after_warm_outage``, and a lease taken
    again (lost database) fences the state's writes with the new epoch."""

    async def gate(kind: Literal["renew", "reacquire"]) -> int | None:
        epoch = await keeper.after_warm_outage(kind, state.known_epoch)
        if epoch is not None and kind == "reacquire":
            await state.take_ownership(epoch)
        return epoch

    return gate
