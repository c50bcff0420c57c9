"""COLD (S3) down never stops the bot (DESIGN.md "Recovery": S3 down): writes spool locally, the spool is
synced and verified when S3 answers again, also by the next process if this one dies first.

Each test stops a private moto server (the session one is shared by every other test); moto keeps objects
in this process, so a stopped and restarted server still has them, like a real S3 after an outage.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import boto3
import pytest

from bot_v2.errors import ColdUnavailableError, StateUnavailableError
from bot_v2.state import ColdState, StateCategory, StateManager, StateWrite
from bot_v2.state.keys import KeySpace
from bot_v2.state.manager import S3_AVAILABLE_KEY
from bot_v2.state.settings import StateSettings
from bot_v2.state.tiers.s3_cold import S3ColdTier
from bot_v2.state.tiers.spool import DRAIN_CONCURRENCY, SpoolingColdTier
from tests.fixtures.services import (
    S3_TEST_BUCKET,
    S3_TEST_CREDENTIALS,
    MotoServer,
    ServiceError,
    unavailable,
)
from tests.helpers import eventually, eventually_async

ORDERS, ARCHIVE, CHECKPOINTS = StateCategory.ORDERS, StateCategory.ARCHIVE, StateCategory.CHECKPOINTS


@pytest.fixture
def private_s3() -> Iterator[MotoServer]:
    """A moto server of this test alone (stopping it disturbs nobody)."""
    try:
        server = MotoServer()
        server.start()
        server.create_bucket(S3_TEST_BUCKET)
    except (ServiceError, ImportError, OSError) as exc:
        unavailable("moto s3 server", exc)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cold_settings(real_state_settings: StateSettings, private_s3: MotoServer) -> StateSettings:
    return replace(
        real_state_settings,
        s3_endpoint_url=private_s3.url,
        s3_bucket=S3_TEST_BUCKET,
        aws_access_key_id=S3_TEST_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=S3_TEST_CREDENTIALS["aws_secret_access_key"],
        connect_timeout_seconds=1.0,
        cold_probe_interval_seconds=0.02,
        cold_probe_max_interval_seconds=0.2,
        cold_probe_timeout_seconds=3.0,
    )


def spool_of(settings: StateSettings) -> Path:
    return settings.spool_dir / settings.bot_id


def recent_of(settings: StateSettings) -> Path:
    return settings.cold_recent_dir / settings.bot_id


def spooled(settings: StateSettings) -> dict[str, bytes]:
    """Spool contents: '<segments|checkpoints>/<name>' -> bytes (the S3 key suffix it will get)."""
    out: dict[str, bytes] = {}
    for path in spool_of(settings).iterdir():
        _, kind, name = path.name.split(".", 2)
        out[f"{kind}s/{name}"] = path.read_bytes()
    return out


def bucket_object(settings: StateSettings, suffix: str) -> bytes:
    client = boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1", **S3_TEST_CREDENTIALS
    )
    try:
        body = client.get_object(Bucket=S3_TEST_BUCKET, Key=f"state/{settings.bot_id}/{suffix}")["Body"]
        return bytes(body.read())
    finally:
        client.close()


async def until_cold_up(sm: StateManager) -> float:
    """Keep operating (each operation may start a probe) until COLD is up; return the seconds it took."""
    started = time.perf_counter()

    async def up() -> bool:
        await sm.get_state("orders:0")
        return sm.health().cold_state is ColdState.UP

    await eventually_async(up, timeout=10, interval=0.02)
    return time.perf_counter() - started


async def test_s3_down_spools_cold_writes_then_syncs_them_verified(
    cold_settings: StateSettings, private_s3: MotoServer
) -> None:
    settings = cold_settings
    async with await StateManager.create(settings) as sm:
        await sm.batch_set_state({f"orders:{i}": i for i in range(10)}, ORDERS)
        await sm.batch_set_state({f"archive:{i}": {"i": i} for i in range(10)}, ARCHIVE)
        before = await sm.checkpoints.create_checkpoint("before")

        private_s3.stop()
        await sm.batch_write(
            [StateWrite(f"archive:{i}", {"i": i, "outage": True}, ARCHIVE) for i in range(5, 25)]
            + [StateWrite("orders:0", "during", ORDERS)]
        )
        await sm.batch_set_state({f"checkpoints:note-{i}": i for i in range(3)}, CHECKPOINTS)
        during = await sm.checkpoints.create_checkpoint("during the outage")
        await sm.set_state("archive:30", "late", ARCHIVE)  # straight to the spool

        health = sm.health()
        assert health.cold_state is ColdState.DEGRADED and health.cold_down_since is not None
        assert health.cold_spooled_objects == 4  # 3 segments + 1 checkpoint
        assert await sm.get_state(S3_AVAILABLE_KEY) is False
        assert await sm.get_state("archive:7") == {"i": 7, "outage": True}  # served from the spool
        assert await sm.get_state("checkpoints:note-2") == 2
        assert await sm.get_state("archive:30") == "late"
        # archive:2's segment went to S3 before the outage: a local copy of it serves the read
        assert await sm.get_state("archive:2") == {"i": 2}
        for copy in recent_of(settings).iterdir():  # without the copy, only S3 holds it: refused at once
            copy.unlink()
        with pytest.raises(ColdUnavailableError, match="not held locally"):
            await sm.get_state("archive:3")
        assert not sm.health().degraded_warm  # a body S3 cannot serve is no WARM outage: nothing journaled
        stats = await sm.get_storage_stats()
        assert stats.degraded_cold and stats.cold_spooled_objects == 4
        waiting = spooled(settings)
        assert len(waiting) == 4 and sum(map(len, waiting.values())) == health.cold_spooled_bytes
        verified = await sm.checkpoints.restore_checkpoint(during.checkpoint_id, verify_only=True)
        assert verified.keys_in_checkpoint == 10 + 25 + 1  # orders, archive:0..24, system:s3_available

        private_s3.start()
        await until_cold_up(sm)
        health = sm.health()
        recovery = health.last_cold_recovery
        assert recovery is not None and health.cold_recoveries == 1
        assert recovery.objects_synced == 4 and recovery.bytes_synced == sum(map(len, waiting.values()))
        assert health.cold_spooled_objects == 0 and list(spool_of(settings).iterdir()) == []
        for suffix, data in waiting.items():
            assert bucket_object(settings, suffix) == data  # identical bytes in the bucket
        assert await sm.get_state(S3_AVAILABLE_KEY) is True
        assert (await sm.verify_coherence()).ok
        stats = await sm.get_storage_stats()
        assert not stats.degraded_cold and stats.cold_objects == 1 + 3  # segments in S3, nothing spooled

        await sm.set_state("orders:1", "after", ORDERS)
        conn = await asyncpg.connect(settings.database_url)
        try:  # WARM loses its copy: the restore must come from S3
            await conn.execute("DELETE FROM state_checkpoints WHERE bot_id = $1", sm.bot_id)
        finally:
            await conn.close()
        report = await sm.checkpoints.restore_checkpoint(during.checkpoint_id)
        assert report.source == "cold" and report.checkpoint_id == during.checkpoint_id
        assert await sm.get_state("orders:0") == "during" and await sm.get_state("orders:1") == 1
        assert await sm.get_state("archive:9") == {"i": 9, "outage": True}
        assert await sm.get_state("archive:30") is None  # written after the checkpoint
        assert await sm.get_state(S3_AVAILABLE_KEY) is True  # the checkpoint's false is not restored
        assert before.checkpoint_id < during.checkpoint_id
        await sm.checkpoints.prune(0)


async def test_new_process_syncs_the_spool_left_by_one_that_died_while_s3_was_down(
    cold_settings: StateSettings, private_s3: MotoServer
) -> None:
    settings = cold_settings
    first = await StateManager.create(settings)
    private_s3.stop()
    await first.batch_set_state({f"archive:{i}": i for i in range(50)}, ARCHIVE)
    await first.batch_set_state({f"archive:{i}": -i for i in range(50, 60)}, ARCHIVE)
    info = await first.checkpoints.create_checkpoint("outage")
    waiting = spooled(settings)
    assert len(waiting) == 3
    await first.close()  # no sync: S3 is down (a kill -9 would leave the same spool)
    (spool_of(settings) / ".99999999999999999999.segment.x.seg.gz.tmp").write_bytes(b"torn")

    async with await StateManager.create(settings) as second:  # S3 still down: spool kept, not an error
        assert second.degraded_cold and second.health().cold_spooled_objects == 3
        assert await second.get_state("archive:55") == -55
        assert await second.get_state(S3_AVAILABLE_KEY) is False
        await second.set_state("archive:60", 60, ARCHIVE)
    waiting = spooled(settings)
    assert len(waiting) == 4  # the torn temp file is gone

    private_s3.start()
    started = time.perf_counter()
    async with await StateManager.create(settings) as third:  # syncs the spool before returning
        create_seconds = time.perf_counter() - started
        health = third.health()
        assert health.cold_state is ColdState.UP and health.cold_recoveries == 1
        recovery = health.last_cold_recovery
        assert recovery is not None and recovery.objects_synced == 4
        assert list(spool_of(settings).iterdir()) == []
        for suffix, data in waiting.items():
            assert bucket_object(settings, suffix) == data
        assert await third.get_state(S3_AVAILABLE_KEY) is True
        assert await third.get_state("archive:3") == 3 and await third.get_state("archive:60") == 60
        verified = await third.checkpoints.restore_checkpoint(info.checkpoint_id, verify_only=True)
        assert verified.keys_in_checkpoint == 60 + 1
        assert create_seconds < 5
        await third.checkpoints.prune(0)


async def test_checkpoints_while_s3_is_down_cover_records_written_just_before_the_outage(
    cold_settings: StateSettings, private_s3: MotoServer
) -> None:
    """archive:late reached S3 after the last checkpoint and before the outage: no checkpoint holds it and S3
    cannot be asked, yet checkpoints keep succeeding (its segment's local copy), restore while S3 is down,
    and the spool drains on the probe timer alone once S3 answers."""
    settings = cold_settings
    async with await StateManager.create(settings) as sm:
        await sm.batch_set_state({f"archive:{i}": i for i in range(5)}, ARCHIVE)
        await sm.checkpoints.create_checkpoint("before")
        await sm.set_state("archive:late", "after the checkpoint", ARCHIVE)

        private_s3.stop()
        down = [await sm.checkpoints.create_checkpoint(f"down {i}") for i in range(3)]
        assert sm.degraded_cold and sm.health().cold_spooled_objects == 3  # the checkpoint objects
        await sm.set_state("archive:late", "changed while down", ARCHIVE)  # spooled segment
        await sm.set_state("orders:1", "while down", ORDERS)
        report = await sm.checkpoints.restore_checkpoint(down[0].checkpoint_id)  # while S3 is down
        assert report.keys_in_checkpoint == 5 + 1  # archive:0..4, archive:late (S3 failed after its snapshot)
        assert await sm.get_state("archive:late") == "after the checkpoint"
        assert await sm.get_state("orders:1") is None and await sm.get_state("archive:4") == 4
        waiting = spooled(settings)
        assert len(waiting) == 3 + 2  # + the spooled write and the restore's segment
        await sm.set_state("archive:late", "newest, spooled", ARCHIVE)
        assert await sm.get_state("archive:late") == "newest, spooled"  # its newest copy is in the spool
        newest = await sm.checkpoints.create_checkpoint("newest while down")

        private_s3.start()  # no operation from here on: the probe timer finds S3 and drains the spool

        async def drained() -> bool:  # health() does no I/O: nothing here could start a probe
            return sm.health().cold_state is ColdState.UP

        await eventually_async(drained, timeout=10, interval=0.01)
        assert list(spool_of(settings).iterdir()) == []
        for suffix, data in waiting.items():
            assert bucket_object(settings, suffix) == data
        assert await sm.get_state("archive:late") == "newest, spooled"
        assert (await sm.verify_coherence()).ok
        verified = await sm.checkpoints.restore_checkpoint(newest.checkpoint_id, verify_only=True)
        assert verified.keys_in_checkpoint == 5 + 1 + 1  # + system:s3_available (false)
        await sm.checkpoints.prune(0)


_DRAIN_CHILD = """
import asyncio, json, sys
from pathlib import Path
from bot_v2.state import StateManager
from bot_v2.state.settings import ColdBackend, HotBackend, StateSettings, WarmBackend

fields = json.loads(sys.argv[1])
settings = StateSettings(**fields | {
    "data_dir": Path(fields["data_dir"]), "hot_backend": HotBackend(fields["hot_backend"]),
    "warm_backend": WarmBackend(fields["warm_backend"]), "cold_backend": ColdBackend(fields["cold_backend"]),
})

async def main():
    print("starting", flush=True)
    async with await StateManager.create(settings):  # S3 answers: the spool is synced before this returns
        print("drained", flush=True)

asyncio.run(main())
"""


async def test_a_process_killed_mid_drain_loses_nothing_and_resends_at_most_its_puts_in_flight(
    cold_settings: StateSettings, private_s3: MotoServer, tmp_path: Path
) -> None:
    """60 ARCHIVE batches spooled while S3 was down; a StateManager process syncing them at start is
    SIGKILLed once some left the spool: every object that left it is in the bucket with its bytes, at most the
    puts in flight are in both, and the next process uploads the rest: every record readable, coherent."""
    settings = cold_settings
    spool = spool_of(settings)
    async with await StateManager.create(settings) as sm:
        private_s3.stop()
        for i in range(60):
            await sm.set_state(f"archive:{i:03d}", {"i": i}, ARCHIVE)  # one spooled segment each
    waiting = {path.name.split(".", 2)[2]: path.read_bytes() for path in spool.iterdir()}
    assert len(waiting) == 60

    private_s3.start()
    fields = json.dumps(dataclasses.asdict(settings), default=str)
    errors = tmp_path / "child.stderr"
    with open(errors, "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", _DRAIN_CHILD, fields], stdout=subprocess.PIPE, stderr=stderr, text=True
        )

    def draining() -> bool:
        assert child.poll() is None, f"the draining process exited: {errors.read_text()[-2000:]}"
        return len(list(spool.iterdir())) < 56

    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "starting"
        try:
            eventually(draining, timeout=30, interval=0.002)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the draining process said: {errors.read_text()[-2000:]}") from exc
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    left = {path.name.split(".", 2)[2] for path in spool.iterdir()}
    assert 0 < len(left) < 56  # killed mid-drain
    in_bucket = bucket_segments(settings)
    gone = set(waiting) - left
    assert all(in_bucket.get(name) == waiting[name] for name in gone)  # nothing that left the spool is lost
    assert len(left & set(in_bucket)) <= DRAIN_CONCURRENCY  # re-sent next time: at most the puts in flight

    async with await StateManager.create(settings) as sm:  # the restarted process drains the rest
        assert sm.health().cold_state is ColdState.UP
        assert list(spool.iterdir()) == []
        assert bucket_segments(settings) == waiting
        found = await sm.batch_get_state([f"archive:{i:03d}" for i in range(60)])
        assert found == {f"archive:{i:03d}": {"i": i} for i in range(60)}
        assert (await sm.verify_coherence()).ok


async def test_a_hung_endpoint_fails_a_put_within_its_timeout_and_the_write_is_spooled(
    tmp_path: Path,
) -> None:
    """A listener that accepts (the kernel completes the handshake) and never answers, like a SIGSTOPped S3:
    the put fails after two bounded attempts instead of botocore's default minute, and the write is spooled."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        inner = S3ColdTier(
            S3_TEST_BUCKET,
            KeySpace("hung"),
            endpoint_url=f"http://127.0.0.1:{hung.getsockname()[1]}",
            access_key_id=S3_TEST_CREDENTIALS["aws_access_key_id"],
            secret_access_key=S3_TEST_CREDENTIALS["aws_secret_access_key"],
            command_timeout_seconds=0.2,
        )
        tier = SpoolingColdTier(inner, tmp_path / "spool")
        await tier.load_spool()
        started = time.monotonic()
        await tier.put_segment("a.seg.gz", b"body")
        assert time.monotonic() - started < 5  # 2 x 0.2 s + botocore's backoff; unbounded it hangs ~60 s
        assert tier.spooling and tier.spooled_objects == 1
        await tier.close()


async def test_probes_of_a_stopped_endpoint_are_bare_connects_and_the_first_after_its_start_answers(
    private_s3: MotoServer,
) -> None:
    """Once a probe found the endpoint refusing connections, the next ones are a TCP connect each (no botocore
    request: the manager probes every 20 ms); that must not hide the endpoint coming back."""
    inner = S3ColdTier(
        S3_TEST_BUCKET,
        KeySpace("probe"),
        endpoint_url=private_s3.url,
        access_key_id=S3_TEST_CREDENTIALS["aws_access_key_id"],
        secret_access_key=S3_TEST_CREDENTIALS["aws_secret_access_key"],
    )
    try:
        await inner.probe()
        private_s3.stop()
        with pytest.raises(StateUnavailableError, match="EndpointConnectionError"):
            await inner.probe()  # botocore's HeadBucket, refused
        started = time.process_time()
        for _ in range(50):
            with pytest.raises(StateUnavailableError, match="connection refused"):
                await inner.probe()
        # ~0.05 ms of CPU each; a botocore request refused costs ~1 ms (50 ms for the 50)
        assert time.process_time() - started < 0.02
        private_s3.start()
        await inner.probe()  # the first probe after the start answers
    finally:
        await inner.close()


def bucket_segments(settings: StateSettings) -> dict[str, bytes]:
    client = boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1", **S3_TEST_CREDENTIALS
    )
    prefix = f"state/{settings.bot_id}/segments/"
    try:
        listed = client.list_objects_v2(Bucket=S3_TEST_BUCKET, Prefix=prefix).get("Contents", [])
        return {
            item["Key"][len(prefix) :]: bytes(
                client.get_object(Bucket=S3_TEST_BUCKET, Key=item["Key"])["Body"].read()
            )
            for item in listed
        }
    finally:
        client.close()
