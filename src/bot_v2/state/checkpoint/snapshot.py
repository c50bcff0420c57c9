"""Taking a checkpoint's snapshot: read it page by page, check every record, encode and seal the blob.

The read is ONE consistent WARM snapshot (``WarmTier.snapshot_pages``) delivered by column, a page at a time
when asked for: a background checkpoint steps aside between pages while a trading cycle keeps the loop busy,
so the read paces itself instead of competing with the cycle (PostgreSQL decodes a page on the event loop;
SQLite reads it on a thread that holds the GIL while it builds the page). COLD bodies come from their
immutable segments. Then, with the values compressed in a worker thread meanwhile (zlib releases the GIL),
every value is checked against its checksum and the header encoded, in slices of loop time (``pacing``);
the header is compressed and the blob hashed in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from datetime import datetime
from typing import NamedTuple, cast

from bot_v2.errors import StateIntegrityError
from bot_v2.state import codec
from bot_v2.state.checkpoint.format import Columns, HeaderWriter, compress, value_chunks
from bot_v2.state.checkpoint.pacing import STEP_RECORDS, Slicer, step_aside
from bot_v2.state.models import Tier, WarmRow
from bot_v2.state.tiers.warm import WarmTier

#: Rows per snapshot page. PostgreSQL turns each page into records on the event loop in one go, SQLite on a
#: thread holding the GIL, so a background checkpoint (beside the trading loop) reads short pages, about a
#: tenth of a millisecond each; an awaited one (at shutdown, ``--checkpoint``) takes fewer round trips.
SNAPSHOT_PAGE_ROWS = 1000
BACKGROUND_PAGE_ROWS = 100

ColdBodies = Callable[[Sequence[WarmRow]], Awaitable[dict[str, bytes]]]


class Sealed(NamedTuple):
    """A sealed checkpoint: the blob, its raw payload size, its SHA-256 and how many records it holds."""

    blob: bytes
    raw_bytes: int
    digest: str
    keys: int


async def take_snapshot(
    warm: WarmTier,
    exclude_categories: Sequence[str],
    cold_bodies: ColdBodies,
    bot_id: str,
    checkpoint_id: str,
    now: datetime,
    *,
    background: bool,
) -> Sealed:
    """Read the snapshot, check every body, encode and seal it. ``background``: the trading loop runs
    meanwhile: short pages, and the read steps aside while the loop is busy."""
    records = await _read(warm, exclude_categories, cold_bodies, now, background=background)
    return await _seal(records, bot_id, checkpoint_id, now)


async def _read(
    warm: WarmTier,
    exclude_categories: Sequence[str],
    cold_bodies: ColdBodies,
    now: datetime,
    *,
    background: bool,
) -> Columns:
    """The snapshot's records by column, COLD bodies filled in."""
    keys: list[str] = []
    categories: list[str] = []
    tiers: list[str] = []
    versions: list[int] = []
    checksums: list[str] = []
    values: list[bytes | None] = []
    cold_refs: list[str | None] = []
    expires_at: list[datetime | None] = []
    in_cold = False
    page_rows = BACKGROUND_PAGE_ROWS if background else SNAPSHOT_PAGE_ROWS
    async with aclosing(warm.snapshot_pages(now, exclude_categories, page_rows)) as pages:
        async for page in pages:
            keys += page.keys
            categories += page.categories
            tiers += page.tiers
            versions += page.versions
            checksums += page.checksums
            values += page.values
            cold_refs += page.cold_refs
            expires_at += page.expires_at
            in_cold = in_cold or None in page.values
            if background:
                await step_aside()
    if in_cold:  # bodies from their segments (immutable: reading them after the snapshot is consistent)
        cold = [i for i, value in enumerate(values) if value is None]
        rows = [
            # updated_at is not read by the snapshot, nor needed by a COLD read
            WarmRow(
                keys[i],
                categories[i],
                Tier(tiers[i]),
                versions[i],
                checksums[i],
                None,
                cold_refs[i],
                now,
                expires_at[i],
            )
            for i in cold
        ]
        bodies = await cold_bodies(rows)
        for i in cold:
            values[i] = bodies.get(keys[i])
            if values[i] is None:
                raise StateIntegrityError(f"state key {keys[i]!r}: WARM row without a body")
    bodies_found = cast("list[bytes]", values)  # no None left
    return Columns(keys, categories, tiers, versions, checksums, bodies_found, expires_at)


async def _seal(records: Columns, bot_id: str, checkpoint_id: str, now: datetime) -> Sealed:
    """Check every value against its checksum and encode the header on the loop, a slice at a time, while a
    worker thread compresses the values; then seal the blob in a worker thread."""
    values, checksums = records.values, records.checksums
    compressing = asyncio.ensure_future(asyncio.to_thread(compress, value_chunks(values)))
    try:
        writer = HeaderWriter(bot_id, checkpoint_id, now)
        sha256 = hashlib.sha256
        added = 0
        slicer = Slicer()
        for start in range(0, len(values), STEP_RECORDS):
            stop = start + STEP_RECORDS
            # never checkpoint a corrupt record: the step's digests computed and compared in C
            if [h.hexdigest() for h in map(sha256, values[start:stop])] != checksums[start:stop]:
                for key, value, expected in zip(
                    records.keys[start:stop], values[start:stop], checksums[start:stop], strict=True
                ):
                    codec.verify(key, value, expected)  # raises, naming the key
            if slicer.due:
                writer.add(records.slice(added, stop))
                added = stop
                await slicer.step_aside()
        writer.add(records.slice(added, len(values)))
        compressed = await compressing
    finally:
        if not compressing.done():
            compressing.cancel()
    blob, raw_bytes, digest = await asyncio.to_thread(writer.seal, compressed)
    return Sealed(blob, raw_bytes, digest, len(records))
