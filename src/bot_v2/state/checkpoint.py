"""Checkpoints: a consistent, compressed, checksummed snapshot of all of a bot's state, and its restore.

A checkpoint is every live record of the bot (categories in ``EXCLUDED_CATEGORIES`` aside) read from ONE
WARM snapshot (PostgreSQL: a REPEATABLE READ read-only transaction through a cursor; SQLite: one read
transaction on the checkpointer's connection), COLD bodies fetched from their immutable segments, encoded
canonically (sorted-key compact JSON), zlib-compressed and stored as one blob::

    PBCKPT1 <sha256 of the compressed payload, hex>\\n<zlib payload>

in WARM (``state_checkpoints``) and as one object in COLD (``checkpoints/<id>.ckpt``), then pruned to
``StateSettings.checkpoint_retention`` in each. Taking one never holds the manager lock, so the trading
loop keeps writing meanwhile.

A restore verifies first (blob SHA-256, format, bot, every record's checksum), then writes back in one
batch under the manager lock: one WARM transaction that upserts every record of the checkpoint and deletes
every other record of the bot (readers never see an empty or half state), then one HOT pipeline. A restored
record gets ``version = max(current, checkpoint) + 1`` with the checkpoint's value: versions only grow, so
caches and coherence checks stay correct. Anything that fails verification is a ``StateIntegrityError``
naming the checkpoint, and nothing is written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

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
_MAGIC = b"PBCKPT1"
_FORMAT = 1
_OBJECT_SUFFIX = ".ckpt"
_ID = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")
_COMPRESS_LEVEL = 6
_SNAPSHOT_PAGE_ROWS = 1000


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


def encode_checkpoint(
    bot_id: str, checkpoint_id: str, created_at: datetime, records: Sequence[_Record]
) -> tuple[bytes, int, str]:
    """Return (blob, raw payload size, sha256 of the compressed payload)."""
    body = {
        "format": _FORMAT,
        "bot_id": bot_id,
        "checkpoint_id": checkpoint_id,
        "created_at": created_at.isoformat(),
        "records": [
            [
                r.key,
                r.category,
                r.tier.value,
                r.version,
                r.checksum,
                r.value.decode("utf-8"),
                None if r.expires_at is None else r.expires_at.isoformat(),
            ]
            for r in records
        ],
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    payload = zlib.compress(raw, _COMPRESS_LEVEL)
    digest = hashlib.sha256(payload).hexdigest()
    return _MAGIC + b" " + digest.encode("ascii") + b"\n" + payload, len(raw), digest


def decode_checkpoint(
    checkpoint_id: str, bot_id: str, blob: bytes, expected_sha256: str | None = None
) -> _Decoded:
    """Verify and parse a checkpoint blob; any mismatch is a ``StateIntegrityError`` naming the checkpoint."""
    where = f"checkpoint {checkpoint_id!r}"
    header, sep, payload = blob.partition(b"\n")
    parts = header.split(b" ")
    if not sep or len(parts) != 2 or parts[0] != _MAGIC:
        raise StateIntegrityError(f"{where}: malformed header (not a checkpoint, or corrupt)")
    stored = parts[1].decode("ascii", "replace")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != stored or (expected_sha256 is not None and expected_sha256 != stored):
        raise StateIntegrityError(f"{where}: checksum mismatch (the stored checkpoint is corrupt)")
    try:
        body: Any = json.loads(zlib.decompress(payload))
        if body.get("format") != _FORMAT:
            raise ValueError(f"unknown format {body.get('format')!r}")
        if body["bot_id"] != bot_id or body["checkpoint_id"] != checkpoint_id:
            raise ValueError(f"belongs to {body['bot_id']!r} / {body['checkpoint_id']!r}")
        created_at = datetime.fromisoformat(body["created_at"])
        records = [
            _Record(
                key,
                category,
                Tier(tier),
                int(version),
                digest,
                value.encode("utf-8"),
                None if expires is None else datetime.fromisoformat(expires),
            )
            for key, category, tier, version, digest, value, expires in body["records"]
        ]
    except (zlib.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateIntegrityError(f"{where}: malformed: {exc}") from None
    for record in records:
        if codec.checksum(record.value) != record.checksum:
            raise StateIntegrityError(f"{where}: record {record.key!r} fails its checksum (corrupt)")
    return _Decoded(checkpoint_id, created_at, records)


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

    async def create_checkpoint(self, reason: str) -> CheckpointInfo:
        """Snapshot all of the bot's records (one consistent WARM snapshot), store the compressed,
        checksummed blob in COLD and WARM, prune both to ``checkpoint_retention``; return its metadata."""
        self._check_writable("checkpoint")
        started = time.perf_counter()
        now = datetime.now(UTC)
        rows = await self._warm.snapshot_rows(now, EXCLUDED_CATEGORIES, _SNAPSHOT_PAGE_ROWS)
        cold_rows = [row for row in rows if row.tier is Tier.COLD]
        bodies = await self._cold_bodies(cold_rows) if cold_rows else {}  # segments are immutable
        records: list[_Record] = []
        for row in rows:
            value = bodies[row.key] if row.tier is Tier.COLD else row.value
            if value is None:
                raise StateIntegrityError(f"state key {row.key!r}: WARM row without a body")
            codec.verify(row.key, value, row.checksum)  # never checkpoint a corrupt record
            records.append(
                _Record(row.key, row.category, row.tier, row.version, row.checksum, value, row.expires_at)
            )
        checkpoint_id = _new_id(now)
        blob, raw_bytes, digest = await asyncio.to_thread(
            encode_checkpoint, self._bot, checkpoint_id, now, records
        )
        await self._cold.put_checkpoint(checkpoint_id + _OBJECT_SUFFIX, blob)
        info = CheckpointInfo(
            checkpoint_id=checkpoint_id,
            created_at=now,
            reason=reason,
            key_count=len(records),
            raw_bytes=raw_bytes,
            compressed_bytes=len(blob),
            sha256=digest,
            duration_seconds=time.perf_counter() - started,
        )
        await self._warm.put_checkpoint(info, blob)
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
        decoded = await asyncio.to_thread(decode_checkpoint, checkpoint_id, self._bot, blob, expected)
        restored = deleted = expired = 0
        if not verify_only:
            restored, deleted, expired = await self._write_back(decoded.records)
            if self._after_restore is not None:
                await self._after_restore()
        report = RestoreReport(
            checkpoint_id=checkpoint_id,
            created_at=decoded.created_at,
            verify_only=verify_only,
            keys_in_checkpoint=len(decoded.records),
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
