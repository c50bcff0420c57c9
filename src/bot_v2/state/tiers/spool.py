"""COLD degraded mode: a ``ColdTier`` wrapper that spools the writes its inner tier cannot take.

DESIGN.md "Recovery", *S3 down*: a COLD write (segment or checkpoint object) that fails with
``StateUnavailableError`` is written to a local spool directory instead (temp file + fsync + rename + fsync of
the directory, so a crash never leaves a half object under a real name) and the write succeeds. From then on
the wrapper is *spooling*: writes go straight to the spool without touching the dead endpoint, reads of a
spooled object are served from the spool, until ``sync()`` uploaded every spooled object (oldest first, each
verified by size and SHA-256 before its spool file is deleted) and switched spooling off.

Spool files are named ``<sequence>.<kind>.<object name>`` (``kind`` is ``segment`` or ``checkpoint``); the
sequence (nanoseconds, strictly increasing, continued across processes) orders them. ``load_spool()`` (run by
``connect()``) rebuilds the index from the directory, so a process that died while S3 was down leaves its
spool for the next one; temp files of a write torn by a crash are removed then.

The wrapper only does the mechanics; the ``StateManager`` owns the degraded state machine (detection via
``on_unavailable``, the probe with backoff, the ``system:s3_available`` record, recovery figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

from bot_v2.errors import StateError, StateUnavailableError
from bot_v2.state.tiers.cold import ColdTier, ObjectInfo

logger = logging.getLogger(__name__)
T = TypeVar("T")

SEGMENT, CHECKPOINT = "segment", "checkpoint"
_FILE = re.compile(r"^(\d{20})\.(segment|checkpoint)\.([^/\\]+)$")
_TMP_SUFFIX = ".tmp"


class SpooledObject(NamedTuple):
    """One object waiting in the spool for the inner tier."""

    seq: int
    kind: str
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
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.spool_dir = spool_dir
        self.on_unavailable = on_unavailable or _ignore
        self.spooling = False
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
            entry = SpooledObject(int(match[1]), match[2], match[3], path, path.stat().st_size)
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

    async def _spool(self, kind: str, name: str, data: bytes) -> None:
        if not name or name.startswith(".") or "/" in name or "\\" in name:
            raise StateError(f"COLD object name {name!r} cannot be spooled")
        self._in_flight += 1
        try:
            seq = self._next_seq()
            path = self.spool_dir / f"{seq:020d}.{kind}.{name}"
            try:
                await asyncio.to_thread(_write_durably, path, data)
            except OSError as exc:
                raise StateUnavailableError(
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
        self, kind: str, name: str, data: bytes, put: Callable[[str, bytes], Awaitable[None]]
    ) -> None:
        if not self.spooling:
            try:
                await put(name, data)
                return
            except StateUnavailableError as exc:
                self._failed(exc)
        await self._spool(kind, name, data)

    async def _get(self, kind: str, name: str, get: Callable[[str], Awaitable[bytes]]) -> bytes:
        entry = self._index.get((kind, name))
        if entry is not None:
            try:
                return await asyncio.to_thread(entry.path.read_bytes)
            except FileNotFoundError:
                pass  # synced (and removed from the spool) meanwhile: the inner tier has it
            except OSError as exc:
                raise StateUnavailableError(
                    f"COLD spool {self.spool_dir}: read {name} failed: {exc}"
                ) from None
        return await self._inner(get(name))

    async def _delete(self, kind: str, name: str, delete: Callable[[str], Awaitable[None]]) -> None:
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
        await self.inner.connect()

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
        """Upload every spooled object to the inner tier, oldest first; each is verified (size and SHA-256
        read back with ``head_*``) before its spool file is deleted. Objects spooled meanwhile are synced too.
        When the spool is empty, spooling is switched off. Return (objects, bytes) uploaded.

        Any failure raises (``StateUnavailableError``) and leaves the objects not yet verified in the spool.
        """
        objects = nbytes = 0
        while True:
            pending = self.spooled()
            if not pending:
                if not self._in_flight:
                    self.spooling = False  # no await between the check and this: nothing is left behind
                    return objects, nbytes
                await asyncio.sleep(0.001)  # a spool write is finishing: sync it too
                continue
            for entry in pending:
                if self._index.get((entry.kind, entry.name)) is not entry:
                    continue  # deleted (pruned) or re-spooled meanwhile
                try:
                    data = await asyncio.to_thread(entry.path.read_bytes)
                except FileNotFoundError:
                    self._index.pop((entry.kind, entry.name), None)
                    continue
                except OSError as exc:
                    raise StateUnavailableError(
                        f"COLD spool {self.spool_dir}: read {entry.name}: {exc}"
                    ) from None
                await self._upload(entry, data)
                if self._index.get((entry.kind, entry.name)) is entry:
                    del self._index[(entry.kind, entry.name)]
                    await asyncio.to_thread(entry.path.unlink, missing_ok=True)
                objects, nbytes = objects + 1, nbytes + len(data)
                if on_synced is not None:
                    on_synced(entry)

    async def _upload(self, entry: SpooledObject, data: bytes) -> None:
        if entry.kind == SEGMENT:
            put, head = self.inner.put_segment, self.inner.head_segment
        else:
            put, head = self.inner.put_checkpoint, self.inner.head_checkpoint
        await self._inner(put(entry.name, data))
        info = await self._inner(head(entry.name))
        digest = hashlib.sha256(data).hexdigest()
        if info is None or info.size != len(data) or (info.sha256 is not None and info.sha256 != digest):
            exc = StateUnavailableError(
                f"{self.inner!r}: {entry.kind} {entry.name!r} failed verification after upload "
                f"(stored {info}, expected {len(data)} bytes sha256 {digest}); kept in the spool"
            )
            self._failed(exc)
            raise exc
