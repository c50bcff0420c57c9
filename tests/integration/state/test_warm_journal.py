"""WARM down: durable writes go to the local journal, reads see them, the replay is idempotent and lease-checked
(DESIGN.md "Recovery": PostgreSQL down; state/outage.py). The spy tests run over the embedded and the real
combos; the lost-database test needs PostgreSQL (it empties the bot's rows and lease behind the manager)."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from typing import Any, Literal

import asyncpg
import pytest

from bot_v2.config.settings import LeaseSettings
from bot_v2.errors import FencedError
from bot_v2.orchestration.lease import LeaseKeeper, new_claim, warm_lease_gate
from bot_v2.state import StateCategory, StateManager
from bot_v2.state.models import LeaseClaim, WarmState
from bot_v2.state.settings import StateSettings
from tests.integration.state.conftest import spied_tiers
from tests.unit.state.fakes import TierSpy, down

ORDERS, INTENTS, FILLS = StateCategory.ORDERS, StateCategory.INTENTS, StateCategory.FILLS
WARM_CALLS = (
    "upsert_many",
    "get_many",
    "delete_many",
    "get_versions",
    "move_many",
    "read_lease",
    "renew_lease",
)


def break_warm(warm: TierSpy) -> None:
    for name in WARM_CALLS:
        warm.fail[name] = down("warm")


def quiet(settings: StateSettings, **changes: Any) -> StateSettings:
    """No timer probes: the test decides when WARM is probed (``recover_warm``)."""
    return replace(settings, warm_probe_interval_seconds=3600.0, **changes)


async def test_writes_while_warm_is_down_are_journaled_served_and_replayed(
    state_settings: StateSettings,
) -> None:
    settings = quiet(state_settings)
    hot, warm, cold = spied_tiers(settings)
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        await sm.batch_set_state({"orders:1": 1, "orders:2": 2}, ORDERS)
        await sm.set_state("fills:1", {"q": 1}, FILLS)
        break_warm(warm)
        assert await sm.set_state("intents:b", {"side": "sell"}, INTENTS) == 1  # journal version 1
        await sm.set_state("orders:1", 9, ORDERS)
        assert await sm.delete_state("fills:1") is False  # WARM is down: the journal cannot say it existed
        health = sm.health()
        assert health.warm_state is WarmState.JOURNALING and health.journal_records == 3
        assert await sm.get_state("orders:1") == 9  # from the journal, not the pre-outage HOT copy
        assert await sm.get_state("orders:2") == 2  # untouched: HOT still serves it
        assert await sm.get_state("intents:b") == {"side": "sell"}
        assert await sm.get_state("fills:1") is None
        assert not await sm.recover_warm()  # still down: nothing replayed
        warm.fail.clear()
        assert await sm.recover_warm()
        health = sm.health()
        assert health.warm_state is WarmState.UP and health.journal_records == 0
        assert health.last_warm_recovery is not None and health.last_warm_recovery.records_replayed == 3
        assert (await sm.verify_coherence()).ok
    async with await StateManager.create(settings) as fresh:  # WARM itself holds the outage's writes
        assert await fresh.get_state("orders:1") == 9
        assert await fresh.get_state("intents:b") == {"side": "sell"}
        assert await fresh.get_state("fills:1") is None
        assert not (settings.journal_dir / settings.bot_id / "warm.journal").exists()


async def test_replay_applies_each_record_once_when_run_twice(state_settings: StateSettings) -> None:
    """A replay that stopped half-way and a replay of a journal already applied (crash before the truncate)
    change nothing twice: the marker in WARM says how far this journal got."""
    settings = quiet(state_settings, journal_replay_batch=2)
    hot, warm, cold = spied_tiers(settings)
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        await sm.batch_set_state({f"orders:{i}": 0 for i in range(5)}, ORDERS)
        before = await warm.inner.get_versions([f"orders:{i}" for i in range(5)])
        break_warm(warm)
        await sm.batch_set_state({f"orders:{i}": 1 for i in range(5)}, ORDERS)
        journal = settings.journal_dir / settings.bot_id / "warm.journal"
        kept = journal.read_bytes()
        warm.fail.clear()
        upserts = 0

        async def second_batch_fails(*_: Any) -> None:
            nonlocal upserts
            upserts += 1
            if upserts == 2:
                raise down("warm (mid-replay)")

        warm.before["upsert_many"] = second_batch_fails
        assert not await sm.recover_warm()
        assert sm.health().journal_records == 5  # kept until every batch is in
        del warm.before["upsert_many"]
        assert await sm.recover_warm()
        assert sm.health().last_warm_recovery is not None
        assert sm.health().last_warm_recovery.records_skipped == 2
        after = await warm.inner.get_versions([f"orders:{i}" for i in range(5)])
    assert all(after[k][0] == before[k][0] + 1 for k in before)  # each journaled write applied exactly once
    journal.write_bytes(kept)  # as if the process died after the replay, before the truncate
    async with await StateManager.create(settings) as again:  # a writer replays a leftover journal at start
        assert again.health().warm_state is WarmState.UP
        assert again.health().last_warm_recovery is not None
        assert again.health().last_warm_recovery.records_replayed == 0
        assert await again.batch_get_state([f"orders:{i}" for i in range(5)]) == {
            f"orders:{i}": 1 for i in range(5)
        }
        assert await again._warm.get_versions(list(after)) == after


async def test_a_torn_journal_tail_is_cut_and_never_replayed(
    state_settings: StateSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """The machine died in the middle of a journal append: the next start replays every record before the torn
    frame and nothing of it (WARM keeps the value it had before the outage)."""
    settings = quiet(state_settings)
    hot, warm, cold = spied_tiers(settings)
    journal = settings.journal_dir / settings.bot_id / "warm.journal"
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        await sm.set_state("orders:torn", "before the outage", ORDERS)
        break_warm(warm)
        await sm.batch_set_state({"orders:1": 1, "orders:2": 2}, ORDERS)
        good = journal.stat().st_size
        await sm.set_state("orders:torn", "half written", ORDERS)
        assert sm.health().journal_records == 3
    full = journal.read_bytes()
    assert len(full) > good
    journal.write_bytes(full[: good + (len(full) - good) // 2])  # the last append did not finish
    with caplog.at_level(logging.WARNING):
        async with await StateManager.create(settings) as again:  # a writer replays a leftover journal
            recovery = again.health().last_warm_recovery
            assert recovery is not None and recovery.records_replayed == 2
            assert again.health().journal_records == 0
            assert await again.batch_get_state(["orders:1", "orders:2", "orders:torn"]) == {
                "orders:1": 1,
                "orders:2": 2,
                "orders:torn": "before the outage",
            }
            assert (await again.verify_coherence()).ok
    assert "torn tail of" in caplog.text and "cut after 2 good records" in caplog.text, caplog.text
    assert not journal.exists()


async def test_a_newer_holder_means_no_replay_and_no_more_writes(state_settings: StateSettings) -> None:
    settings = quiet(state_settings)
    hot, warm, cold = spied_tiers(settings)
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        ours = await sm.acquire_lease(LeaseClaim("a:1:x", "a", 1, "primary"), 30.0)
        await sm.take_ownership(ours.record.epoch)
        await sm.set_state("orders:1", 1, ORDERS)
        break_warm(warm)
        await sm.set_state("orders:1", 2, ORDERS)
        await warm.inner.release_lease("a:1:x", ours.record.epoch)  # what an expiry would do
        theirs = await warm.inner.acquire_lease(LeaseClaim("b:2:y", "b", 2, "standby"), 30.0)
        assert theirs.acquired and theirs.record.epoch == ours.record.epoch + 1
        warm.fail.clear()
        assert not await sm.recover_warm()
        with pytest.raises(FencedError):
            await sm.set_state("orders:1", 3, ORDERS)
        journal = settings.journal_dir / settings.bot_id / "warm.journal"
        assert journal.exists() and sm.health().journal_records == 1  # kept for the operator
        assert await warm.inner.get_versions(["orders:1"]) == {"orders:1": (1, ANY_CHECKSUM)}


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY_CHECKSUM: Any = _Any()


async def test_a_leftover_journal_of_an_older_holder_is_set_aside(state_settings: StateSettings) -> None:
    settings = quiet(state_settings)
    hot, warm, cold = spied_tiers(settings)
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
        first = await sm.acquire_lease(LeaseClaim("a:1:x", "a", 1, "primary"), 30.0)
        await sm.take_ownership(first.record.epoch)
        break_warm(warm)
        await sm.set_state("orders:1", "journaled by epoch 1", ORDERS)
    reader = replace(settings, read_only=True)
    async with await StateManager.create(reader) as sm:
        # epoch 2 held the lease (and wrote) while the first process was gone; this process takes epoch 3
        await sm.release_lease("a:1:x", first.record.epoch)
        second = await sm.acquire_lease(LeaseClaim("b:2:y", "b", 2, "primary"), 30.0)
        await sm.release_lease("b:2:y", second.record.epoch)
        assert (
            await sm.get_state("orders:1") == "journaled by epoch 1"
        )  # a reader sees the journal, cuts nothing
        grant = await sm.acquire_lease(LeaseClaim("c:3:z", "c", 3, "primary"), 30.0)
        assert grant.acquired and grant.record.epoch == 3
        await sm.take_ownership(3)
        assert sm.health().warm_state is WarmState.UP
        assert await sm.get_state("orders:1") is None  # never replayed over the newer holder's state
    aside = list((settings.journal_dir / settings.bot_id).glob("warm.journal.superseded-epoch1-*"))
    assert len(aside) == 1


async def test_a_database_restored_without_our_data_gets_the_checkpoint_then_the_journal(
    real_state_settings: StateSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = quiet(real_state_settings)
    hot, warm, cold = spied_tiers(settings)
    claim = LeaseClaim("a:1:x", "a", 1, "primary")
    async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:

        async def gate(kind: Literal["renew", "reacquire"]) -> int | None:
            grant = await sm.acquire_lease(claim, 30.0)
            if not grant.acquired:
                return None
            await sm.take_ownership(grant.record.epoch)
            return grant.record.epoch

        sm.set_lease_gate(gate)
        first = await sm.acquire_lease(claim, 30.0)
        await sm.take_ownership(first.record.epoch)
        await sm.set_state("orders:old", "in the checkpoint", ORDERS)
        async with await StateManager.create(settings) as other:  # the same store through unwrapped tiers
            await other.checkpoints.create_checkpoint("test")
        await sm.set_state("orders:gap", "after the checkpoint, before the outage", ORDERS)
        break_warm(warm)
        await sm.set_state("intents:new", "journaled", INTENTS)
        conn = await asyncpg.connect(settings.database_url)
        try:  # the database comes back from a backup older than all of it
            for table in ("state_records", "state_leases", "state_checkpoints"):
                await conn.execute(f"DELETE FROM {table} WHERE bot_id = $1", settings.bot_id)
        finally:
            await conn.close()
        warm.fail.clear()
        with caplog.at_level(logging.WARNING):
            assert await sm.recover_warm()
        recovery = sm.health().last_warm_recovery
        assert recovery is not None and recovery.database_lost and recovery.checkpoint_id is not None
        assert recovery.data_loss_estimate_seconds is not None and recovery.data_loss_estimate_seconds > 0
        assert "data_loss_estimate=" in caplog.text and "Restored from checkpoint" in caplog.text
        assert await sm.get_state("orders:old") == "in the checkpoint"
        assert await sm.get_state("intents:new") == "journaled"
        assert await sm.get_state("orders:gap") is None  # in neither: the window the estimate names
        assert (await sm.verify_coherence()).ok
    shutil.rmtree(settings.journal_dir, ignore_errors=True)


@pytest.mark.parametrize("backup", ["no lease row", "an old lease row"])
async def test_a_lease_taken_again_after_a_lost_database_fences_a_zombie_of_a_higher_epoch(
    real_state_settings: StateSettings, backup: str
) -> None:
    """The database comes back from a backup (no lease row, or the row of epoch 2); the journal's recovery takes
    the lease again ABOVE every epoch the bot knew (6 here), not at 1 or 3: the zombie writer still holding
    epoch 5 (a paused process the bot took over from) is fenced."""
    settings = quiet(real_state_settings)
    async with await StateManager.create(settings) as zombie:
        zombie_claim = LeaseClaim("z:9:old", "z", 9, "primary")
        for _ in range(5):  # epochs 1..5 went to the zombie's process
            grant = await zombie.acquire_lease(zombie_claim, 30.0)
            await zombie.release_lease(zombie_claim.holder, grant.record.epoch)
        assert grant.record.epoch == 5
        await zombie.take_ownership(5)  # it still writes with epoch 5, as a paused process would on waking
        hot, warm, cold = spied_tiers(settings)
        async with await StateManager.create(settings, tiers=(hot, warm, cold)) as sm:
            keeper = LeaseKeeper(sm, LeaseSettings(ttl_seconds=30.0), new_claim(), bot_id=settings.bot_id)
            assert (await keeper.acquire()).epoch == 6
            await sm.take_ownership(6)
            sm.set_lease_gate(warm_lease_gate(keeper, sm))
            break_warm(warm)
            await sm.set_state("intents:new", "journaled under epoch 6", INTENTS)
            conn = await asyncpg.connect(settings.database_url)
            try:
                await conn.execute("DELETE FROM state_records WHERE bot_id = $1", settings.bot_id)
                if backup == "no lease row":
                    await conn.execute("DELETE FROM state_leases WHERE bot_id = $1", settings.bot_id)
                else:
                    await conn.execute(
                        "UPDATE state_leases SET epoch = 2, expires_at = now() - interval '1 hour' "
                        "WHERE bot_id = $1",
                        settings.bot_id,
                    )
            finally:
                await conn.close()
            warm.fail.clear()
            assert await sm.recover_warm()
            assert keeper.epoch == 7 and sm.epoch == 7
            assert (await sm.read_lease()).epoch == 7  # type: ignore[union-attr]
            assert await sm.get_state("intents:new") == "journaled under epoch 6"
            with pytest.raises(FencedError):
                await zombie.set_state("orders:zombie", "must not land", ORDERS)
            await sm.set_state("orders:ours", "lands", ORDERS)
            assert await sm.get_state("orders:zombie") is None
