"""Checkpoints: a consistent, compressed, checksummed snapshot of all of a bot's state, and its restore.

A checkpoint is every live record of the bot (categories in ``EXCLUDED_CATEGORIES`` aside) read from ONE
WARM snapshot, COLD bodies fetched from their immutable segments, every body checked against its checksum,
encoded canonically into one blob (``format``: a columnar JSON header, the values as they are, binary
checksums, zlib). The blob is stored in WARM (``state_checkpoints``) and as one object in COLD
(``checkpoints/<id>.ckpt``), then pruned to ``StateSettings.checkpoint_retention`` in each.

Taking one runs beside the trading loop (``orchestration/checkpointing.py`` runs the periodic one as a
background task) and never blocks it (``snapshot``, ``pacing``):

* it never holds the manager's write lock (only publishing ``system:s3_available``, when that changed, takes it
  for one single-key batch), so the loop keeps writing; the snapshot reads on its own connection;
* ``background=True`` reads the snapshot in short pages, asked for one at a time, stepping aside while other
  tasks (a cycle) keep the loop busy; records travel by column, never as an object per row;
* its CPU work on the event loop is cut into slices of about ``pacing.SLICE_SECONDS`` that step aside the same
  way; the values are compressed in a worker thread meanwhile (zlib releases the GIL), the header and the
  hash too;
* Python's cyclic garbage collector is paused while the snapshot is in memory (``pacing.collector_paused``).

A restore verifies first (blob SHA-256, format, bot, every record's checksum), then writes back in one
batch under the manager lock: one WARM transaction that upserts every record of the checkpoint and deletes
every other record of the bot (readers never see an empty or half state), then one HOT pipeline. A restored
record gets ``version = max(current, checkpoint) + 1`` with the checkpoint's value: versions only grow, so
caches and coherence checks stay correct. Anything that fails verification is a ``StateIntegrityError``
naming the checkpoint, and nothing is written.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast

from bot_v2.errors import StateError, StateIntegrityError, StateUnavailableError
from bot_v2.state.checkpoint.format import Columns, decode_checkpoint, encode_checkpoint
from bot_v2.state.checkpoint.pacing import collector_paused
from bot_v2.state.checkpoint.snapshot import take_snapshot
from bot_v2.state.models import (
    CheckpointInfo,
    ColdRecord,
    HotRecord,
    RestoreReport,
    RestoreRows,
    StateCategory,
    Tier,
    WarmRow,
)
from bot_v2.state.ports import CheckpointHost
from bot_v2.state.settings import StateSettings
from bot_v2.state.tiers.cold import ColdTier, encode_segment, new_segment_name
from bot_v2.state.tiers.warm import WarmTier

__all__ = [
    "EXCLUDED_CATEGORIES",
    "CheckpointStore",
    "checkpoint_due",
    "decode_checkpoint",
    "encode_checkpoint",
]

logger = logging.getLogger(__name__)

EXCLUDED_CATEGORIES: tuple[str, ...] = (StateCategory.CHECKPOINTS.value,)
_OBJECT_SUFFIX = ".ckpt"
_ID = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")


def checkpoint_due(last: datetime | None, now: datetime, interval_seconds: float) -> bool:
    """Whether a periodic checkpoint is due: never taken, or ``interval_seconds`` have passed since ``last``."""
    return last is None or (now - last).total_seconds() >= interval_seconds


def _new_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}"


def _check_id(checkpoint_id: str) -> str:
    if not isinstance(checkpoint_id, str) or not _ID.match(checkpoint_id):
        raise StateError(
            f"checkpoint id {checkpoint_id!r} is not valid (expected e.g. 20260101T000000000000Z-…)"
        )
    return checkpoint_id


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
        with collector_paused():
            blob, raw_bytes, digest, key_count = await take_snapshot(
                self._warm,
                EXCLUDED_CATEGORIES,
                self._cold_bodies,
                self._bot,
                checkpoint_id,
                now,
                background=background,
            )
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
        with collector_paused():  # tens of thousands of records in memory, as when one is taken
            decoded = await asyncio.to_thread(decode_checkpoint, checkpoint_id, self._bot, blob, expected)
            created_at, keys = decoded.created_at, len(decoded.columns)
            if not verify_only:
                restored, deleted, expired = await self._write_back(decoded.columns)
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

    async def _write_back(self, records: Columns) -> tuple[int, int, int]:
        """Make the bot's records exactly the checkpoint's (decoded: ``tiers`` are ``Tier`` members): one WARM
        transaction, then HOT, holding off the manager's other writes. The rows go to WARM by column."""
        async with self._host.writing():
            now = datetime.now(UTC)
            total = len(records)
            # records with a TTL: those expired since the checkpoint are not restored
            if any(records.expires_at):
                live = [i for i, expires in enumerate(records.expires_at) if expires is None or expires > now]
                if len(live) < total:
                    records = _select(records, live)
            keys, categories, versions = records.keys, records.categories, records.versions
            tiers = cast("Sequence[Tier]", records.tiers)  # decoded: Tier members
            checksums, values, expires_at = records.checksums, records.values, records.expires_at
            bodies: Sequence[bytes | None] = values
            cold_refs: list[str | None] = [None] * len(keys)
            cold = [i for i, tier in enumerate(tiers) if tier is Tier.COLD]
            if cold:  # COLD first, as in every batch: a failed WARM commit leaves an unreferenced segment
                segment = new_segment_name(now)
                segment_records = [
                    ColdRecord(keys[i], None, checksums[i], categories[i], values[i]) for i in cold
                ]
                await self._cold.put_segment(segment, encode_segment(self._bot, segment_records))
                in_warm: list[bytes | None] = list(values)
                for i in cold:
                    in_warm[i], cold_refs[i] = None, segment
                bodies = in_warm
            rows = RestoreRows(keys, categories, tiers, versions, checksums, bodies, cold_refs, expires_at)
            stored, deleted = await self._warm.replace_rows(rows, EXCLUDED_CATEGORIES, now)
            puts: list[HotRecord] = []
            evict = list(deleted)
            hot = Tier.HOT
            for key, checksum, value, expires in zip(keys, checksums, values, expires_at, strict=True):
                version, tier = stored[key]
                if tier is hot:
                    ttl_ms = None
                    if expires is not None:
                        ttl_ms = max(1, int((expires - now).total_seconds() * 1000))
                    puts.append(HotRecord(key, version, checksum, value, now, ttl_ms))
                else:
                    evict.append(key)
            await self._cache(puts, evict)  # HOT down: the keys become dirty, WARM serves them
        return len(keys), len(deleted), total - len(keys)


def _select(records: Columns, indexes: Sequence[int]) -> Columns:
    """The records at ``indexes``, by column."""
    columns: list[Sequence[Any]] = [
        records.keys,
        records.categories,
        records.tiers,
        records.versions,
        records.checksums,
        records.values,
        records.expires_at,
    ]
    return Columns(*[[column[i] for i in indexes] for column in columns])
