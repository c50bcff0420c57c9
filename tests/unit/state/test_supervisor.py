"""``TierSupervisor``: one availability state machine for HOT and COLD (fakes only, no I/O)."""

from __future__ import annotations

import asyncio
import enum

import pytest

from bot_v2.errors import StateUnavailableError
from bot_v2.state.supervisor import ProbePolicy, TierSupervisor
from tests.helpers import eventually_async


class S(enum.Enum):
    UP = "up"
    DOWN = "down"
    BACK = "back"


class FakeTier:
    """A tier whose ping fails while ``down``; ``recover`` records the recovery in the supervisor."""

    def __init__(self) -> None:
        self.down = True
        self.pings = 0
        self.recoveries = 0
        self.warnings: list[str] = []
        self.sup: TierSupervisor[S, int] | None = None

    async def ping(self) -> None:
        self.pings += 1
        if self.down:
            raise StateUnavailableError("fake down")

    async def recover(self) -> bool:
        assert self.sup is not None
        self.sup.begin_recovery()
        self.recoveries += 1
        self.sup.recovered(self.recoveries)
        return True


def supervisor(tier: FakeTier, policy: ProbePolicy, may_probe: bool = True) -> TierSupervisor[S, int]:
    sup: TierSupervisor[S, int] = TierSupervisor(
        "fake",
        policy,
        (S.UP, S.DOWN, S.BACK),
        ping=tier.ping,
        recover=tier.recover,
        warn_down=lambda exc: tier.warnings.append(f"down: {exc}"),
        warn_still_down=lambda exc, next_in: tier.warnings.append(f"still down, next in {next_in}"),
        may_probe=lambda: may_probe,
    )
    tier.sup = sup
    return sup


async def test_watch_probes_on_a_fixed_interval_without_any_operation() -> None:
    tier = FakeTier()
    sup = supervisor(tier, ProbePolicy(0.01, 0.01, 1.0, 60.0, watch=True))
    sup.failed(StateUnavailableError("gone"))
    assert sup.degraded and sup.down_since is not None and sup.next_probe_in() is not None

    async def probed_a_few_times() -> bool:
        return tier.pings >= 5

    await eventually_async(probed_a_few_times, timeout=2, interval=0.01)
    assert sup.next_probe_in() is not None and sup.next_probe_in() <= 0.01  # fixed: no backoff
    assert tier.warnings == ["down: gone"]  # throttled: one warning per warn interval
    tier.down = False
    started = asyncio.get_running_loop().time()

    async def up() -> bool:
        return sup.up

    await eventually_async(up, timeout=2, interval=0.002)
    assert asyncio.get_running_loop().time() - started < 0.5
    assert (sup.recoveries, sup.last_recovery, sup.down_since, sup.last_error) == (1, 1, None, None)
    pings = tier.pings
    await asyncio.sleep(0.05)
    assert tier.pings == pings  # up: the timer stopped
    await sup.close()


async def test_without_watch_an_operation_asks_and_failures_back_off() -> None:
    tier = FakeTier()
    sup = supervisor(tier, ProbePolicy(0.01, 0.04, 1.0, 60.0))
    sup.failed(StateUnavailableError("gone"))
    await asyncio.sleep(0.05)
    assert tier.pings == 0  # nobody asked
    for _ in range(4):
        assert not await sup.probe_now()
    assert tier.pings == 4 and 0.02 < (sup.next_probe_in() or 0) <= 0.04  # doubled up to the maximum
    sup.maybe_probe()  # not due yet
    await asyncio.sleep(0)
    assert tier.pings == 4
    tier.down = False
    await asyncio.sleep(0.05)
    sup.maybe_probe()
    await eventually_async(lambda: _true(sup.up), timeout=2, interval=0.005)
    await sup.close()


async def _true(value: bool) -> bool:
    return value


async def test_a_reader_never_probes_and_close_stops_the_timer() -> None:
    tier = FakeTier()
    sup = supervisor(tier, ProbePolicy(0.005, 0.005, 1.0, 60.0, watch=True), may_probe=False)
    sup.failed(StateUnavailableError("gone"))
    await asyncio.sleep(0.05)
    assert tier.pings == 0
    other = FakeTier()
    watched = supervisor(other, ProbePolicy(0.005, 0.005, 1.0, 60.0, watch=True))
    watched.failed(StateUnavailableError("gone"))
    await watched.close()
    await asyncio.sleep(0.03)
    assert other.pings == 0 and watched.degraded
    await sup.close()


async def test_a_hung_probe_is_a_failed_probe_after_the_timeout() -> None:
    tier = FakeTier()

    async def hang() -> None:
        await asyncio.Event().wait()

    sup: TierSupervisor[S, int] = TierSupervisor(
        "hung",
        ProbePolicy(0.01, 0.01, 0.05, 60.0),
        (S.UP, S.DOWN, S.BACK),
        ping=hang,
        recover=tier.recover,
        warn_down=lambda exc: None,
        warn_still_down=lambda exc, next_in: None,
    )
    sup.failed(StateUnavailableError("gone"))
    started = asyncio.get_running_loop().time()
    assert not await sup.probe_now()
    assert 0.04 < asyncio.get_running_loop().time() - started < 1.0
    assert "no answer within 0.05s" in (sup.last_error or "")
    await sup.close()


@pytest.mark.parametrize("log", [True, False])
async def test_first_failure_warns_unless_told_not_to(log: bool) -> None:
    tier = FakeTier()
    sup = supervisor(tier, ProbePolicy(1.0, 1.0, 1.0, 60.0))
    sup.failed(StateUnavailableError("gone"), log=log)
    assert tier.warnings == (["down: gone"] if log else [])
    await sup.close()
