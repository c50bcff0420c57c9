"""Checkpoints: a consistent, compressed, checksummed snapshot of all of a bot's state, and its restore.

A checkpoint is every live record of the bot (categories in ``EXCLUDED_CATEGORIES`` aside) read from ONE
WARM snapshot (PostgreSQL: a REPEATABLE READ read-only transaction through a cursor on a pooled connection;
SQLite: one read transaction on the checkpointer's own connection and thread), COLD bodies fetched from their
immutable segments, every body checked against its checksum, encoded canonically into one blob::

    PBCKPT2 <sha256 of the payload, hex>\n<payload>
    payload = zlib(header) + zlib(values) + checksums
    header  = sorted-key compact JSON {"bot_id", "checkpoint_id", "created_at", "format": 2, "records":
              {"category": [...], "expires_at": [...], "key": [...], "length": [...], "tier": [...],
               "version": [...]}}   (one column per field, one entry per record, in key order)
    values  = the records' value bytes, concatenated in the same order (``length`` splits them)
    checksums = the records' SHA-256 checksums, 32 bytes each, same order (random bytes: not compressed)

The values are the canonical bytes every tier stores, copied as they are. Format 1 (``PBCKPT1``, still read)
was one JSON document with the values as JSON strings: escaping every quote made it 1.6x larger, and encoding
and compressing it was most of a checkpoint's time. The blob is stored in WARM (``state_checkpoints``) and as
one object in COLD (``checkpoints/<id>.ckpt``), then pruned to ``StateSettings.checkpoint_retention`` in each.

Taking one runs beside the trading loop (``orchestration/checkpointing.py`` runs the periodic one as a
background task) and never blocks it:

* it never holds the manager's write lock (only publishing ``system:s3_available``, when that changed, takes it
  for one single-key batch), so the loop keeps writing; the snapshot reads on its own connection;
* its CPU work on the event loop is cut into slices of about ``_SLICE_SECONDS``, and between slices it steps
  aside while other tasks (a cycle) keep the loop busy; the values are compressed in a worker thread meanwhile
  (zlib releases the GIL), the header and the hash too; ``background=True`` also reads the snapshot in short
  pages (``_BACKGROUND_PAGE_ROWS``: PostgreSQL turns a page into rows on the loop in one go);
* Python's cyclic garbage collector is paused while the snapshot is in memory (``_collector_paused``).

A restore verifies first (blob SHA-256, format, bot, every record's checksum), then writes back in one
batch under the manager lock: one WARM transaction that upserts every record of the checkpoint and deletes
every other record of the bot (readers never see an empty or half state), then one HOT pipeline. A restored
record gets ``version = max(current, checkpoint) + 1`` with the checkpoint's value: versions only grow, so
caches and coherence checks stay correct. Anything that fails verification is a ``StateIntegrityError``
naming the checkpoint, and nothing is written.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import re
import secrets
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from operator import attrgetter
from typing import Any, Literal, NamedTuple, Protocol

from bot_v2.errors import StateError, StateIntegrityError, StateUnavailableError
from bot_v2.state import codec
from bot_v2.state.models import (
    CheckpointInfo,
    ColdRecord,
    HotRecord,
    RestoreReport,
    StateCategory,
    Tier,
    WarmRestore,
    WarmRow,
)
from bot_v2.state.ports import CheckpointHost
from bot_v2.state.settings import StateSettings
from bot_v2.state.tiers.cold import ColdTier, encode_segment, new_segment_name
from bot_v2.state.tiers.warm import WarmTier

logger = logging.getLogger(__name__)

EXCLUDED_CATEGORIES: tuple[str, ...] = (StateCategory.CHECKPOINTS.value,)
_MAGIC = b"PBCKPT2"
_FORMAT = 2
_MAGIC_V1 = b"PBCKPT1"  # format 1: one JSON document, values as JSON strings (read, never written)
_OBJECT_SUFFIX = ".ckpt"
_ID = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")
_COMPRESS_LEVEL = 1
#: Rows per cursor fetch. PostgreSQL turns each page into rows on the event loop in one go, so a background
#: checkpoint (beside the trading loop) fetches short pages, about a quarter of a millisecond of loop time
#: each; an awaited one (at shutdown, ``--checkpoint``) takes fewer round trips.
_SNAPSHOT_PAGE_ROWS = 1000
_BACKGROUND_PAGE_ROWS = 50
#: Records are checked and encoded in steps of this many; after each step the work yields to the event loop
#: once it has run ``_SLICE_SECONDS`` (a trading cycle waits at most about that long for it at an await).
_STEP_RECORDS = 32
_SLICE_SECONDS = 0.0002
#: Other tasks used more CPU than this while the checkpoint yielded (a trading cycle is running): it steps
#: aside ``_BACKOFF_SECONDS`` at a time until the loop is free again.
_BUSY_SECONDS = 0.0001
_BACKOFF_SECONDS = 0.002
_MAX_ASIDE_SECONDS = 0.05
#: Values joined and compressed at a time (in a worker thread).
_SEAL_CHUNK_VALUES = 2048
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
#: The record columns of a format 2 header, in canonical (sorted) order.
_COLUMNS = ("category", "expires_at", "key", "length", "tier", "version")
_DIGEST_BYTES = 32  # a record's checksum (SHA-256 of its value), stored binary
_TIERS = {tier.value: tier for tier in Tier}
_KEY, _CATEGORY, _TIER = attrgetter("key"), attrgetter("category"), attrgetter("tier")
_VERSION, _CHECKSUM, _EXPIRES_AT = attrgetter("version"), attrgetter("checksum"), attrgetter("expires_at")


def checkpoint_due(last: datetime | None, now: datetime, interval_seconds: float) -> bool:
    """Whether a periodic checkpoint is due: never taken, or ``interval_seconds`` have passed since ``last``."""
    return last is None or (now - last).total_seconds() >= interval_seconds


class _Record(NamedTuple):
    key: str
    category: str
    tier: Tier
    version: int
    checksum: str
    value: bytes
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Decoded:
    checkpoint_id: str
    created_at: datetime
    records: list[_Record]


def _new_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}"


def _check_id(checkpoint_id: str) -> str:
    if not isinstance(checkpoint_id, str) or not _ID.match(checkpoint_id):
        raise StateError(
            f"checkpoint id {checkpoint_id!r} is not valid (expected e.g. 20260101T000000000000Z-…)"
        )
    return checkpoint_id


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a snapshot is held in memory.

    The snapshot is tens of thousands of short-lived tuples. Alive across many young collections, they would
    be promoted to the oldest generation and so bring on a full collection (tens of milliseconds with the
    event loop stopped, i.e. a stalled trading cycle) every few checkpoints. Paused, they are freed by
    reference counting when the checkpoint drops them and never reach the old generation. Nothing else is
    lost: garbage made meanwhile is collected once the collector runs again."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _step_aside() -> None:
    """Let the event loop run other tasks; while they keep it busy (a trading cycle in progress), wait for a
    quiet moment, but not longer than ``_MAX_ASIDE_SECONDS`` (a loop that is never idle must not starve the
    checkpoint). The checkpoint is background work: it takes the loop's idle time, not the cycles' time.
    Busy is measured in this thread's CPU time, so being preempted by the OS does not count as busy."""
    deadline = time.perf_counter() + _MAX_ASIDE_SECONDS
    while True:
        started = time.thread_time()
        await asyncio.sleep(0)
        if time.thread_time() - started <= _BUSY_SECONDS or time.perf_counter() >= deadline:
            return
        await asyncio.sleep(_BACKOFF_SECONDS)


class _Meta(Protocol):
    """The metadata of a record (``_Record`` and ``WarmRow`` both have it)."""

    @property
    def key(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def tier(self) -> Tier: ...
    @property
    def version(self) -> int: ...
    @property
    def checksum(self) -> str: ...
    @property
    def expires_at(self) -> datetime | None: ...


def _compress(chunks: Iterable[bytes]) -> tuple[bytes, int]:
    """One zlib stream of ``chunks`` concatenated, and its raw size. Meant for a worker thread: zlib releases
    the GIL while it compresses a chunk."""
    compressor = zlib.compressobj(_COMPRESS_LEVEL)
    out: list[bytes] = []
    raw = 0
    for chunk in chunks:
        raw += len(chunk)
        out.append(compressor.compress(chunk))
    out.append(compressor.flush())
    return b"".join(out), raw


def _value_chunks(values: Sequence[bytes]) -> Iterator[bytes]:
    """``values`` joined a chunk at a time: a worker thread compressing them takes the GIL back only once a
    chunk (zlib releases it while it compresses)."""
    for start in range(0, len(values), _SEAL_CHUNK_VALUES):
        yield b"".join(values[start : start + _SEAL_CHUNK_VALUES])


class _HeaderWriter:
    """Builds a format 2 header a slice of records at a time (the caller yields to the event loop between
    slices). Every slice is JSON-encoded column by column as it comes, so the header is the same canonical
    bytes whatever the slicing: ``json.dumps(header, sort_keys=True, separators=(",", ":"))``."""

    def __init__(self, bot_id: str, checkpoint_id: str, created_at: datetime) -> None:
        head = _JSON.encode(
            {
                "bot_id": bot_id,
                "checkpoint_id": checkpoint_id,
                "created_at": created_at.isoformat(),
                "format": _FORMAT,
            }
        )
        self._head = head[:-1]  # "records" sorts after every other key: it is appended last
        self._columns: dict[str, list[str]] = {name: [] for name in _COLUMNS}
        self._digests: list[bytes] = []

    def add(self, records: Sequence[_Meta], values: Sequence[bytes]) -> None:
        """Append the metadata of records (whose values the caller checked)."""
        if not records:
            return
        columns: dict[str, list[Any]] = {
            "category": list(map(_CATEGORY, records)),
            "expires_at": [None if e is None else e.isoformat() for e in map(_EXPIRES_AT, records)],
            "key": list(map(_KEY, records)),
            "length": list(map(len, values)),
            "tier": list(map(_TIER, records)),  # a StrEnum: encoded as its value
            "version": list(map(_VERSION, records)),
        }
        for name, column in columns.items():
            self._columns[name].append(_JSON.encode(column)[1:-1])
        self._digests.append(bytes.fromhex("".join(map(_CHECKSUM, records))))

    def seal(self, values: tuple[bytes, int]) -> tuple[bytes, int, str]:
        """Return (blob, raw payload size, sha256 of the compressed payload), given the compressed values
        stream and its raw size. Meant for a worker thread (compressing and hashing release the GIL)."""
        records = ",".join(f'"{name}":[{",".join(parts)}]' for name, parts in self._columns.items())
        header, header_bytes = _compress([f'{self._head},"records":{{{records}}}}}'.encode()])
        digests = b"".join(self._digests)  # SHA-256 output does not compress: stored as it is
        payload = header + values[0] + digests
        digest = hashlib.sha256(payload).hexdigest()
        blob = _MAGIC + b" " + digest.encode("ascii") + b"\n" + payload
        return blob, header_bytes + values[1] + len(digests), digest


def encode_checkpoint(
    bot_id: str, checkpoint_id: str, created_at: datetime, records: Sequence[_Record]
) -> tuple[bytes, int, str]:
    """Return (blob, raw payload size, sha256 of the compressed payload)."""
    writer = _HeaderWriter(bot_id, checkpoint_id, created_at)
    writer.add(records, [r.value for r in records])
    return writer.seal(_compress(_value_chunks([r.value for r in records])))


def decode_checkpoint(
    checkpoint_id: str, bot_id: str, blob: bytes, expected_sha256: str | None = None
) -> _Decoded:
    """Verify and parse a checkpoint blob (format 2, or 1); any mismatch is a ``StateIntegrityError`` naming
    the checkpoint."""
    where = f"checkpoint {checkpoint_id!r}"
    header, sep, payload = blob.partition(b"\n")
    parts = header.split(b" ")
    if not sep or len(parts) != 2 or parts[0] not in (_MAGIC, _MAGIC_V1):
        raise StateIntegrityError(f"{where}: malformed header (not a checkpoint, or corrupt)")
    stored = parts[1].decode("ascii", "replace")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != stored or (expected_sha256 is not None and expected_sha256 != stored):
        raise StateIntegrityError(f"{where}: checksum mismatch (the stored checkpoint is corrupt)")
    try:
        if parts[0] == _MAGIC_V1:
            body: Any = json.loads(zlib.decompress(payload))
            expected_format, values = 1, b""
        else:
            head, rest = _inflate(payload)
            values, digests = _inflate(rest)
            body = json.loads(head)
            expected_format = _FORMAT
        if body.get("format") != expected_format:
            raise ValueError(f"unknown format {body.get('format')!r}")
        if body["bot_id"] != bot_id or body["checkpoint_id"] != checkpoint_id:
            raise ValueError(f"belongs to {body['bot_id']!r} / {body['checkpoint_id']!r}")
        created_at = datetime.fromisoformat(body["created_at"])
        records = _records_v1(body) if expected_format == 1 else _records_v2(body, values, digests)
    except (zlib.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateIntegrityError(f"{where}: malformed: {exc}") from None
    for record in records:
        if codec.checksum(record.value) != record.checksum:
            raise StateIntegrityError(f"{where}: record {record.key!r} fails its checksum (corrupt)")
    return _Decoded(checkpoint_id, created_at, records)


def _inflate(data: bytes) -> tuple[bytes, bytes]:
    """Decompress the zlib stream at the start of ``data``; return (its content, the bytes after it)."""
    inflater = zlib.decompressobj()
    content = inflater.decompress(data)
    if not inflater.eof:
        raise ValueError("truncated zlib stream")
    return content, inflater.unused_data


def _expires(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _records_v1(body: Any) -> list[_Record]:
    return [
        _Record(key, category, Tier(tier), int(version), digest, value.encode("utf-8"), _expires(expires))
        for key, category, tier, version, digest, value, expires in body["records"]
    ]


def _records_v2(body: Any, values: bytes, digests: bytes) -> list[_Record]:
    columns = body["records"]
    if sorted(columns) != sorted(_COLUMNS):
        raise ValueError(f"record columns {sorted(columns)}")
    keys = columns["key"]
    if any(len(columns[name]) != len(keys) for name in _COLUMNS):
        raise ValueError("record columns of unequal length")
    if len(digests) != _DIGEST_BYTES * len(keys):
        raise ValueError(f"{len(digests)} bytes of checksums for {len(keys)} records")
    lengths = columns["length"]
    if any(type(n) is not int or n < 0 for n in lengths):
        raise ValueError("a value length is not a non-negative integer")
    ends = list(accumulate(lengths))
    if (ends[-1] if ends else 0) != len(values):
        raise ValueError(f"value lengths add up to {ends[-1] if ends else 0}, not {len(values)} bytes")
    hexed = digests.hex()
    width = 2 * _DIGEST_BYTES
    return [
        _Record(
            key,
            category,
            _TIERS[tier],
            int(version),
            hexed[index * width : (index + 1) * width],
            values[end - length : end],
            None if expires is None else datetime.fromisoformat(expires),
        )
        for index, (key, category, tier, version, length, end, expires) in enumerate(
            zip(
                keys,
                columns["category"],
                columns["tier"],
                columns["version"],
                lengths,
                ends,
                columns["expires_at"],
                strict=True,
            )
        )
    ]


class CheckpointStore:
    """Create, list, prune and restore checkpoints of one bot (``StateManager.checkpoints``)."""

    def __init__(self, settings: StateSettings, warm: WarmTier, cold: ColdTier, host: CheckpointHost) -> None:
        self._settings = settings
        self._bot = settings.bot_id
        self._warm = warm
        self._cold = cold
        # the state being checkpointed (the manager): its write lock, COLD reads and HOT cache; it publishes
        # system:s3_available if it changed (a COLD write was spooled) and rewrites it after a restore (the
        # checkpoint holds the value of its own time); check_writable raises when it is open read-only
        self._host = host
        self._read_cold = host.read_cold
        self._cache = host.cache
        self._after_cold_write = host.after_cold_write
        self._after_restore = host.after_restore
        self._check_writable = host.check_writable

    async def create_checkpoint(self, reason: str, *, background: bool = False) -> CheckpointInfo:
        """Snapshot all of the bot's records (one consistent WARM snapshot), store the compressed,
        checksummed blob in COLD and WARM, prune both to ``checkpoint_retention``; return its metadata.
        ``background``: the trading loop runs meanwhile -- read the snapshot in shorter pages, so the loop is
        never held up long (slower overall)."""
        self._check_writable("checkpoint")
        started = time.perf_counter()
        now = datetime.now(UTC)
        checkpoint_id = _new_id(now)
        with _collector_paused():
            page = _BACKGROUND_PAGE_ROWS if background else _SNAPSHOT_PAGE_ROWS
            blob, raw_bytes, digest, key_count = await self._snapshot_blob(checkpoint_id, now, page)
        info = CheckpointInfo(
            checkpoint_id=checkpoint_id,
            created_at=now,
            reason=reason,
            key_count=key_count,
            raw_bytes=raw_bytes,
            compressed_bytes=len(blob),
            sha256=digest,
            duration_seconds=time.perf_counter() - started,
        )
        await self._store(info, blob)
        await self._host.after_checkpoint(now.timestamp())  # local COLD segment copies it covers may go
        logger.info(
            "checkpoint %s (%s): %d keys, %d -> %d bytes in %.3fs",
            checkpoint_id,
            reason,
            info.key_count,
            raw_bytes,
            len(blob),
            info.duration_seconds,
        )
        await self.prune(self._settings.checkpoint_retention)
        if self._after_cold_write is not None:
            await self._after_cold_write()
        return info

    async def _store(self, info: CheckpointInfo, blob: bytes) -> None:
        """Store the blob in WARM and COLD at the same time (neither copy refers to the other). If the WARM
        insert fails (e.g. fenced), the COLD upload is cancelled; an object it left is pruned like any other."""
        upload = asyncio.ensure_future(self._cold.put_checkpoint(info.checkpoint_id + _OBJECT_SUFFIX, blob))
        try:
            await self._warm.put_checkpoint(info, blob)
        except BaseException:
            upload.cancel()
            await asyncio.wait([upload])
            if not upload.cancelled():
                upload.exception()  # superseded by the WARM error
            raise
        await upload

    async def _snapshot_blob(
        self, checkpoint_id: str, now: datetime, page_rows: int
    ) -> tuple[bytes, int, str, int]:
        """Read the snapshot, check every body, encode and seal it: (blob, raw bytes, sha256, keys)."""
        rows = await self._warm.snapshot_rows(now, EXCLUDED_CATEGORIES, page_rows)
        cold_rows = [row for row in rows if row.tier is Tier.COLD]
        bodies = await self._cold_bodies(cold_rows) if cold_rows else {}  # segments are immutable
        sha256 = hashlib.sha256
        # the values are compressed in a worker thread while this task checks them and encodes the header (a
        # missing body, compressed as nothing here, is refused below)
        found = [row.value if row.value is not None else bodies.get(row.key, b"") for row in rows]
        compressing = asyncio.ensure_future(asyncio.to_thread(_compress, _value_chunks(found)))
        try:
            writer = _HeaderWriter(self._bot, checkpoint_id, now)
            values: list[bytes] = []
            added = 0
            sliced = time.perf_counter()
            for start in range(0, len(rows), _STEP_RECORDS):
                for row in rows[start : start + _STEP_RECORDS]:
                    value = (
                        row.value if row.value is not None else bodies.get(row.key)
                    )  # COLD: from its segment
                    if value is None:
                        raise StateIntegrityError(f"state key {row.key!r}: WARM row without a body")
                    if sha256(value).hexdigest() != row.checksum:  # never checkpoint a corrupt record
                        codec.verify(row.key, value, row.checksum)  # raises, naming the key
                    values.append(value)
                if time.perf_counter() - sliced >= _SLICE_SECONDS:
                    writer.add(rows[added : len(values)], values[added:])
                    added = len(values)
                    await _step_aside()
                    sliced = time.perf_counter()
            writer.add(rows[added:], values[added:])
            compressed = await compressing
        finally:
            if not compressing.done():
                compressing.cancel()
        blob, raw_bytes, digest = await asyncio.to_thread(writer.seal, compressed)
        return blob, raw_bytes, digest, len(rows)

    async def _cold_bodies(self, rows: Sequence[WarmRow]) -> dict[str, bytes]:
        """Bodies of COLD rows from their segments. While the COLD store is down, segments still in the
        spool are read from there, and a body only the COLD store holds is taken from the newest WARM
        checkpoint holding the same key with the same checksum (a record's bytes never change for a
        checksum, and every checkpoint record is verified on decode). Raise if one is found nowhere."""
        by_segment: dict[str | None, list[WarmRow]] = {}
        for row in rows:
            by_segment.setdefault(row.cold_ref, []).append(row)
        out: dict[str, bytes] = {}
        missing: list[WarmRow] = []
        error: StateUnavailableError | None = None
        for members in by_segment.values():
            try:
                out.update(await self._read_cold(members))
            except StateUnavailableError as exc:
                error = exc
                missing.extend(members)
        if error is None:
            return out
        wanted = {row.key: row.checksum for row in missing}
        for info in await self._warm.list_checkpoints():
            found = await self._warm.get_checkpoint(info.checkpoint_id)
            if found is None:
                continue
            try:
                decoded = await asyncio.to_thread(
                    decode_checkpoint, info.checkpoint_id, self._bot, found[1], info.sha256
                )
            except StateIntegrityError:
                continue
            for record in decoded.records:
                if wanted.get(record.key) == record.checksum:
                    out[record.key] = record.value
                    del wanted[record.key]
            if not wanted:
                logger.info(
                    "checkpoint: %d COLD bodies taken from earlier checkpoints (COLD unavailable)",
                    len(missing),
                )
                return out
        raise error

    async def list_checkpoints(self) -> list[CheckpointInfo]:
        """This bot's checkpoints in WARM, newest first."""
        return await self._warm.list_checkpoints()

    async def prune(self, keep: int) -> list[str]:
        """Keep the ``keep`` newest checkpoints in WARM and, separately, in COLD; return the ids deleted."""
        self._check_writable("checkpoint prune")
        deleted = set(await self._warm.prune_checkpoints(keep))
        try:
            names = [n for n in await self._cold.list_checkpoints() if n.endswith(_OBJECT_SUFFIX)]
            for name in names[: max(0, len(names) - keep)]:  # names sort by time
                await self._cold.delete_checkpoint(name)
                deleted.add(name.removesuffix(_OBJECT_SUFFIX))
        except StateUnavailableError as exc:  # COLD degraded: its copies are pruned once it is back
            logger.info("COLD checkpoint prune skipped: %s", exc)
        return sorted(deleted)

    async def restore_checkpoint(
        self, checkpoint_id: str | Literal["latest"] = "latest", *, verify_only: bool = False
    ) -> RestoreReport:
        """Verify a checkpoint (blob SHA-256 and every record's checksum), then, unless ``verify_only``,
        make the bot's records exactly the checkpoint's: one WARM transaction + one HOT pipeline.

        The WARM copy is used; the COLD copy when WARM has none (e.g. a new database). Corruption is a
        ``StateIntegrityError`` naming the checkpoint, and nothing is written.
        """
        if not verify_only:
            self._check_writable("checkpoint restore")
        started = time.perf_counter()
        checkpoint_id, blob, expected, source = await self._load(checkpoint_id)
        restored = deleted = expired = 0
        with _collector_paused():  # tens of thousands of records in memory, as when one is taken
            decoded = await asyncio.to_thread(decode_checkpoint, checkpoint_id, self._bot, blob, expected)
            created_at, keys = decoded.created_at, len(decoded.records)
            if not verify_only:
                restored, deleted, expired = await self._write_back(decoded.records)
            del decoded
        if not verify_only and self._after_restore is not None:
            await self._after_restore()
        report = RestoreReport(
            checkpoint_id=checkpoint_id,
            created_at=created_at,
            verify_only=verify_only,
            keys_in_checkpoint=keys,
            keys_restored=restored,
            keys_deleted=deleted,
            keys_expired=expired,
            source=source,
            duration_seconds=time.perf_counter() - started,
        )
        (logger.info if verify_only else logger.warning)(
            "checkpoint %s %s (%s): %d keys, %d restored, %d deleted, %d expired in %.3fs",
            checkpoint_id,
            "verified" if verify_only else "restored",
            source,
            report.keys_in_checkpoint,
            restored,
            deleted,
            expired,
            report.duration_seconds,
        )
        return report

    async def _load(self, checkpoint_id: str) -> tuple[str, bytes, str | None, str]:
        """Return (id, blob, sha256 recorded in WARM or None, source)."""
        if checkpoint_id == "latest":
            infos = await self._warm.list_checkpoints()
            if infos:
                checkpoint_id = infos[0].checkpoint_id
            else:
                names = [n for n in await self._cold.list_checkpoints() if n.endswith(_OBJECT_SUFFIX)]
                if not names:
                    raise StateError(f"bot {self._bot!r} has no checkpoint to restore")
                checkpoint_id = names[-1].removesuffix(_OBJECT_SUFFIX)
        _check_id(checkpoint_id)
        found = await self._warm.get_checkpoint(checkpoint_id)
        if found is not None:
            info, blob = found
            return checkpoint_id, blob, info.sha256, "warm"
        names = await self._cold.list_checkpoints()
        if checkpoint_id + _OBJECT_SUFFIX not in names:
            raise StateError(f"checkpoint {checkpoint_id!r} of bot {self._bot!r} not found")
        return checkpoint_id, await self._cold.get_checkpoint(checkpoint_id + _OBJECT_SUFFIX), None, "cold"

    async def _write_back(self, records: Sequence[_Record]) -> tuple[int, int, int]:
        async with self._host.writing():
            now = datetime.now(UTC)
            live = [r for r in records if r.expires_at is None or r.expires_at > now]
            segment: str | None = None
            cold = [r for r in live if r.tier is Tier.COLD]
            if cold:  # COLD first, as in every batch: a failed WARM commit leaves an unreferenced segment
                segment = new_segment_name(now)
                segment_records = [ColdRecord(r.key, None, r.checksum, r.category, r.value) for r in cold]
                await self._cold.put_segment(segment, encode_segment(self._bot, segment_records))
            rows = [
                WarmRestore(
                    r.key,
                    r.category,
                    r.tier,
                    r.version,
                    r.checksum,
                    None if r.tier is Tier.COLD else r.value,
                    segment if r.tier is Tier.COLD else None,
                    r.expires_at,
                )
                for r in live
            ]
            stored, deleted = await self._warm.replace_rows(rows, EXCLUDED_CATEGORIES, now)
            puts: list[HotRecord] = []
            evict = list(deleted)
            for r in live:
                version, tier = stored[r.key]
                if tier is Tier.HOT:
                    ttl_ms = None
                    if r.expires_at is not None:
                        ttl_ms = max(1, int((r.expires_at - now).total_seconds() * 1000))
                    puts.append(HotRecord(r.key, version, r.checksum, r.value, now, ttl_ms))
                else:
                    evict.append(r.key)
            await self._cache(puts, evict)  # HOT down: the keys become dirty, WARM serves them
        return len(live), len(deleted), len(records) - len(live)
