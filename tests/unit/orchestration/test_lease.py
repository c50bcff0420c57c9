"""LeaseKeeper and LeasedBroker on the embedded state (SQLite WARM): acquire, watchdog, fence, gate, step-down."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot_v2.config.settings import LeaseSettings
from bot_v2.errors import (
    FencedError,
    LeaseHeldError,
    LeaseLostError,
    StateError,
    StateReadOnlyError,
    StateUnavailableError,
)
from bot_v2.monitoring.events import EventStore, EventType, read_events
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.lease import STORE_BACK_GRACE_TTLS, LeasedBroker, LeaseKeeper, new_claim
from bot_v2.state import StateCategory, StateManager, StateSettings
from bot_v2.state.models import LeaseClaim
from tests.helpers import eventually_async

FAST = LeaseSettings(ttl_seconds=0.3, watchdog_seconds=0.5, submit_budget_seconds=0.1)


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateManager]:
    manager = await StateManager.create(StateSettings(bot_id="lease-unit", data_dir=tmp_path, read_only=True))
    yield manager
    await manager.close()


def keeper(state: StateManager, name: str = "a", settings: LeaseSettings = FAST) -> LeaseKeeper:
    # a pid that is not alive on this host: the holder counts as crashed once it stops renewing
    claim = LeaseClaim(f"host:{name}", "other-host", 10_000 + len(name), "primary")
    return LeaseKeeper(state, settings, claim, bot_id="lease-unit", metrics=BotMetrics())


async def test_read_only_state_refuses_writes_until_it_takes_ownership(state: StateManager) -> None:
    with pytest.raises(StateReadOnlyError):
        await state.set_state("orders:1", {"a": 1}, StateCategory.ORDERS)
    owner = keeper(state)
    await owner.acquire()
    await state.take_ownership(owner.epoch)
    assert await state.set_state("orders:1", {"a": 1}, StateCategory.ORDERS) == 1
    assert state.epoch == 1


async def test_second_keeper_is_refused_while_the_holder_renews(state: StateManager) -> None:
    first = keeper(state, "a")
    await first.acquire()
    renewing = asyncio.create_task(first.run())
    try:
        with pytest.raises(
            LeaseHeldError, match=r"already running: lease held by primary on host other-host"
        ):
            await keeper(state, "b").acquire()
    finally:
        renewing.cancel()
    assert not first.fenced


async def test_a_holder_that_stopped_renewing_is_taken_over_within_the_ttl(state: StateManager) -> None:
    await keeper(state, "a").acquire()  # acquired, never renewed: a crashed process
    loop = asyncio.get_running_loop()
    started = loop.time()
    second = keeper(state, "bb")
    record = await second.acquire()
    assert record.epoch == 2 and record.holder == "host:bb"
    assert loop.time() - started <= FAST.ttl_seconds + 0.25


async def test_dead_pid_on_this_host_is_not_watched_first(state: StateManager) -> None:
    dead = LeaseClaim("host:dead", new_claim().host, _dead_pid(), "primary")
    await LeaseKeeper(state, FAST, dead, bot_id="lease-unit").acquire()
    record = await keeper(state, "b").acquire()
    assert record.epoch == 2


async def test_watchdog_stops_renewals_of_a_stuck_loop_so_a_standby_takes_over(state: StateManager) -> None:
    stuck = keeper(state, "a")
    await stuck.acquire()
    renewing = asyncio.create_task(stuck.run())  # renews, but the "loop" never beats
    try:
        standby = keeper(state, "b")
        record = await asyncio.wait_for(standby.wait_for_lease(), timeout=5)
        assert record.epoch == 2
        stuck.heartbeat()  # the loop gets going again: its next renewal learns it was replaced
        await eventually_async(lambda: _true(stuck.fenced), timeout=5)
        with pytest.raises(FencedError):
            stuck.check_submit("place_order")
    finally:
        renewing.cancel()


async def test_heartbeats_keep_the_lease(state: StateManager) -> None:
    holder = keeper(state, "a")
    await holder.acquire()
    renewing = asyncio.create_task(holder.run())
    try:
        for _ in range(10):  # well past the TTL and the watchdog bound
            holder.heartbeat()
            await asyncio.sleep(0.1)
        assert (await state.read_lease()).epoch == 1
        assert holder.remaining_seconds > FAST.submit_budget_seconds
        holder.check_submit("place_order")
    finally:
        renewing.cancel()


async def test_submit_gate_refuses_orders_without_enough_lease_left(state: StateManager) -> None:
    holder = keeper(state, "a")
    await holder.acquire()
    holder.check_submit("place_order")  # fresh: a whole TTL left
    await asyncio.sleep(FAST.ttl_seconds - FAST.submit_budget_seconds + 0.02)  # no renewal meanwhile
    with pytest.raises(LeaseLostError, match="place_order not sent"):
        holder.check_submit("place_order")
    holder.check_held()  # not fenced: it may renew and go on


async def test_an_order_after_a_starved_start_goes_out_while_the_lease_is_ours(state: StateManager) -> None:
    """The one-cycle bot of --cancel-all / --flatten: the lease is taken, then the start (exchange, replay) or a
    starved loop eats most of the default 0.6 s TTL before the renewal task first runs. The first order was
    refused ("lease good for 0.000s") though the lease was still ours; the gate now renews it first."""
    holder = keeper(state, "a", LeaseSettings())  # the defaults: TTL 0.6 s, submit budget 0.2 s
    await holder.acquire()
    inner = _RecordingBroker()
    broker = LeasedBroker.wrap(inner, holder)
    time.sleep(0.5)  # the loop is blocked: nothing renews; 0.1 s left, less than the submit budget
    renewing = asyncio.create_task(holder.run())  # run_bot starts it just before the first cycle
    try:
        await broker.place_order("order")
        assert inner.calls == ["place_order"] and holder.remaining_seconds > 0.4
        time.sleep(0.7)  # starved past the TTL (by the store's clock too); nobody took the lease meanwhile
        await broker.cancel_orders(["1"])
        assert inner.calls == ["place_order", "cancel_orders"] and (await state.read_lease()).epoch == 1
    finally:
        renewing.cancel()


async def test_an_expired_lease_still_refuses_orders_after_a_starved_loop(state: StateManager) -> None:
    """What the gate's renewal must not override: a loop the watchdog calls stuck (a standby may be taking
    over), a lease taken over meanwhile (fenced), renewals that fail (the store refuses)."""
    store = _LeaseStoreDown(state)
    old = LeaseKeeper(store, FAST, LeaseClaim("host:a", "other-host", 10_001), bot_id="lease-unit")
    await old.acquire()
    inner = _RecordingBroker()
    time.sleep(0.6)  # starved past the TTL and the watchdog, no cycle completed: not renewed at the gate
    with pytest.raises(LeaseLostError, match=r"good for 0\.000s"):
        await LeasedBroker.wrap(inner, old).place_order("order")
    assert not (await state.read_lease()).live
    old.heartbeat()
    assert (await keeper(state, "b").acquire()).epoch == 2  # a standby took the expired lease
    with pytest.raises(FencedError):
        await LeasedBroker.wrap(inner, old).place_order("order")  # the gate's renewal learns it
    assert old.fenced
    await asyncio.sleep(FAST.ttl_seconds + 0.05)
    failing = LeaseKeeper(store, FAST, LeaseClaim("host:c", "other-host", 10_003), bot_id="lease-unit")
    assert (await failing.acquire()).epoch == 3
    store.down = StateError("postgresql at x: renew lease failed: permission denied")  # not an outage
    time.sleep(0.35)
    failing.heartbeat()
    with pytest.raises(LeaseLostError, match=r"good for 0\.000s"):
        await LeasedBroker.wrap(inner, failing).place_order("order")
    assert inner.calls == []


async def test_leased_broker_sends_nothing_once_fenced(state: StateManager) -> None:
    holder = keeper(state, "a")
    await holder.acquire()
    inner = _RecordingBroker()
    broker = LeasedBroker.wrap(inner, holder)
    await broker.get_quotes(["BTC-USD"])
    await broker.place_order("order")
    await holder.fence("test")
    for call in (broker.get_quotes(["BTC-USD"]), broker.place_order("order"), broker.cancel_orders(["1"])):
        with pytest.raises(FencedError):
            await call
    assert inner.calls == ["get_quotes", "place_order"]
    await broker.close()  # closing is always allowed


async def test_step_down_request_ends_the_renewal_task(state: StateManager, tmp_path: Path) -> None:
    holder = keeper(state, "a")
    holder.events = events = EventStore(tmp_path / "events.jsonl")
    await holder.acquire()
    renewing = asyncio.create_task(holder.run())
    asked = "cli:ops@h1:4242 (deploy 42)"
    requested = await state.request_handover(asked)
    assert requested is not None and requested.handover_source == asked
    await asyncio.wait_for(renewing, timeout=2)
    assert holder.handover_requested and holder.lost.is_set() and not holder.fenced
    # the holder's step_down event names who asked and why (the audit trail of a hand-over)
    (event,) = [
        e for e in read_events(tmp_path / "events.jsonl", EventType.LEASE) if e["kind"] == "step_down"
    ]
    assert event["source"] == asked and event["holder"] == "host:a"
    await holder.release()
    events.close()
    assert not (await state.read_lease()).live
    assert (await state.read_lease()).handover_source is None  # the next holder starts with no request


async def test_fenced_state_write_after_a_takeover(state: StateManager) -> None:
    old = keeper(state, "a")
    await old.acquire()
    await state.take_ownership(old.epoch)
    await state.set_state("orders:1", {"v": 1}, StateCategory.ORDERS)
    await asyncio.sleep(FAST.ttl_seconds + 0.05)
    new = keeper(state, "bb")
    await new.acquire()  # same store, a newer epoch: the manager still writes with the old one
    with pytest.raises(FencedError):
        await state.set_state("orders:1", {"v": 2}, StateCategory.ORDERS)
    assert await state.get_state("orders:1") == {"v": 1}


class _RecordingBroker:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def get_quotes(self, symbols: Any) -> dict[str, Any]:
        self.calls.append("get_quotes")
        return {}

    async def place_order(self, request: Any) -> Any:
        self.calls.append("place_order")
        return request

    async def cancel_orders(self, ids: Any) -> list[Any]:
        self.calls.append("cancel_orders")
        return []

    async def close(self) -> None:
        self.calls.append("close")


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid -= 1


async def _true(value: bool) -> bool:
    return value


class _LeaseStoreDown:
    """The state as the keeper's lease store, with PostgreSQL 'down' on demand (renewals fail as unavailable)."""

    def __init__(self, inner: StateManager) -> None:
        self.inner = inner
        self.down: Exception | None = None
        self.lost = False  # PostgreSQL came back from a backup without the lease row

    async def acquire_lease(self, claim: LeaseClaim, ttl: float) -> Any:
        return await self.inner.acquire_lease(claim, ttl)

    async def renew_lease(self, holder: str, epoch: int, ttl: float) -> Any:
        if self.down is not None:
            raise self.down
        if self.lost:
            raise FencedError("lease taken over (no row)")
        return await self.inner.renew_lease(holder, epoch, ttl)

    async def release_lease(self, holder: str, epoch: int) -> bool:
        return await self.inner.release_lease(holder, epoch)

    async def read_lease(self) -> Any:
        return None if self.lost else await self.inner.read_lease()


async def test_warm_outage_orders_go_on_within_the_bound_and_never_past_it(state: StateManager) -> None:
    """Nobody can take the lease without its store: while renewals fail because PostgreSQL does not answer,
    orders go on (the risk engine applies PERPS_WARM_OUTAGE_MODE) for outage_max_seconds after the last
    renewal; any other renewal failure stops them at the TTL, as before."""
    now = [100.0]
    store = _LeaseStoreDown(state)
    claim = LeaseClaim("host:a", "other-host", 10_001, "primary")
    k = LeaseKeeper(store, FAST, claim, bot_id="lease-unit", clock=lambda: now[0], outage_max_seconds=5.0)
    await k.acquire()
    store.down = StateUnavailableError("postgresql at x: renew lease failed: refused")
    now[0] += 1.0  # well past the TTL
    await k.renew()
    k.check_submit("place_order")  # the store does not answer: the outage mode holds
    now[0] += 4.5
    with pytest.raises(LeaseLostError):
        k.check_submit("place_order")  # past PERPS_WARM_OUTAGE_MAX_SECONDS
    now[0] -= 4.5
    store.down = StateError("something else")
    await k.renew()
    with pytest.raises(LeaseLostError):
        k.check_submit("place_order")  # not an unreachable store: the TTL rules
    store.down = None
    assert await k.after_warm_outage("renew") == k.epoch  # PostgreSQL back: renewed, same epoch
    k.check_submit("place_order")


class _StoreDownForAll(_LeaseStoreDown):
    """Reads fail too while 'down' (a standby polling the lease)."""

    async def read_lease(self) -> Any:
        if self.down is not None:
            raise self.down
        return await super().read_lease()


async def test_a_standby_lets_the_holder_renew_first_when_the_lease_store_comes_back(
    state: StateManager,
) -> None:
    """PostgreSQL down longer than the TTL: the holder's lease expires in the row although the holder lives (it
    trades on under the WARM outage rules). When the store answers again the standby leaves the holder
    STORE_BACK_GRACE_TTLS to renew before it takes an expired lease (the chaos soak saw a standby win that
    race and fence a live holder, whose journal then could not be replayed)."""
    slow = LeaseSettings(ttl_seconds=1.0, watchdog_seconds=2.0, submit_budget_seconds=0.2)  # slack for CI
    holder = keeper(state, "a", slow)
    await holder.acquire()
    store = _StoreDownForAll(state)
    standby = LeaseKeeper(
        store, slow, LeaseClaim("host:bb", "other-host", 10_002, "standby"), bot_id="lease-unit"
    )
    store.down = StateUnavailableError("postgresql at x: refused")
    waiting = asyncio.create_task(standby.wait_for_lease())
    try:
        await asyncio.sleep(slow.ttl_seconds * 1.5)  # the holder's lease expires in the row meanwhile
        store.down = None  # back: the standby reads an expired lease...
        await asyncio.sleep(slow.renew_every_seconds * 1.5)
        assert not waiting.done()  # ...and leaves it to the holder
        await holder.renew()  # the holder's first renewal after the outage: same epoch, no takeover
        assert not holder.fenced
        grace_over = asyncio.get_running_loop().time() + slow.ttl_seconds * STORE_BACK_GRACE_TTLS
        while asyncio.get_running_loop().time() < grace_over:  # the holder renews on as it would
            await asyncio.sleep(slow.renew_every_seconds)
            await holder.renew()
        assert not waiting.done() and not holder.fenced
        await holder.release()  # a holder that goes away is still taken over
        record = await asyncio.wait_for(waiting, 10)
        assert record.holder == "host:bb" and record.epoch == holder.epoch + 1
    finally:
        waiting.cancel()


async def test_warm_outage_max_zero_is_strict_one_writer(state: StateManager) -> None:
    """PERPS_WARM_OUTAGE_MAX_SECONDS=0 (docs/RUNBOOK.md, a standby that may reach PostgreSQL by another path):
    an unreachable store gives no grace -- orders stop once the lease runs short, as for any renewal failure."""
    now = [100.0]
    store = _LeaseStoreDown(state)
    claim = LeaseClaim("host:a", "other-host", 10_001, "primary")
    k = LeaseKeeper(store, FAST, claim, bot_id="lease-unit", clock=lambda: now[0], outage_max_seconds=0.0)
    await k.acquire()
    k.check_submit("place_order")
    store.down = StateUnavailableError("postgresql at x: renew lease failed: refused")
    now[0] += 1.0  # past the TTL
    await k.renew()
    with pytest.raises(LeaseLostError):
        await k.check_submit_renewing("place_order")


async def test_after_warm_outage_a_lease_taken_meanwhile_fences(state: StateManager) -> None:
    ours = keeper(state, "a")
    await ours.acquire()
    await ours.release()
    other = keeper(state, "bb")
    await other.acquire()
    assert await ours.after_warm_outage("reacquire") is None
    assert ours.fenced


async def test_a_database_back_without_the_lease_is_not_a_takeover(state: StateManager) -> None:
    """The keeper's own renewal may reach a database restored from a backup before the journal's recovery
    does: no lease row (or an older epoch) after an outage is left to after_warm_outage("reacquire")."""
    store = _LeaseStoreDown(state)
    k = LeaseKeeper(store, FAST, LeaseClaim("host:a", "other-host", 10_001, "primary"), bot_id="lease-unit")
    await k.acquire()
    store.down = StateUnavailableError("postgresql at x: refused")
    await k.renew()
    store.down, store.lost = None, True
    await k.renew()
    assert not k.fenced
    store.lost = False
    await k.release()
    await keeper(state, "bb").acquire()  # a real takeover: a newer epoch in the row
    store.down = StateUnavailableError("postgresql at x: refused")
    await k.renew()
    store.down = None
    await k.renew()
    assert k.fenced
