"""``WarmOutage``: what the ``StateManager`` does while WARM (PostgreSQL) does not answer, and after.

DESIGN.md "Recovery": with PostgreSQL down the bot keeps running on HOT and a local journal
(``journal.py``), then replays the journal when the database is back. The rules:

* The first WARM write that fails as *unavailable* (or a leftover journal at start) starts journaling: that
  batch and every later durable write (puts and deletes, intents first as the loop writes them first) is
  appended to the journal -- one ``write`` + one ``fsync`` per batch -- and no write goes to WARM until the
  journal is replayed, so the journal is always the newest state of the keys it holds. Journaled keys are
  evicted from HOT and served from the journal's in-memory index (``lookup``), which holds the latest record
  of each key.
* A probe (``read_lease``, on a timer) notices WARM answering. Before anything is replayed the lease is
  checked: a newer epoch in the database means another process took over -- nothing is replayed, every later
  write raises ``FencedError`` (the loop stops) and the journal stays on disk for the operator. Our epoch:
  the orchestration's gate renews the lease first (same epoch), then the replay runs.
* A database that came back WITHOUT this bot's lease row, or with an older epoch, was restored from an old
  backup (or is a new, empty one): the gate takes the lease again, the newest checkpoint (WARM or COLD,
  whichever is newer) is restored, then the journal is replayed on top, and ``data_loss_estimate`` names the
  window between the checkpoint and the first journaled write, which neither covers. The lease is taken
  again ABOVE every epoch this process knows of (``known_epoch``: ours, the journal's records, the row that
  came back), never at 1 or the restored row's + 1: a zombie writer still holding an old, higher epoch is
  then fenced like any older holder.
* Replay (``replay.py``): the latest record of each key, in journal order, in batches of
  ``journal_replay_batch`` rows. Each batch is ONE WARM transaction through the normal commit path (fenced
  with our epoch) that also writes the replay marker ``system:journal_replay`` = {journal id, last sequence
  number}; a replay that finds the marker skips what it already applied, so replaying twice (a crash
  mid-replay, a failed batch) applies each record once. WARM gives each replayed row the next version
  (old + 1), so no row's version ever goes backwards, and only the lease holder of the journal's epoch
  replays it: no newer writer can have written those keys meanwhile. Then the journal is truncated and
  writes go to WARM again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from bot_v2.errors import FencedError, StateUnavailableError
from bot_v2.state import durable
from bot_v2.state.journal import FORMAT, Journal, JournalRecord, now_ms
from bot_v2.state.models import HotRecord, WarmRecovery, WarmState
from bot_v2.state.replay import MARKER_KEY, JournalReplay
from bot_v2.state.settings import StateSettings
from bot_v2.state.supervisor import ProbePolicy, TierSupervisor
from bot_v2.state.tiers.cold import ColdTier
from bot_v2.state.tiers.warm import WarmTier

logger = logging.getLogger(__name__)


#: ``renew``: WARM is back with our epoch -- renew the lease (same epoch) and return it, or None if not yet.
#: ``reacquire``: WARM came back without our lease -- take it again and return the new epoch (None: cannot).
LeaseGate = Callable[[Literal["renew", "reacquire"]], Awaitable[int | None]]


class WarmOutage:
    """The journal, its index, the WARM probe and the replay of one ``StateManager``."""

    def __init__(
        self,
        settings: StateSettings,
        warm: WarmTier,
        cold: ColdTier,
        *,
        writing: Callable[[], Any],
        cache: Callable[[Sequence[HotRecord], Sequence[str]], Awaitable[None]],
        epoch: Callable[[], int | None],
        restore_checkpoint: Callable[[str], Awaitable[Any]],
        repair_hot: Callable[[], Awaitable[None]],
        may_probe: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._bot = settings.bot_id
        self._warm = warm
        self._cache = cache
        self._epoch = epoch
        self._repair_hot = repair_hot
        self.journal = Journal(Path(settings.journal_dir) / settings.bot_id)
        self._replayer = JournalReplay(
            settings,
            warm,
            cold,
            self.journal,
            writing=writing,
            cache=cache,
            restore_checkpoint=restore_checkpoint,
            name=self._name,
        )
        self._index: dict[str, JournalRecord] = {}  # key -> its latest journaled record
        self.gate: LeaseGate | None = None
        self.superseded: str | None = None  # why the journal must not be replayed (a newer holder)
        self._lost_logged = False  # "came back without this bot's data" said once per outage
        self._unreachable = False  # a WARM call or probe failed since the last recovery
        self._seen_epoch = 0  # the epoch of the lease row the last recovery read
        interval = settings.warm_probe_interval_seconds
        self.supervisor: TierSupervisor[WarmState, WarmRecovery] = TierSupervisor(
            "WARM",
            ProbePolicy(interval, interval, settings.warm_probe_timeout_seconds, 60.0, watch=True),
            (WarmState.UP, WarmState.JOURNALING, WarmState.REPLAYING),
            ping=self._ping,
            recover=self._recover,
            warn_down=self._warn_down,
            warn_still_down=self._warn_still_down,
            may_probe=lambda: may_probe() and self.superseded is None,
            task_name="warm-probe",
            recovery_name="replaying the WARM journal",
        )

    # --- state ------------------------------------------------------------------------------------

    @property
    def journaling(self) -> bool:
        """Durable writes go to the journal (WARM down, being replayed, or a journal left to replay)."""
        return not self.supervisor.up

    @property
    def down(self) -> bool:
        """WARM failed the last call or probe (not merely a leftover journal, not while it is replayed): reads
        of keys HOT and the journal do not hold fail at once instead of waiting for it."""
        return self._unreachable and self.supervisor.degraded

    @property
    def records(self) -> int:
        return self.journal.records

    def known_epoch(self) -> int:
        """The highest lease epoch this process has seen: its own, the journal's records and the lease row
        the last recovery read (0: none). A lease taken again after a lost database starts above it."""
        epochs = [self._epoch() or 0, self._seen_epoch]
        epochs += [r.epoch for r in self._index.values() if r.epoch is not None]
        return max(epochs)

    def check_not_superseded(self) -> None:
        if self.superseded is not None:
            raise FencedError(f"bot {self._bot!r}: {self.superseded}; this process writes nothing more")

    def load(self, *, writer: bool) -> None:
        """Read a journal left by an earlier run into the index (a ``writer`` cuts a torn tail, a reader only
        skips it); journaling until it is replayed (``take_ownership`` / ``replay_now``)."""
        self._index.clear()
        scan = self.journal.open(cut=writer)
        for record in scan.records:
            self._index.pop(record.key, None)
            self._index[record.key] = record
        if scan.records:
            logger.warning(
                "%s recovery: WARM journal %s holds %d records of an earlier run (epoch %s); "
                "they are replayed when this process holds the lease",
                self._name,
                self.journal.path,
                len(scan.records),
                scan.records[-1].epoch,
            )
            self.supervisor.failed(
                StateUnavailableError("WARM journal of an earlier run not replayed yet"), log=False
            )

    async def close(self) -> None:
        """Stop probing; let a journal unlink still running finish."""
        await self.supervisor.close()
        await self.journal.settle()

    # --- writes while journaling -------------------------------------------------------------------

    def failed(self, exc: BaseException) -> None:
        """A WARM call failed as unavailable: journal from now on."""
        self._unreachable = True
        self.supervisor.failed(exc)

    async def write(self, prepared: Sequence[durable.Prepared]) -> dict[str, int]:
        """Journal a batch of puts (caller holds the write lock); return key -> version in the journal."""
        at = now_ms()
        records = self._records(
            (p.key, "put", p.category.value, p.checksum, p.value, _expiry(at, p.ttl_ms)) for p in prepared
        )
        await self._append(records)
        return {r.key: r.version for r in records}

    async def delete(self, keys: Sequence[str]) -> int:
        """Journal deletes (caller holds the write lock); return how many keys the index shows as live."""
        live = sum(1 for k in keys if (r := self._index.get(k)) is not None and r.op == "put")
        await self._append(self._records((k, "delete", "", "", None, None) for k in keys))
        return live

    def _records(
        self, items: Iterable[tuple[str, str, str, str, bytes | None, int | None]]
    ) -> list[JournalRecord]:
        at, epoch, seq = now_ms(), self._epoch(), self.journal.next_seq
        versions: dict[str, int] = {}
        out: list[JournalRecord] = []
        for key, op, category, checksum, value, expires in items:
            previous = versions.get(key) or (r.version if (r := self._index.get(key)) is not None else 0)
            versions[key] = previous + 1
            out.append(
                JournalRecord(
                    FORMAT, seq, epoch, op, key, category, previous + 1, checksum, value, expires, at
                )
            )
            seq += 1
        return out

    async def _append(self, records: list[JournalRecord]) -> None:
        """One write + one fsync; only then does the index (and so every read) show the batch."""
        try:
            await self.journal.append(records)
        except OSError as exc:  # the disk refused too: the batch is durable nowhere -- fail it, loudly
            raise StateUnavailableError(
                f"WARM is down and the journal {self.journal.path} failed: {exc}"
            ) from exc
        for record in records:
            self._index.pop(record.key, None)
            self._index[record.key] = record
        await self._cache((), [r.key for r in records])  # HOT must not serve the pre-outage values

    def lookup(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """Journaled keys among ``keys``: their latest value (None: deleted or expired)."""
        if not self._index:
            return {}
        out: dict[str, bytes | None] = {}
        now = now_ms()
        for key in keys:
            record = self._index.get(key)
            if record is None:
                continue
            live = record.op == "put" and (record.expires_ms is None or record.expires_ms > now)
            out[key] = record.value if live else None
        return out

    # --- probe and replay --------------------------------------------------------------------------

    async def _ping(self) -> None:
        try:
            await self._warm.read_lease()
        except BaseException:  # refused, or cancelled by the probe's timeout (a hung server)
            self._unreachable = True
            raise

    async def _recover(self) -> bool:
        """WARM answers: check the lease, restore a lost database, replay, truncate."""
        self.supervisor.begin_recovery()
        detected = self.supervisor.down_since
        started = time.perf_counter()
        ours = self._epoch()
        lost = False
        try:
            if ours is not None:
                lease = await self._warm.read_lease()
                self._seen_epoch = max(self._seen_epoch, 0 if lease is None else lease.epoch)
                if lease is not None and lease.epoch > ours:
                    self._supersede(f"lease epoch {lease.epoch} in the database is newer than ours ({ours})")
                    return False
                lost = lease is None or lease.epoch < ours
                if lost and not self._lost_logged:
                    self._lost_logged = True
                    logger.error(
                        "%s recovery: the database came back without this bot's data (lease %s, our "
                        "epoch %d): restoring the newest checkpoint, then replaying the journal on top",
                        self._name,
                        "missing" if lease is None else f"epoch {lease.epoch}",
                        ours,
                    )
                if self.gate is not None and await self.gate("reacquire" if lost else "renew") is None:
                    raise StateUnavailableError("WARM answers but the lease is not renewed yet")
            checkpoint_id, loss = (await self._replayer.restore_newest_checkpoint()) if lost else (None, None)
            record = await self._replayer.replay(self._index, detected, started, lost, checkpoint_id, loss)
        except FencedError as exc:
            self._supersede(str(exc))
            return False
        except StateUnavailableError as exc:  # down again mid-way: the journal (and the marker) stay
            self.failed(exc)
            return False
        if lost:
            await self._repair_hot()
        self._lost_logged = self._unreachable = False
        self.supervisor.recovered(record)
        return True

    async def replay_now(self) -> bool:
        """Replay a journal (a leftover at start, or on demand); return whether the journal is empty now."""
        if not self.journaling:
            return True
        return await self.supervisor.probe_now()

    def check_start_epoch(self, epoch: int) -> None:
        """At ``take_ownership``: a leftover journal of epoch E is ours to replay only if we hold E or E + 1
        (nobody held the lease in between); otherwise another holder wrote since -- set it aside."""
        epochs = {r.epoch for r in self._index.values() if r.epoch is not None}
        if not epochs or max(epochs) >= epoch - 1:
            return
        aside = self.journal.path.with_name(f"warm.journal.superseded-epoch{max(epochs)}-{now_ms()}")
        self.journal.path.rename(aside)
        logger.error(
            "%s recovery: WARM journal of epoch %d NOT replayed: the lease went to another holder "
            "since (now epoch %d); its %d records are kept in %s for the operator",
            self._name,
            max(epochs),
            epoch,
            self.journal.records,
            aside,
        )
        self._index.clear()
        self.journal.open()
        self.supervisor.recovered(WarmRecovery(None, datetime.now(UTC), None, 0.0, 0, 0, 0, 0))

    def _supersede(self, reason: str) -> None:
        self.superseded = f"WARM journal not replayed: {reason}"
        logger.error(
            "%s recovery: %s -- another holder trades now; this process stops; the journal (%d "
            "records) stays in %s for the operator",
            self._name,
            reason,
            self.journal.records,
            self.journal.path,
        )
        self.supervisor.failed(FencedError(self.superseded), log=False)

    # --- logging ------------------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        """``PostgreSQL`` (the runbook greps "PostgreSQL recovery"), or the WARM backend it is."""
        backend = self._settings.warm_backend.value
        return "PostgreSQL" if backend == "postgres" else f"WARM ({backend})"

    def _warn_down(self, exc: BaseException) -> None:
        logger.error(
            "%s recovery: WARM unreachable (%s): durable writes go to the journal %s; outage mode %s",
            self._name,
            exc,
            self.journal.path,
            self._settings.warm_outage_mode,
        )

    def _warn_still_down(self, exc: BaseException, interval: float) -> None:
        logger.warning(
            "%s recovery: WARM still unreachable (%s); %d records journaled; probing every %.3fs",
            self._name,
            exc,
            self.journal.records,
            interval,
        )


def _expiry(at_ms: int, ttl_ms: int | None) -> int | None:
    return None if ttl_ms is None else at_ms + ttl_ms


__all__ = ["MARKER_KEY", "LeaseGate", "WarmOutage", "WarmRecovery", "WarmState"]
