"""The WARM outage journal: a local, append-only, fsync'd file of the durable writes WARM could not take.

While PostgreSQL (WARM) is unreachable the ``StateManager`` keeps every durable write here instead
(``outage.py``), and replays the file into WARM when it answers again. Why a file of our own and not SQLite:
one ``write`` + one ``fsync`` per batch is the whole cost, and a torn write can only damage the tail.

File: ``<journal_dir>/<bot_id>/warm.journal``. It is a sequence of frames::

    b"PBJ1" | payload length (u32 BE) | CRC-32 of the payload (u32 BE) | payload (msgpack)

The first frame of a journal is its *opening* record (``op="open"``, ``key`` = a fresh journal id, so a
replay marker in WARM can tell this journal from an earlier one); every other frame is one write:
``JournalRecord`` with a sequence number (1, 2, ... across the file), the lease epoch it was written under,
``put`` / ``delete``, the key, its category, its version *inside the journal* (1, 2, ... per key: the order
of its writes), the value's checksum (``codec.checksum``, verified again at replay), the value, the absolute
expiry and the wall time it was written.

Reading (``Journal.open``) keeps every frame up to the first one that is short, has a wrong magic or CRC,
or does not decode -- the *torn tail* of a write the machine did not finish -- and cuts the file there
(``truncate`` + ``fsync``): nothing after a bad frame is ever replayed, even a frame that looks valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import msgspec

from bot_v2.errors import StateIntegrityError

logger = logging.getLogger(__name__)

MAGIC = b"PBJ1"
_FRAME = struct.Struct(">4sII")
FORMAT = 1
#: A frame larger than this is a torn or foreign tail, not a record (values are capped far below it).
MAX_FRAME_BYTES = 64 * 1024 * 1024


class JournalRecord(msgspec.Struct, array_like=True, frozen=True):
    """One journaled write (``op`` put / delete) or the journal's opening record (``op`` open)."""

    fmt: int
    seq: int
    epoch: int | None
    op: str
    key: str
    category: str
    version: int
    checksum: str
    value: bytes | None
    expires_ms: int | None  # absolute expiry, unix ms (None: no expiry)
    at_ms: int  # wall time it was written, unix ms


class JournalScan(NamedTuple):
    """What ``Journal.open`` found: the journal id, the writes in order, and the bytes cut off a torn tail."""

    journal_id: str
    records: list[JournalRecord]
    torn_bytes: int
    opened_ms: int | None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(JournalRecord)


def frame(record: JournalRecord) -> bytes:
    """The bytes of one record on disk."""
    payload = _encoder.encode(record)
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def scan(data: bytes) -> tuple[list[JournalRecord], int]:
    """Decode frames from the start of ``data``; return the good records and the offset after the last one."""
    records: list[JournalRecord] = []
    offset = 0
    while offset + _FRAME.size <= len(data):
        magic, length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        if magic != MAGIC or length > MAX_FRAME_BYTES or start + length > len(data):
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        try:
            record = _decoder.decode(payload)
        except msgspec.DecodeError:
            break
        if record.fmt != FORMAT:
            break
        records.append(record)
        offset = start + length
    return records, offset


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Journal:
    """One bot's journal file. Not thread-safe: the ``StateManager`` lock serializes appends and truncation."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "warm.journal"
        self.journal_id = ""
        self.opened_ms: int | None = None
        self.records = 0  # writes in the file (the opening record not counted)
        self.bytes = 0
        self.next_seq = 1
        self._unlinking: asyncio.Future[None] | None = None

    def open(self, *, cut: bool = True) -> JournalScan:
        """Read the journal, cutting a torn tail (``cut=False``, a reader: ignore it, change nothing); an
        absent or empty file is an empty journal."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise StateIntegrityError(f"WARM journal {self.path}: cannot read: {exc}") from exc
        records, good = scan(data)
        torn = len(data) - good
        if torn and cut:
            logger.error(
                "PostgreSQL recovery: WARM journal %s: torn tail of %d bytes cut after %d good records "
                "(a write the machine did not finish); nothing past it is replayed",
                self.path,
                torn,
                sum(1 for r in records if r.op != "open"),  # the writes kept, as ``records`` counts them
            )
            with open(self.path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        if records and records[0].op != "open":
            raise StateIntegrityError(f"WARM journal {self.path}: first record is not the opening record")
        writes = records[1:]
        self.journal_id = records[0].key if records else ""
        self.opened_ms = records[0].at_ms if records else None
        self.records = len(writes)
        self.bytes = good
        self.next_seq = (writes[-1].seq + 1) if writes else 1
        return JournalScan(self.journal_id, writes, torn, self.opened_ms)

    async def append(self, records: Sequence[JournalRecord]) -> None:
        """Append ``records`` (and the opening record, first time) with ONE write and ONE fsync."""
        await self.settle()
        chunks: list[bytes] = []
        new_file = self.bytes == 0
        if new_file:
            self.journal_id = uuid.uuid4().hex
            self.opened_ms = now_ms()
            opening = JournalRecord(
                FORMAT, 0, None, "open", self.journal_id, "", 0, "", None, None, self.opened_ms
            )
            chunks.append(frame(opening))
        chunks.extend(frame(r) for r in records)
        data = b"".join(chunks)
        await asyncio.to_thread(self._write, data, new_file)
        self.bytes += len(data)
        self.records += len(records)
        if records:
            self.next_seq = records[-1].seq + 1

    def _write(self, data: bytes, new_file: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if new_file:
                os.ftruncate(fd, 0)  # a leftover of a journal cut to nothing
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new_file:
            _fsync_dir(self.path.parent)

    async def truncate(self) -> None:
        """Empty the journal after a complete replay (the next outage starts a new journal id). The unlink runs
        in a thread nobody waits for (on a busy disk an unlink can take tens of milliseconds); the next append
        (``settle``) waits for it."""
        self.journal_id = ""
        self.opened_ms = None
        self.records = self.bytes = 0
        self.next_seq = 1
        self._unlinking = asyncio.ensure_future(asyncio.to_thread(self._truncate))

    async def settle(self) -> None:
        """Wait for the unlink of the last truncate, if one is still running."""
        unlinking, self._unlinking = self._unlinking, None
        if unlinking is not None:
            await unlinking

    def _truncate(self) -> None:
        # No directory fsync: an unlink lost in a crash brings back a journal whose records the replay
        # marker in WARM already covers (replayed again, it applies nothing); a new journal overwrites it.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
