"""COLD degraded mode: a ``ColdTier`` wrapper that spools the writes its inner tier cannot take.

DESIGN.md "Recovery", *S3 down*: a COLD write (segment or checkpoint object) that fails with
``StateUnavailableError`` is written to a local spool directory instead (temp file + fsync + rename + fsync of
the directory, so a crash never leaves a half object under a real name) and the write succeeds. From then on
the wrapper is *spooling*: writes go straight to the spool without touching the dead endpoint, reads of a
spooled object are served from the spool, until ``sync()`` uploaded every spooled object and switched spooling
off. The sync sends them oldest first with up to ``drain_concurrency`` puts in flight (S3 answers a put in a
few milliseconds, mostly waiting: one at a time most of a drain would be idle), verifies each from the
store's answer to its put (the SHA-256 S3 checked on arrival; ``head_*`` only when the answer proves nothing)
and removes only a verified object from the spool. A crash mid-sync therefore re-sends at most the objects
that were in flight, and never loses one. Each object is one job of the store's worker thread
(``ColdTier.upload_file``: read the file, put it, and once the answer proves the bytes move the file out of
the spool), so a sync costs the event loop one thread hop per object, not three.

With ``recent_dir`` (the manager always gives one) the wrapper also keeps ``RecentSegments``
(``cold_recent.py``): local copies of the segments written since the checkpoint before the last one, so
that a checkpoint taken while the store is down finds every COLD body locally or in an earlier checkpoint.
While ``down`` (set by the owner when the store failed, cleared when a sync starts) a read of an object held
neither in the spool nor there fails at once instead of waiting on the dead endpoint.

Spool files are named ``<sequence>.<kind>.<object name>`` (``kind`` is ``segment`` or ``checkpoint``); the
sequence (nanoseconds, strictly increasing, continued across processes) orders them. ``load_spool()`` (run by
``connect()``) rebuilds the index from the directory, so a process that died while S3 was down leaves its
spool for the next one; temp files of a write torn by a crash are removed then.

The wrapper only does the mechanics; the ``StateManager`` owns the degraded state machine (detection via
``on_unavailable``, the probe on a timer, the ``system:s3_available`` record, recovery figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

from bot_v2.errors import ColdUnavailableError, StateError, StateUnavailableError
from bot_v2.state.settings import StateSettings
from bot_v2.state.tiers.cold import ColdTier, ObjectInfo, ObjectKind, Upload
from bot_v2.state.tiers.cold_recent import RecentCopy, RecentSegments

logger = logging.getLogger(__name__)
T = TypeVar("T")

SEGMENT: ObjectKind = "segment"
CHECKPOINT: ObjectKind = "checkpoint"
_FILE = re.compile(r"^(\d{20})\.(segment|checkpoint)\.([^/\\]+)$")
_TMP_SUFFIX = ".tmp"
DRAIN_CONCURRENCY = 8
#: Local segment copies are kept this much longer than the checkpoint before the last one needs them: a batch
#: commits its WARM rows a little after its segment was written, and must be in a checkpoint before its copy goes.
RECENT_MARGIN_SECONDS = 60.0


class SpooledObject(NamedTuple):
    """One object waiting in the spool for the inner tier."""

    seq: int
    kind: ObjectKind
    name: str
    path: Path
    size: int


def _write_durably(path: Path, data: bytes) -> None:
    """temp file + fsync + rename + fsync of the directory: the object exists whole or not at all."""
    tmp = path.with_name(f".{path.name}{_TMP_SUFFIX}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ignore(_: StateUnavailableError) -> None:
    return None


def spooling_tier(inner: ColdTier, settings: StateSettings, bot_id: str) -> SpoolingColdTier:
    """The manager's wrapper of its COLD tier: the bot's spool and recent-segment directories."""
    return SpoolingColdTier(inner, settings.spool_dir / bot_id, recent_dir=settings.cold_recent_dir / bot_id)


class SpoolingColdTier:
    """Wraps a ``ColdTier``; writes it cannot take go to ``spool_dir`` (see the module docstring).

    ``on_unavailable(exc)`` is called (synchronously) whenever the inner tier raises
    ``StateUnavailableError``; spooling is then on until ``sync()`` emptied the spool.
    """

    def __init__(
        self,
        inner: ColdTier,
        spool_dir: Path,
        on_unavailable: Callable[[StateUnavailableError], None] | None = None,
        *,
        recent_dir: Path | None = None,
        drain_concurrency: int = DRAIN_CONCURRENCY,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.spool_dir = spool_dir
        self.on_unavailable = on_unavailable or _ignore
        self.recent = RecentSegments(recent_dir) if recent_dir is not None else None
        self.drain_concurrency = max(1, drain_concurrency)
        self.spooling = False
        self.down = False  # the store failed and no probe answered since: reads not held locally fail at once
        self._checkpointed_at: float | None = None  # snapshot time of the newest checkpoint stored
        self.torn_files_removed = 0
        self._index: dict[tuple[str, str], SpooledObject] = {}
        self._seq = 0
        self._in_flight = 0  # spool writes between "decided to spool" and "indexed"
        self._last_inner_stats = (0, 0)

    def __repr__(self) -> str:
        return f"{self.inner!r}"

    # --- spool bookkeeping ------------------------------------------------------------------------

    @property
    def spooled_objects(self) -> int:
        return len(self._index)

    @property
    def spooled_bytes(self) -> int:
        return sum(entry.size for entry in self._index.values())

    def spooled(self) -> list[SpooledObject]:
        """The spooled objects, oldest first."""
        return sorted(self._index.values(), key=lambda entry: entry.seq)

    def _scan(self) -> tuple[dict[tuple[str, str], SpooledObject], int, int]:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        index: dict[tuple[str, str], SpooledObject] = {}
        torn = seq = 0
        for path in self.spool_dir.iterdir():
            if not path.is_file():
                continue
            if path.name.startswith(".") and path.name.endswith(_TMP_SUFFIX):
                path.unlink(missing_ok=True)  # a write torn by a crash: its object was never acknowledged
                torn += 1
                continue
            match = _FILE.match(path.name)
            if match is None:
                logger.warning("spool %s: ignoring unknown file %r", self.spool_dir, path.name)
                continue
            kind = SEGMENT if match[2] == SEGMENT else CHECKPOINT
            entry = SpooledObject(int(match[1]), kind, match[3], path, path.stat().st_size)
            seq = max(seq, entry.seq)
            old = index.get((entry.kind, entry.name))
            if old is not None:  # the same object spooled twice: the newer copy wins
                keep, drop = (entry, old) if entry.seq > old.seq else (old, entry)
                drop.path.unlink(missing_ok=True)
                entry = keep
            index[(entry.kind, entry.name)] = entry
        return index, torn, seq

    async def load_spool(self) -> int:
        """(Re)build the index from the spool directory, removing torn temp files; return the object count."""
        try:
            index, torn, seq = await asyncio.to_thread(self._scan)
        except OSError as exc:  # not an outage of the inner tier: the local disk itself is unusable
            raise StateError(f"COLD spool directory {self.spool_dir} is unusable: {exc}") from None
        self._index, self._seq = index, max(self._seq, seq)
        if self.recent is not None:
            await self.recent.load()
        self.torn_files_removed += torn
        if torn:
            logger.warning(
                "COLD spool %s: removed %d torn temp file(s) of an interrupted write", self.spool_dir, torn
            )
        if index:
            self.spooling = True  # objects wait for the inner tier: nothing new may overtake them
            logger.warning(
                "COLD spool %s holds %d object(s) (%d bytes) not yet in %r",
                self.spool_dir,
                len(index),
                self.spooled_bytes,
                self.inner,
            )
        return len(index)

    def _next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns())
        return self._seq

    async def _spool(self, kind: ObjectKind, name: str, data: bytes) -> None:
        if not name or name.startswith(".") or "/" in name or "\\" in name:
            raise StateError(f"COLD object name {name!r} cannot be spooled")
        self._in_flight += 1
        try:
            seq = self._next_seq()
            path = self.spool_dir / f"{seq:020d}.{kind}.{name}"
            try:
                await asyncio.to_thread(_write_durably, path, data)
            except OSError as exc:
                raise ColdUnavailableError(
                    f"COLD tier down and spool directory {self.spool_dir} failed: write {name}: {exc}"
                ) from None
            old = self._index.get((kind, name))
            self._index[(kind, name)] = SpooledObject(seq, kind, name, path, len(data))
        finally:
            self._in_flight -= 1
        if old is not None:
            await asyncio.to_thread(old.path.unlink, missing_ok=True)

    # --- inner calls ------------------------------------------------------------------------------

    def _failed(self, exc: StateUnavailableError) -> None:
        self.spooling = True
        self.on_unavailable(exc)

    async def _inner(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except StateUnavailableError as exc:
            self._failed(exc)
            raise

    async def _put(
        self, kind: ObjectKind, name: str, data: bytes, put: Callable[[str, bytes], Awaitable[str | None]]
    ) -> None:
        if not self.spooling:
            try:
                stored = await put(name, data)
            except StateUnavailableError as exc:
                self._failed(exc)
            else:
                if kind == SEGMENT and self.recent is not None:
                    await self.recent.add(name, data, stored)
                return
        await self._spool(kind, name, data)

    async def _get(self, kind: ObjectKind, name: str, get: Callable[[str], Awaitable[bytes]]) -> bytes:
        entry = self._index.get((kind, name))
        if entry is not None:
            try:
                return await asyncio.to_thread(entry.path.read_bytes)
            except FileNotFoundError:
                pass  # synced (and removed from the spool) meanwhile: the inner tier has it
            except OSError as exc:
                raise ColdUnavailableError(
                    f"COLD spool {self.spool_dir}: read {name} failed: {exc}"
                ) from None
        if kind == SEGMENT and self.recent is not None:
            data = await self.recent.get(name)
            if data is not None:
                return data
        if self.down:  # the store is probed on a timer; asking it here would only wait on a dead endpoint
            raise ColdUnavailableError(
                f"{self.inner!r}: unavailable (COLD degraded), {kind} {name} is not held locally"
            )
        try:
            return await self._inner(get(name))
        except ColdUnavailableError:
            raise
        except StateUnavailableError as exc:  # a COLD read that fails is no WARM outage
            raise ColdUnavailableError(str(exc)) from None

    async def _delete(self, kind: ObjectKind, name: str, delete: Callable[[str], Awaitable[None]]) -> None:
        if kind == SEGMENT and self.recent is not None:
            await self.recent.forget(name)
        entry = self._index.pop((kind, name), None)
        if entry is not None:
            await asyncio.to_thread(entry.path.unlink, missing_ok=True)
            if self.spooling:
                return  # never reached the inner tier
        await self._inner(delete(name))

    # --- the ColdTier port ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Load the spool (a previous process may have left objects), then connect the inner tier."""
        await self.load_spool()
        await self.inner.connect()

    async def probe(self) -> None:
        """Ask the inner tier whether it answers (raises ``StateUnavailableError`` if not)."""
        await self.inner.probe()

    async def checkpointed(self, snapshot_at: float) -> None:
        """A checkpoint whose snapshot began at ``snapshot_at`` (wall clock) is stored in WARM: forget the
        local segment copies the checkpoint before it already held (written before that one's snapshot,
        less ``RECENT_MARGIN_SECONDS``); every record they hold is in a stored checkpoint."""
        previous, self._checkpointed_at = self._checkpointed_at, snapshot_at
        if self.recent is not None and previous is not None:
            await self.recent.forget_before(previous - RECENT_MARGIN_SECONDS)

    async def put_segment(self, name: str, data: bytes) -> None:
        await self._put(SEGMENT, name, data, self.inner.put_segment)

    async def get_segment(self, name: str) -> bytes:
        return await self._get(SEGMENT, name, self.inner.get_segment)

    async def delete_segment(self, name: str) -> None:
        await self._delete(SEGMENT, name, self.inner.delete_segment)

    async def head_segment(self, name: str) -> ObjectInfo | None:
        return await self._inner(self.inner.head_segment(name))

    async def put_checkpoint(self, name: str, data: bytes) -> None:
        await self._put(CHECKPOINT, name, data, self.inner.put_checkpoint)

    async def get_checkpoint(self, name: str) -> bytes:
        return await self._get(CHECKPOINT, name, self.inner.get_checkpoint)

    async def upload_file(
        self, kind: ObjectKind, name: str, path: Path, then: Callable[[str], None]
    ) -> Upload:
        """Straight to the inner tier (the sync's own path; never spooled)."""
        return await self._inner(self.inner.upload_file(kind, name, path, then))

    async def delete_checkpoint(self, name: str) -> None:
        await self._delete(CHECKPOINT, name, self.inner.delete_checkpoint)

    async def head_checkpoint(self, name: str) -> ObjectInfo | None:
        return await self._inner(self.inner.head_checkpoint(name))

    async def list_checkpoints(self) -> list[str]:
        """Checkpoint names in the inner tier and the spool. While spooling the inner tier is not asked (it
        is down): ``StateUnavailableError``."""
        if self.spooling:
            raise StateUnavailableError(
                f"{self.inner!r}: unavailable (COLD degraded), cannot list checkpoints"
            )
        names = set(await self._inner(self.inner.list_checkpoints()))
        names.update(name for kind, name in self._index if kind == CHECKPOINT)
        return sorted(names)

    async def stats(self) -> tuple[int, int]:
        """(segments, bytes) in the inner tier plus the spooled segments; while spooling the inner tier's
        last known figures are used (it is not asked)."""
        if not self.spooling:
            with contextlib.suppress(StateUnavailableError):  # reported through on_unavailable
                self._last_inner_stats = await self._inner(self.inner.stats())
        segments = [entry for entry in self._index.values() if entry.kind == SEGMENT]
        objects, size = self._last_inner_stats
        return objects + len(segments), size + sum(entry.size for entry in segments)

    async def close(self) -> None:
        if self._index:
            logger.warning(
                "COLD spool %s still holds %d object(s) (%d bytes): synced when %r answers again "
                "(by this process or the next one)",
                self.spool_dir,
                len(self._index),
                self.spooled_bytes,
                self.inner,
            )
        await self.inner.close()

    # --- sync -------------------------------------------------------------------------------------

    async def sync(self, on_synced: Callable[[SpooledObject], None] | None = None) -> tuple[int, int]:
        """Upload every spooled object to the inner tier, oldest first, ``drain_concurrency`` at a time; each
        is verified (``_upload``) before it leaves the spool. Objects spooled meanwhile are synced too. When
        the spool is empty, spooling is switched off. Return (objects, bytes) uploaded.

        Any failure raises (``StateUnavailableError``) once the puts in flight have ended, and leaves the
        objects not yet verified in the spool.
        """
        self.down = False  # the store answered a probe
        done = [0, 0]

        def count(entry: SpooledObject, size: int) -> None:
            done[0], done[1] = done[0] + 1, done[1] + size
            if on_synced is not None:
                on_synced(entry)

        while True:
            pending = self.spooled()
            if pending:
                await self._drain(pending, count)
                continue
            if not self._in_flight:
                self.spooling = False  # no await between the check and this: nothing is left behind
                return done[0], done[1]
            await asyncio.sleep(0.001)  # a spool write is finishing: sync it too

    async def _drain(self, pending: list[SpooledObject], count: Callable[[SpooledObject, int], None]) -> None:
        """Sync ``pending`` with at most ``drain_concurrency`` uploads in flight, started strictly oldest first;
        after the first failure no new upload starts, the ones in flight finish (and leave the spool if
        verified), then the failure is raised."""
        window = asyncio.Semaphore(self.drain_concurrency)
        failures: list[Exception] = []
        running: set[asyncio.Task[None]] = set()

        async def one(entry: SpooledObject) -> None:
            try:
                size = await self._sync_one(entry)
                if size is not None:
                    count(entry, size)
            except Exception as exc:
                failures.append(exc)
            finally:
                window.release()

        try:
            for entry in pending:
                await window.acquire()
                if failures or self._index.get((entry.kind, entry.name)) is not entry:
                    window.release()  # a failure: start nothing more; else deleted or re-spooled meanwhile
                    if failures:
                        break
                    continue
                task = asyncio.create_task(one(entry), name=f"cold-sync-{entry.name}")
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.wait(set(running))
        except BaseException:  # cancelled (close()): what is in flight stays in the spool unless verified
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        if failures:
            raise failures[0]

    async def _sync_one(self, entry: SpooledObject) -> int | None:
        """Upload one spooled object and take it out of the spool once verified; return its size, or None if
        it was deleted or re-spooled meanwhile. One job of the inner tier's worker thread reads the file, puts
        it and, when the put's answer proves the bytes (S3: the SHA-256 it checked on arrival), moves the file
        out of the spool (``_retire_file``); else ``head_*`` verifies it first. A crash before the move
        re-sends the object, nothing more."""
        moved: list[RecentCopy | None] = []

        def retire(sha256: str) -> None:  # in the worker thread, once the store proved it holds the bytes
            moved.append(self._retire_file(entry, sha256))

        try:
            upload = await self._inner(self.inner.upload_file(entry.kind, entry.name, entry.path, retire))
        except FileNotFoundError:  # deleted (pruned) or re-spooled meanwhile: that path removed the file
            if self._index.get((entry.kind, entry.name)) is entry:
                del self._index[(entry.kind, entry.name)]
            return None
        except OSError as exc:  # the local disk, not the store: the uploads in flight finish
            raise StateUnavailableError(f"COLD spool {self.spool_dir}: {entry.name}: {exc}") from None
        if not upload.proven:
            await self._verify(entry, upload)
            moved.append(await asyncio.to_thread(self._retire_file, entry, upload.sha256))
        await self._forget(entry, moved[0])
        return upload.size

    async def _verify(self, entry: SpooledObject, upload: Upload) -> None:
        """The put's answer did not prove the bytes: verified by ``head_*`` (size, and SHA-256 where the store
        keeps one), else ``StateUnavailableError`` (the object stays in the spool)."""
        if upload.stored is None:
            head = self.inner.head_segment if entry.kind == SEGMENT else self.inner.head_checkpoint
            found = await self._inner(head(entry.name))
            if found is not None and found.size == upload.size and found.sha256 in (None, upload.sha256):
                return
            info: object = found
        else:
            info = f"sha256 {upload.stored}"
        exc = StateUnavailableError(
            f"{self.inner!r}: {entry.kind} {entry.name!r} failed verification after upload "
            f"(stored {info}, expected {upload.size} bytes sha256 {upload.sha256}); kept in the spool"
        )
        self._failed(exc)
        raise exc

    def _retire_file(self, entry: SpooledObject, sha256: str) -> RecentCopy | None:
        """Blocking: the object is verified in the store, so its file may leave the spool -- a segment is moved
        to the recent copies (returned; ``_forget`` indexes it), anything else removed."""
        if entry.kind == SEGMENT and self.recent is not None:
            try:
                return self.recent.move_in(entry.path, entry.name, sha256)
            except OSError:
                pass  # not kept (or gone: deleted meanwhile): removed below
        entry.path.unlink(missing_ok=True)
        return None

    async def _forget(self, entry: SpooledObject, copy: RecentCopy | None) -> None:
        """The spool index forgets a synced object (its file is gone); its recent copy is indexed -- unless the
        object was deleted or re-spooled meanwhile: that path owns the name, the copy of older bytes goes."""
        key = (entry.kind, entry.name)
        if self._index.get(key) is entry:
            del self._index[key]
            if copy is not None and self.recent is not None:
                await self.recent.keep(entry.name, copy)
        elif copy is not None:
            await asyncio.to_thread(copy.path.unlink, missing_ok=True)
