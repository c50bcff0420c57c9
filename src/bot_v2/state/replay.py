"""Replaying the WARM journal once WARM answers again -- and, when the database came back without this bot's
data, restoring the newest checkpoint first (the rules: ``outage.py``'s docstring, DESIGN.md "Recovery").

Why a module of its own: ``WarmOutage`` decides *whether* to replay (the lease check, a newer holder, a lost
database); this is *how*, and it has its own rules -- the newest checkpoint taken before the journal began,
the data-loss window it leaves, the replay marker ``system:journal_replay`` that makes a second replay skip
what the first applied, one WARM transaction per batch through the normal commit path, the journal truncated
only once every batch is in. It writes under the manager's write lock and caches through ``cache.py`` like
every batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bot_v2.errors import StateUnavailableError
from bot_v2.state import codec, durable
from bot_v2.state.journal import Journal, JournalRecord, now_ms
from bot_v2.state.models import HotRecord, StateCategory, Tier, WarmRecovery
from bot_v2.state.settings import StateSettings
from bot_v2.state.tiers.cold import ColdTier
from bot_v2.state.tiers.warm import WarmTier

logger = logging.getLogger(__name__)

MARKER_KEY = "system:journal_replay"
_CHECKPOINT_SUFFIX = ".ckpt"


class JournalReplay:
    """The lost-database restore and the journal replay of one ``WarmOutage``."""

    def __init__(
        self,
        settings: StateSettings,
        warm: WarmTier,
        cold: ColdTier,
        journal: Journal,
        *,
        writing: Callable[[], Any],
        cache: Callable[[Sequence[HotRecord], Sequence[str]], Awaitable[None]],
        restore_checkpoint: Callable[[str], Awaitable[Any]],
        name: str,
    ) -> None:
        self._settings = settings
        self._bot = settings.bot_id
        self._warm = warm
        self._cold = cold
        self.journal = journal
        self._writing = writing  # the manager's write lock (an async context manager)
        self._cache = cache
        self._restore_checkpoint = restore_checkpoint
        self._name = name  # "PostgreSQL" or "WARM (<backend>)": the log prefix the runbook greps

    async def restore_newest_checkpoint(self) -> tuple[str | None, float | None]:
        """Restore the newest checkpoint (WARM or COLD copy); return its id and the data loss estimate."""
        ids = [c.checkpoint_id for c in await self._warm.list_checkpoints()]
        try:
            ids += [
                n.removesuffix(_CHECKPOINT_SUFFIX)
                for n in await self._cold.list_checkpoints()
                if n.endswith(_CHECKPOINT_SUFFIX)
            ]
        except StateUnavailableError as exc:
            logger.warning("%s recovery: COLD checkpoints not listed: %s", self._name, exc)
        journal_start = _from_ms(self.journal.opened_ms)
        if journal_start is not None:  # one taken since cannot hold the journaled writes (nor the lost data)
            ids = [i for i in ids if _created(i) is None or _created(i) < journal_start]  # type: ignore[operator]
        if not ids:
            logger.error(
                "%s recovery: no checkpoint to restore: data_loss_estimate=unknown window=..%s "
                "(everything before the journal began is lost)",
                self._name,
                journal_start.isoformat() if journal_start else "now",
            )
            return None, None
        report = await self._restore_checkpoint(max(ids))
        created: datetime = report.created_at
        end = journal_start or datetime.now(UTC)
        loss = max(0.0, (end - created).total_seconds())
        logger.warning(
            "%s recovery: Restored from checkpoint %s (created %s, %d keys)",
            self._name,
            report.checkpoint_id,
            created.isoformat(),
            report.keys_restored,
        )
        logger.error(
            "%s recovery: data_loss_estimate=%.3fs window=%s..%s (writes after the checkpoint and "
            "before the journal began are in neither)",
            self._name,
            loss,
            created.isoformat(),
            end.isoformat(),
        )
        return report.checkpoint_id, loss

    async def replay(
        self,
        index: dict[str, JournalRecord],
        detected: datetime | None,
        started: float,
        lost: bool,
        checkpoint_id: str | None,
        loss: float | None,
    ) -> WarmRecovery:
        """Replay ``index`` (key -> latest record) in journal order, batch by batch, under the write lock;
        then truncate the journal and clear ``index``."""
        async with self._writing():
            started = time.perf_counter()  # the replay proper: what a direct write of the batches would cost
            journaled = self.journal.records
            marker = await self._marker()
            todo = sorted(index.values(), key=lambda r: r.seq)
            skipped = sum(1 for r in todo if marker is not None and r.seq <= marker)
            todo = [r for r in todo if marker is None or r.seq > marker]
            size = max(1, self._settings.journal_replay_batch)
            batches = 0
            for start in range(0, len(todo), size):
                await self._apply(todo[start : start + size])
                batches += 1
            await self.journal.truncate()
            index.clear()
        now = datetime.now(UTC)
        record = WarmRecovery(
            detected_at=detected,
            recovered_at=now,
            outage_seconds=None if detected is None else (now - detected).total_seconds(),
            replay_seconds=time.perf_counter() - started,
            records_journaled=journaled,
            records_replayed=len(todo),
            records_skipped=skipped,
            batches=batches,
            database_lost=lost,
            checkpoint_id=checkpoint_id,
            data_loss_estimate_seconds=loss,
        )
        logger.warning(
            "%s recovery completed: journal replayed, %d records (%d keys, %d already applied) in %d batches "
            "after %.3f s down, journal truncated, writes go to WARM again, %s elapsed_ms: %.1f",
            self._name,
            journaled,
            len(todo) + skipped,
            skipped,
            batches,
            record.outage_seconds or 0.0,
            f"database was lost: Restored from checkpoint {checkpoint_id}, data_loss_estimate={loss:.3f}s"
            if lost and loss is not None
            else (
                "database was lost, no checkpoint: data_loss_estimate=unknown"
                if lost
                else "data_loss_estimate=0 records"
            ),
            record.replay_seconds * 1000,
        )
        return record

    async def _marker(self) -> int | None:
        """The last sequence number of THIS journal already applied (None: none)."""
        rows = await self._warm.get_many([MARKER_KEY], datetime.now(UTC))
        row = rows.get(MARKER_KEY)
        if row is None or row.value is None:
            return None
        value = codec.decode_value(row.value, MARKER_KEY)
        if not isinstance(value, dict) or value.get("journal") != self.journal.journal_id:
            return None
        seq = value.get("seq")
        return seq if isinstance(seq, int) else None

    async def _apply(self, batch: Sequence[JournalRecord]) -> None:
        """One replay batch: deletes, then ONE commit of the puts + the marker (one WARM transaction)."""
        now = datetime.now(UTC)
        at = now_ms()
        deletes = [r.key for r in batch if r.op != "put" or (r.expires_ms is not None and r.expires_ms <= at)]
        if deletes:
            await self._warm.delete_many(deletes, now)
        writes: list[durable.Prepared] = []
        for r in batch:
            if r.key in deletes or r.value is None:
                continue
            codec.verify(r.key, r.value, r.checksum)  # the CRC said the frame is whole; this says it is ours
            category = StateCategory(r.category)
            ttl = None if r.expires_ms is None else max(1, r.expires_ms - at)
            writes.append(durable.Prepared(r.key, category, category.tier, r.value, r.checksum, ttl))
        marker = codec.encode_value({"journal": self.journal.journal_id, "seq": batch[-1].seq}, MARKER_KEY)
        writes.append(
            durable.Prepared(
                MARKER_KEY, StateCategory.METADATA, Tier.WARM, marker, codec.checksum(marker), None
            )
        )
        committed = await durable.commit(writes, self._cold, self._warm, self._bot)
        await self._cache(committed.puts, [*committed.evict, *deletes])


def _created(checkpoint_id: str) -> datetime | None:
    """The creation time a checkpoint id starts with (``20260101T000000000000Z-...``)."""
    try:
        return datetime.strptime(checkpoint_id.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
