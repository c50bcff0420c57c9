"""The COLD spool (``SpoolingColdTier``) and the manager's COLD degraded mode over a hand-written failing
COLD tier: edge cases that a real S3 cannot be made to produce on demand."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from bot_v2.errors import StateIntegrityError, StateUnavailableError
from bot_v2.state import ColdState, StateCategory, StateManager, StateSettings, StateWrite
from bot_v2.state.keys import KeySpace
from bot_v2.state.manager import S3_AVAILABLE_KEY
from bot_v2.state.tiers.cold import ObjectInfo, ObjectKind, Upload
from bot_v2.state.tiers.cold_recent import RecentSegments
from bot_v2.state.tiers.memory_hot import MemoryHotTier
from bot_v2.state.tiers.spool import DRAIN_CONCURRENCY, RECENT_MARGIN_SECONDS, SpoolingColdTier
from bot_v2.state.tiers.sqlite_warm import SqliteWarmTier
from tests.helpers import eventually_async

ARCHIVE = StateCategory.ARCHIVE


class FlakyColdTier:
    """An in-memory COLD tier that can be switched off (``down``), fail after N more puts
    (``puts_left``), or lie about what it stored (``corrupt_heads``). With ``answer_puts`` a put answers
    with the SHA-256 of what it stored, as S3 does (``corrupt_answers``: of other bytes), after
    ``put_delay`` seconds; ``max_in_flight`` counts the puts that overlapped."""

    name = "flaky"

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.down = False
        self.puts_left: int | None = None
        self.corrupt_heads = False
        self.answer_puts = False
        self.corrupt_answers = False
        self.put_delay = 0.0
        self.hold_answers: asyncio.Event | None = None  # upload_file answers only once this is set
        self.in_flight = self.max_in_flight = 0
        self.calls: list[str] = []

    def __repr__(self) -> str:
        return "FlakyColdTier()"

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise StateUnavailableError(f"flaky cold down ({call})")

    async def connect(self) -> None:
        self._check("connect")

    async def probe(self) -> None:
        self._check("probe")

    async def _put(self, kind: str, name: str, data: bytes) -> str | None:
        self._check(f"put {name}")
        if self.puts_left is not None:
            if self.puts_left <= 0:
                self.down = True
                raise StateUnavailableError("flaky cold died mid-sync")
            self.puts_left -= 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.put_delay)
        finally:
            self.in_flight -= 1
        self.objects[(kind, name)] = data
        if not self.answer_puts:
            return None
        return hashlib.sha256(data + (b"!" if self.corrupt_answers else b"")).hexdigest()

    async def _get(self, kind: str, name: str) -> bytes:
        self._check(f"get {name}")
        try:
            return self.objects[(kind, name)]
        except KeyError:
            raise StateIntegrityError(f"{name} missing") from None

    async def _head(self, kind: str, name: str) -> ObjectInfo | None:
        self._check(f"head {name}")
        data = self.objects.get((kind, name))
        if data is None:
            return None
        if self.corrupt_heads:
            return ObjectInfo(len(data), hashlib.sha256(data + b"!").hexdigest())
        return ObjectInfo(len(data), hashlib.sha256(data).hexdigest())

    async def put_segment(self, name: str, data: bytes) -> str | None:
        return await self._put("segment", name, data)

    async def get_segment(self, name: str) -> bytes:
        return await self._get("segment", name)

    async def delete_segment(self, name: str) -> None:
        self._check(f"delete {name}")
        self.objects.pop(("segment", name), None)

    async def head_segment(self, name: str) -> ObjectInfo | None:
        return await self._head("segment", name)

    async def put_checkpoint(self, name: str, data: bytes) -> str | None:
        return await self._put("checkpoint", name, data)

    async def get_checkpoint(self, name: str) -> bytes:
        return await self._get("checkpoint", name)

    async def upload_file(
        self, kind: ObjectKind, name: str, path: Path, then: Callable[[str], None]
    ) -> Upload:
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        stored = await self._put(kind, name, data)
        if stored == sha256:
            then(sha256)
        if self.hold_answers is not None:  # the answer is on its way back to the event loop
            await self.hold_answers.wait()
        return Upload(len(data), sha256, stored, stored == sha256)

    async def delete_checkpoint(self, name: str) -> None:
        self._check(f"delete {name}")
        self.objects.pop(("checkpoint", name), None)

    async def head_checkpoint(self, name: str) -> ObjectInfo | None:
        return await self._head("checkpoint", name)

    async def list_checkpoints(self) -> list[str]:
        self._check("list")
        return sorted(name for kind, name in self.objects if kind == "checkpoint")

    async def stats(self) -> tuple[int, int]:
        self._check("stats")
        segments = [v for (kind, _), v in self.objects.items() if kind == "segment"]
        return len(segments), sum(map(len, segments))

    async def close(self) -> None:
        return None


def spool_files(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.iterdir())


async def test_down_writes_spool_and_reads_come_from_the_spool(tmp_path: Path) -> None:
    inner = FlakyColdTier()
    failures: list[StateUnavailableError] = []
    tier = SpoolingColdTier(inner, tmp_path / "spool", failures.append)
    await tier.connect()
    await tier.put_segment("a.seg.gz", b"up")
    assert inner.objects == {("segment", "a.seg.gz"): b"up"} and tier.spooled_objects == 0
    assert await tier.stats() == (1, 2)

    inner.down = True
    await tier.put_segment("b.seg.gz", b"bbb")  # fails in the inner tier: spooled, succeeds
    assert tier.spooling and len(failures) == 1
    inner.calls.clear()
    await tier.put_checkpoint("c.ckpt", b"cccc")  # straight to the spool: the dead tier is not asked
    await tier.put_segment("d.seg.gz", b"dd")
    assert inner.calls == []
    assert (tier.spooled_objects, tier.spooled_bytes) == (3, 9)
    assert await tier.get_segment("b.seg.gz") == b"bbb"
    assert await tier.get_checkpoint("c.ckpt") == b"cccc"
    assert inner.calls == []
    assert await tier.stats() == (1 + 2, 2 + 3 + 2)  # last known inner figures + spooled segments
    with pytest.raises(StateUnavailableError):
        await tier.list_checkpoints()
    names = spool_files(tmp_path / "spool")
    assert [n.split(".", 2)[1:] for n in names] == [
        ["segment", "b.seg.gz"],
        ["checkpoint", "c.ckpt"],
        ["segment", "d.seg.gz"],
    ]  # sequence-prefixed: oldest first

    inner.down = False
    uploaded: list[str] = []
    assert await tier.sync(lambda entry: uploaded.append(entry.name)) == (3, 9)
    assert sorted(uploaded) == ["b.seg.gz", "c.ckpt", "d.seg.gz"]  # started oldest first, several in flight
    assert not tier.spooling and spool_files(tmp_path / "spool") == []
    assert inner.objects[("segment", "b.seg.gz")] == b"bbb"
    assert inner.objects[("checkpoint", "c.ckpt")] == b"cccc"
    assert await tier.list_checkpoints() == ["c.ckpt"]


async def test_failure_mid_sync_keeps_the_rest_for_the_next_sync(tmp_path: Path) -> None:
    inner = FlakyColdTier()
    tier = SpoolingColdTier(inner, tmp_path / "spool")
    await tier.connect()
    inner.down = True
    for i in range(5):
        await tier.put_segment(f"{i}.seg.gz", bytes([i]) * (i + 1))
    # puts answer with the SHA-256 as S3's do, so a put that succeeded is verified by its own answer (with a
    # HeadObject after it, the store dying meanwhile would keep that object in the spool as well)
    inner.down, inner.puts_left, inner.answer_puts = False, 2, True
    with pytest.raises(StateUnavailableError, match="mid-sync"):
        await tier.sync()
    assert set(inner.objects) == {("segment", "0.seg.gz"), ("segment", "1.seg.gz")}  # oldest first
    assert [e.name for e in tier.spooled()] == ["2.seg.gz", "3.seg.gz", "4.seg.gz"]
    assert len(spool_files(tmp_path / "spool")) == 3 and tier.spooling
    assert await tier.get_segment("3.seg.gz") == b"\x03" * 4  # still served from the spool
    inner.down, inner.puts_left = False, None
    assert await tier.sync() == (3, 3 + 4 + 5)
    assert len(inner.objects) == 5 and spool_files(tmp_path / "spool") == []


async def test_an_upload_failing_verification_stays_in_the_spool(tmp_path: Path) -> None:
    inner = FlakyColdTier()
    failures: list[StateUnavailableError] = []
    tier = SpoolingColdTier(inner, tmp_path / "spool", failures.append)
    await tier.connect()
    inner.down = True
    await tier.put_checkpoint("x.ckpt", b"payload")
    inner.down, inner.corrupt_heads = False, True
    with pytest.raises(StateUnavailableError, match="failed verification"):
        await tier.sync()
    assert tier.spooled_objects == 1 and tier.spooling and len(failures) == 2
    inner.corrupt_heads = False
    assert await tier.sync() == (1, 7)


async def test_sync_starts_puts_oldest_first_keeps_a_bounded_number_in_flight_and_trusts_their_answer(
    tmp_path: Path,
) -> None:
    inner = FlakyColdTier()
    tier = SpoolingColdTier(inner, tmp_path / "spool")
    await tier.connect()
    inner.down = True
    names = [f"{i:02d}.seg.gz" for i in range(30)]
    for name in names:
        await tier.put_segment(name, name.encode())
    inner.down, inner.answer_puts, inner.put_delay = False, True, 0.005
    inner.calls.clear()
    assert await tier.sync() == (30, sum(map(len, names)))
    assert inner.calls == [f"put {name}" for name in names]  # started in spool order; no HeadObject
    assert inner.max_in_flight == DRAIN_CONCURRENCY
    assert spool_files(tmp_path / "spool") == [] and not tier.spooling


async def test_an_object_whose_put_answer_differs_stays_in_the_spool(tmp_path: Path) -> None:
    inner = FlakyColdTier()
    tier = SpoolingColdTier(inner, tmp_path / "spool")
    await tier.connect()
    inner.down = True
    for i in range(3):
        await tier.put_segment(f"{i}.seg.gz", b"x" * (i + 1))
    inner.down, inner.answer_puts, inner.corrupt_answers = False, True, True
    with pytest.raises(StateUnavailableError, match="failed verification"):
        await tier.sync()
    assert tier.spooled_objects == 3 and len(spool_files(tmp_path / "spool")) == 3 and tier.spooling
    inner.corrupt_answers = False
    assert await tier.sync() == (3, 1 + 2 + 3)


async def test_recent_segment_copies_serve_reads_while_down_and_go_once_a_later_checkpoint_holds_them(
    tmp_path: Path,
) -> None:
    inner = FlakyColdTier()
    recent = tmp_path / "recent"
    tier = SpoolingColdTier(inner, tmp_path / "spool", recent_dir=recent)
    await tier.connect()
    await tier.put_segment("a.seg.gz", b"aaa")  # the store takes it; a local copy is kept
    await tier.put_checkpoint("c.ckpt", b"cc")  # checkpoint objects are in WARM too: no copy
    assert [p.name.split(".", 1)[1] for p in recent.iterdir()] == ["a.seg.gz"]
    inner.down, tier.down = True, True  # the owner marks the store down (probing it on a timer)
    inner.calls.clear()
    assert await tier.get_segment("a.seg.gz") == b"aaa"
    await tier.put_segment("b.seg.gz", b"bbbb")  # spooled
    (copy,) = recent.iterdir()
    copy.write_bytes(b"torn")  # a copy torn by a crash is dropped, and the dead store is not asked
    with pytest.raises(StateUnavailableError, match="not held locally"):
        await tier.get_segment("a.seg.gz")
    assert inner.calls == ["put b.seg.gz"] and list(recent.iterdir()) == []

    inner.down = False
    assert await tier.sync() == (1, 4)  # a synced segment moves from the spool to the copies
    assert spool_files(tmp_path / "spool") == [] and len(list(recent.iterdir())) == 1
    inner.calls.clear()
    assert await tier.get_segment("b.seg.gz") == b"bbbb" and inner.calls == []
    await tier.checkpointed(time.time())  # holds b, but a batch may commit after its snapshot: kept
    assert len(list(recent.iterdir())) == 1
    await tier.checkpointed(time.time() + RECENT_MARGIN_SECONDS + 1)  # the checkpoint before held it
    assert len(list(recent.iterdir())) == 1  # the previous snapshot time (less the margin) is the bound
    await tier.checkpointed(time.time() + 2 * RECENT_MARGIN_SECONDS + 2)
    assert list(recent.iterdir()) == []
    assert await tier.get_segment("b.seg.gz") == b"bbbb"  # from the store again


@pytest.mark.parametrize("when", ["before the move", "after the move"])
async def test_objects_re_spooled_or_deleted_while_their_upload_is_in_flight(
    tmp_path: Path, when: str
) -> None:
    """The upload moves a verified file out of the spool in the store's worker thread, before the event loop
    sees the answer: a newer copy spooled meanwhile (before or after that move) wins and is synced too, a
    segment deleted meanwhile keeps no local copy, and reads served meanwhile never miss an object."""
    inner = FlakyColdTier()
    recent = tmp_path / "recent"
    tier = SpoolingColdTier(inner, tmp_path / "spool", recent_dir=recent)
    await tier.connect()
    inner.down = True
    await tier.put_segment("a.seg.gz", b"old")
    await tier.put_segment("b.seg.gz", b"bbb")
    inner.down, inner.answer_puts, inner.put_delay = False, True, 0.05
    inner.hold_answers = asyncio.Event()
    sync = asyncio.create_task(tier.sync())

    async def both_in_flight() -> bool:
        return inner.in_flight == 2

    async def both_moved() -> bool:  # the store took them and their files left the spool
        return len(list(recent.iterdir())) == 2

    await eventually_async(
        both_in_flight if when == "before the move" else both_moved, timeout=5, interval=0.001
    )
    await tier.put_segment("a.seg.gz", b"new")  # still spooling while the sync runs: spooled again
    await tier.delete_segment("b.seg.gz")  # pruned while its upload is in flight
    assert await tier.get_segment("a.seg.gz") == b"new"
    inner.hold_answers.set()
    await sync
    assert inner.objects[("segment", "a.seg.gz")] == b"new" and not tier.spooling
    assert spool_files(tmp_path / "spool") == []
    assert [p.name.split(".", 1)[1] for p in recent.iterdir()] == ["a.seg.gz"]  # b keeps no copy
    inner.calls.clear()
    assert await tier.get_segment("a.seg.gz") == b"new" and inner.calls == []  # the copy of the newer bytes


async def test_recent_copies_older_than_a_day_go_even_without_checkpoints(tmp_path: Path) -> None:
    recent = RecentSegments(tmp_path / "recent")
    await recent.load()
    await recent.add("old.seg.gz", b"old")
    (old,) = (tmp_path / "recent").iterdir()
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    recent = RecentSegments(tmp_path / "recent")  # the next process: written_at is the file's mtime
    await recent.load()
    assert await recent.get("old.seg.gz") == b"old"
    for i in range(256):  # the age check runs every 256 copies kept
        await recent.add(f"{i}.seg.gz", b"new")
    assert await recent.get("old.seg.gz") is None and len(recent) == 256 and not old.exists()


async def test_torn_temp_files_are_removed_and_a_new_process_finds_the_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    inner = FlakyColdTier()
    inner.down = True
    first = SpoolingColdTier(inner, spool)
    with pytest.raises(StateUnavailableError):
        await first.connect()
    await first.put_segment("old.seg.gz", b"1")
    await first.put_checkpoint("new.ckpt", b"22")
    (spool / ".00000000000000000001.segment.torn.seg.gz.tmp").write_bytes(b"half")  # crash mid-write
    (spool / "README").write_text("not ours")

    second = SpoolingColdTier(inner, spool, drain_concurrency=1)  # the next process; one put at a time
    assert await second.load_spool() == 2
    assert second.torn_files_removed == 1 and second.spooling
    assert spool_files(spool)[-1] == "README"  # unknown files are left alone
    assert not any(n.endswith(".tmp") for n in spool_files(spool))
    assert [e.name for e in second.spooled()] == ["old.seg.gz", "new.ckpt"]
    assert await second.get_checkpoint("new.ckpt") == b"22"
    await second.put_segment("later.seg.gz", b"333")  # continues the sequence after the old objects
    inner.down = False
    uploaded: list[str] = []
    await second.sync(lambda entry: uploaded.append(entry.name))
    assert uploaded == ["old.seg.gz", "new.ckpt", "later.seg.gz"]


async def test_deleting_a_spooled_checkpoint_never_asks_the_dead_tier(tmp_path: Path) -> None:
    inner = FlakyColdTier()
    tier = SpoolingColdTier(inner, tmp_path / "spool")
    await tier.connect()
    inner.down = True
    await tier.put_checkpoint("p.ckpt", b"p")
    inner.calls.clear()
    await tier.delete_checkpoint("p.ckpt")
    assert inner.calls == [] and tier.spooled_objects == 0


# --- the manager over the flaky tier -------------------------------------------------------------------


def flaky_settings(tmp_path: Path, **kw: object) -> StateSettings:
    base = StateSettings(
        bot_id="spool-bot",
        data_dir=tmp_path,
        cold_probe_interval_seconds=0.01,
        cold_probe_max_interval_seconds=0.05,
        cold_probe_timeout_seconds=1.0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


async def create(settings: StateSettings, cold: FlakyColdTier) -> StateManager:
    keyspace = KeySpace(settings.bot_id)
    warm = SqliteWarmTier(settings.sqlite_path, keyspace)
    return await StateManager.create(settings, tiers=(MemoryHotTier(), warm, cold))


async def test_manager_degrades_publishes_the_flag_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cold = FlakyColdTier()
    settings = flaky_settings(tmp_path)
    async with await create(settings, cold) as sm:
        assert await sm.get_state(S3_AVAILABLE_KEY) is None  # never down: no record
        cold.down = True
        caplog.set_level("WARNING", logger="bot_v2.state.manager")
        for i in range(4):
            await sm.batch_write([StateWrite(f"archive:{i}", {"i": i}, ARCHIVE)])
            await sm.recover_cold()  # failed probes: backoff, no more warnings
        health = sm.health()
        assert health.cold_state is ColdState.DEGRADED and health.degraded_cold
        assert health.cold_spooled_objects == 4 and health.next_cold_probe_in_seconds is not None
        assert "flaky cold down" in (health.last_cold_error or "")
        assert await sm.get_state(S3_AVAILABLE_KEY) is False
        assert [await sm.get_state(f"archive:{i}") for i in range(4)] == [{"i": i} for i in range(4)]
        stats = await sm.get_storage_stats()
        assert stats.degraded_cold and stats.cold_spooled_objects == 4 and stats.cold_objects == 4
        warnings = [r.getMessage() for r in caplog.records if "COLD tier" in r.getMessage()]
        assert len(warnings) == 1, warnings

        cold.down = False

        async def up() -> bool:
            await sm.get_state("archive:0")
            return sm.health().cold_state is ColdState.UP

        await eventually_async(up, timeout=5, interval=0.01)
        recovery = sm.health().last_cold_recovery
        assert recovery is not None and recovery.objects_synced == 4 and recovery.bytes_synced > 0
        assert recovery.outage_seconds > 0 and sm.health().cold_recoveries == 1
        assert await sm.get_state(S3_AVAILABLE_KEY) is True
        assert len([k for k in cold.objects if k[0] == "segment"]) == 4
        assert any("COLD tier recovered" in r.getMessage() for r in caplog.records)


async def test_start_with_cold_down(tmp_path: Path) -> None:
    cold = FlakyColdTier()
    cold.down = True
    settings = flaky_settings(tmp_path)
    with pytest.raises(StateUnavailableError, match="flaky"):  # empty spool + cold required: hard error
        await create(settings, cold)
    async with await create(replace(settings, cold_required_at_start=False), cold) as sm:
        assert sm.health().cold_state is ColdState.DEGRADED
        assert await sm.get_state(S3_AVAILABLE_KEY) is False
        await sm.set_state("archive:x", "x", ARCHIVE)
    # the spool is not empty now: even with cold required the next start is degraded, not an error
    async with await create(settings, cold) as sm:
        assert sm.health().cold_spooled_objects == 1 and sm.degraded_cold
        assert await sm.get_state("archive:x") == "x"
        cold.down = False
        assert await sm.recover_cold() is True
        assert await sm.get_state(S3_AVAILABLE_KEY) is True
