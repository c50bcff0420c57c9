"""History archiving: terminal orders, final intents and booked fills older than the retention window leave
the live keys for ``archive:<live key>`` (category ARCHIVE: body in a COLD segment, index row in WARM), so
start-up (``OrderTracker.load``) reads what is live only and no longer slows down as the bot ages.

What moves (a record that does not qualify stays live, and so does everything that belongs with it):

* an order that is terminal, not followed by the tracker, last written before the cutoff, whose stored fills
  add up to its filled quantity (all booked) and are all older than the cutoff -- together with those fills
  and its intent, which must be final (DONE / FAILED);
* an intent without an order that is final and was written before the cutoff.

``cutoff = min(now - retention, watermark - 2 x LOOKUP_MARGIN)`` with the stored reconciliation watermark
(none stored: nothing moves). Order discovery lists from ``watermark - LOOKUP_MARGIN`` at the earliest and the
watermark never moves back, so an archived order -- created at the exchange before the cutoff plus at most
``LOOKUP_MARGIN`` of clock skew -- is never listed again and its fills are never asked for: it cannot come back
as new and book its fills twice. Reconciliation re-derives positions from the exchange's fills of the live
orders plus the archived fills' net quantity per symbol, kept in ``metadata:archive``.

One move, crash-safe and never counted twice:

1. ONE ``batch_write``: the archive copies and ``metadata:archive`` with the moved fills' net quantity added
   and the live keys listed as ``pending_keys`` (the COLD segment is written first; the one WARM transaction
   that references it commits all of it or nothing);
2. ``batch_delete_state`` of the live keys;
3. ``metadata:archive`` without ``pending_keys``.

A crash before 1 changed nothing; after 1, start-up treats the pending keys as archived (skips them) and the
next run deletes them (2, 3) before anything else.

Scheduling (``maybe_run``, after a cycle, from ``bot._Lifecycle``): when ``interval_seconds`` have passed since
the last run, and at the next cycle again while a backlog remains; never while the cycle's batch has
unflushed writes. A pass lists the live client order ids and ``fills:*`` keys once, then goes over the ids
oldest first, at most ``scan_limit`` per run, and ends at the first chunk newer than the cutoff; a run moves at
most ``batch_size`` orders. The fills of an order come from an in-memory index of the live fills (order id ->
fills), filled in by reading at most ``fill_read_limit`` fill bodies per run, only those it lacks; nothing
moves until it covers every fill key of the pass. A failed run is a WARNING and a ``history_archived`` event
with ``ok=false``; trading goes on and the next run retries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from bot_v2.domain import ClientOrderId, OrderId, Symbol
from bot_v2.errors import StateIntegrityError
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.orchestration import keys
from bot_v2.orchestration.ports import StateCategory, StateStore, StateWrite
from bot_v2.orchestration.reconcile import parse_watermark
from bot_v2.orchestration.records import (
    ArchiveSummary,
    IntentRecord,
    IntentStatus,
    OrderRecord,
    fill_from_dict,
)
from bot_v2.orchestration.tracking import LOOKUP_MARGIN, OrderTracker

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHIVE_BATCH_ORDERS",
    "ARCHIVE_INTERVAL_SECONDS",
    "ArchiveReport",
    "ArchiveStore",
    "HistoryArchiver",
    "read_archived",
]

#: A run happens this long after the previous one (sooner while a backlog remains).
ARCHIVE_INTERVAL_SECONDS = 3600.0
#: Orders (with their intents and fills) moved per run at most.
ARCHIVE_BATCH_ORDERS = 500
#: Live keys in one move at most: ``metadata:archive`` lists them while the move is in progress.
MAX_MOVE_KEYS = 8000
#: Longest a run may hold up the loop.
ARCHIVE_TIMEOUT_SECONDS = 30.0
#: Keys per ``batch_get_state``.
_READ_CHUNK = 500
_FINAL_INTENT = (IntentStatus.DONE, IntentStatus.FAILED)


class ArchiveStore(StateStore, Protocol):
    """The state the archiver needs: the loop's ``StateStore`` plus batched deletes."""

    async def batch_delete_state(self, keys: Iterable[str]) -> int: ...


@dataclass(slots=True)
class ArchiveReport:
    """What one run did."""

    orders: int = 0
    intents: int = 0
    fills: int = 0
    keys_moved: int = 0
    pending_completed: int = 0  # live keys of an interrupted move deleted first
    fills_indexed: int = 0  # fill bodies read into the index this run
    scanned: int = 0  # live order/intent ids examined
    cutoff: datetime | None = None
    backlog: bool = False  # more may be due: the next cycle runs again
    duration_ms: float = 0.0
    skipped: str | None = None  # why nothing was considered (no watermark, ...)

    @property
    def moved(self) -> bool:
        return bool(self.keys_moved or self.pending_completed)

    def to_dict(self) -> dict[str, object]:
        return {
            "orders": self.orders,
            "intents": self.intents,
            "fills": self.fills,
            "keys_moved": self.keys_moved,
            "pending_completed": self.pending_completed,
            "fills_indexed": self.fills_indexed,
            "scanned": self.scanned,
            "cutoff": self.cutoff,
            "backlog": self.backlog,
            "duration_ms": round(self.duration_ms, 3),
            "skipped": self.skipped,
        }


class _FillRef(NamedTuple):
    key: str
    order_id: OrderId
    symbol: Symbol
    signed: Decimal
    trade_time: datetime


@dataclass(slots=True)
class _Move:
    """The records of one move, keyed by live key."""

    values: dict[str, object] = field(default_factory=dict)
    order_ids: list[OrderId] = field(default_factory=list)
    quantities: dict[Symbol, Decimal] = field(default_factory=dict)
    orders: int = 0
    intents: int = 0
    fills: int = 0
    newest_intent_at: datetime | None = None


async def read_archived(state: StateStore, live_key: str) -> Any:
    """An archived record by its live key (``orders:pb-1``), or None: for audits and the runbook."""
    return await state.get_state(keys.archive_key(live_key))


class HistoryArchiver:
    """Moves old terminal history out of the live keys, a bounded batch per run (see the module doc)."""

    def __init__(
        self,
        state: ArchiveStore,
        tracker: OrderTracker,
        *,
        retention_days: float,
        events: EventStore | None = None,
        interval_seconds: float = ARCHIVE_INTERVAL_SECONDS,
        batch_size: int = ARCHIVE_BATCH_ORDERS,
        scan_limit: int | None = None,
        fill_read_limit: int | None = None,
        timeout_seconds: float = ARCHIVE_TIMEOUT_SECONDS,
    ) -> None:
        if retention_days < 0 or batch_size < 1:
            raise ValueError("HistoryArchiver: retention_days must be >= 0 and batch_size >= 1")
        self.state = state
        self.tracker = tracker
        self.retention = timedelta(days=retention_days)
        self.events = events
        self.interval = timedelta(seconds=interval_seconds)
        self.batch_size = batch_size
        self.scan_limit = scan_limit or 4 * batch_size
        self.fill_read_limit = fill_read_limit or 10 * batch_size
        self.timeout_seconds = timeout_seconds
        self.last_run_at: datetime | None = None
        self.backlog = False
        self.runs = 0
        self.failed = 0
        # A pass goes over the live client order ids listed when it started, oldest first, a window per run.
        self._pass: list[ClientOrderId] | None = None
        self._next = 0  # index in the pass of the next id to examine
        self._fills: dict[str, _FillRef] = {}  # live fill key -> what archiving needs of it
        self._by_order: dict[OrderId, set[str]] = {}
        self._fills_to_read: list[str] = []  # listed at the start of the pass, not indexed yet

    # --- scheduling -------------------------------------------------------------------------------------

    def due(self, now: datetime) -> bool:
        """A run is due: never ran, the interval passed, or a backlog remains."""
        if self.backlog or self.last_run_at is None:
            return True
        return now - self.last_run_at >= self.interval

    async def maybe_run(self, now: datetime) -> ArchiveReport | None:
        """Run if due and the cycle's writes are flushed; never raises for a failed run (returns None)."""
        if not self.due(now) or len(self.tracker.batch):
            return None
        self.last_run_at = now
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                report = await self.run(now)
        except Exception as exc:  # housekeeping must never stop trading; CancelledError is not caught
            elapsed = (time.perf_counter() - started) * 1000
            self.failed += 1
            self.backlog = False
            self._pass = None  # the next run lists afresh
            text = _text(exc)
            logger.warning(
                "history archiving failed after %.1f ms: %s; trading continues, next run in %.0fs",
                elapsed,
                text,
                self.interval.total_seconds(),
                exc_info=not hasattr(exc, "one_line"),
            )
            if self.events is not None:
                await self.events.emit(
                    EventType.HISTORY_ARCHIVED, now, ok=False, error=text, duration_ms=round(elapsed, 3)
                )
            return None
        self.backlog = report.backlog
        if report.moved:
            logger.info(
                "history: archived %d orders, %d intents, %d fills (%d keys) to COLD in %.1f ms "
                "(cutoff %s%s%s)",
                report.orders,
                report.intents,
                report.fills,
                report.keys_moved,
                report.duration_ms,
                report.cutoff.isoformat() if report.cutoff else None,
                f", {report.pending_completed} keys of an interrupted move deleted"
                if report.pending_completed
                else "",
                ", more next cycle" if report.backlog else "",
            )
            if self.events is not None:
                await self.events.emit(EventType.HISTORY_ARCHIVED, now, ok=True, **report.to_dict())
        else:
            logger.debug("history: nothing to archive (%s)", report.skipped or f"{report.scanned} examined")
        return report

    # --- one run ----------------------------------------------------------------------------------------

    async def run(self, now: datetime) -> ArchiveReport:
        """Finish an interrupted move, then move at most ``batch_size`` eligible orders (and lone intents)."""
        started = time.perf_counter()
        self.runs += 1
        report = ArchiveReport()
        summary = await self._finish_pending(report)
        cutoff = await self._cutoff(now)
        report.cutoff = cutoff
        if cutoff is None:
            report.skipped = "no reconciliation watermark stored"
            self._pass = None
        else:
            if self._pass is None:
                await self._start_pass()
                if len(self._fills_to_read) > self.fill_read_limit:  # a large live set: listing it is enough
                    report.backlog, report.skipped = True, "listed the live keys"
                    report.duration_ms = (time.perf_counter() - started) * 1000
                    return report
            if await self._index_fills(report):
                move = await self._select(report, cutoff)
                if move.values:
                    await self._move(report, summary, move, cutoff, now)
            else:
                report.skipped = "indexing the live fills"
        report.duration_ms = (time.perf_counter() - started) * 1000
        return report

    async def _read_summary(self) -> ArchiveSummary:
        raw = await self.state.get_state(keys.ARCHIVE_KEY)
        return ArchiveSummary() if raw is None else ArchiveSummary.from_dict(raw)

    async def _finish_pending(self, report: ArchiveReport) -> ArchiveSummary:
        """Steps 2 and 3 of a move a crash (or a failure) interrupted; return the stored summary."""
        summary = await self._read_summary()
        if summary.pending_keys:
            self.tracker.archived(summary)
            self._forget_fills(summary.pending_keys)
            await self.state.batch_delete_state(summary.pending_keys)
            report.pending_completed = len(summary.pending_keys)
            summary = dataclasses.replace(summary, pending_keys=(), pending_order_ids=())
            await self.state.set_state(keys.ARCHIVE_KEY, summary.to_dict(), StateCategory.METADATA)
        self.tracker.archived(summary)
        return summary

    async def _cutoff(self, now: datetime) -> datetime | None:
        """``min(now - retention, watermark - 2 x LOOKUP_MARGIN)``; None without a sound stored watermark."""
        raw = await self.state.get_state(keys.WATERMARK_KEY)
        if raw is None:
            return None
        try:
            watermark = parse_watermark(raw)
        except StateIntegrityError as exc:
            logger.warning("history archiving: %s; nothing is archived until it is rewritten", exc)
            return None
        return min(now - self.retention, watermark - 2 * LOOKUP_MARGIN)

    async def _start_pass(self) -> None:
        """List the live client order ids and fill keys once per pass (not per run: a pass over a backlog takes
        many runs, and what appears meanwhile is too new to move anyway)."""
        coids = {keys.suffix(k, keys.INTENT_PREFIX) for k in await self._list(keys.INTENT_PREFIX)}
        coids.update(keys.suffix(k, keys.ORDER_PREFIX) for k in await self._list(keys.ORDER_PREFIX))
        listed = set(await self._list(keys.FILL_PREFIX))
        self._forget_fills([k for k in self._fills if k not in listed])
        self._fills_to_read = sorted(k for k in listed if k not in self._fills)
        self._pass = [ClientOrderId(c) for c in sorted(coids)]
        self._next = 0

    async def _list(self, prefix: str) -> list[str]:
        return await self.state.get_keys_by_pattern(prefix + "*")

    async def _index_fills(self, report: ArchiveReport) -> bool:
        """Read at most ``fill_read_limit`` of the fill bodies the index lacks; True when it has them all."""
        todo = self._fills_to_read[: self.fill_read_limit]
        del self._fills_to_read[: len(todo)]
        for start in range(0, len(todo), _READ_CHUNK):
            got = await self.state.batch_get_state(todo[start : start + _READ_CHUNK])
            for key, value in got.items():
                if value is None:
                    continue
                fill = fill_from_dict(value)
                ref = _FillRef(
                    key, fill.order_id, fill.symbol, fill.quantity * fill.side.sign, fill.trade_time
                )
                self._fills[key] = ref
                self._by_order.setdefault(fill.order_id, set()).add(key)
        report.fills_indexed = len(todo)
        if self._fills_to_read:
            report.backlog = True
            return False
        return True

    def _forget_fills(self, fill_keys: Iterable[str]) -> None:
        for key in fill_keys:
            ref = self._fills.pop(key, None)
            if ref is None:
                continue
            siblings = self._by_order.get(ref.order_id)
            if siblings is not None:
                siblings.discard(key)
                if not siblings:
                    del self._by_order[ref.order_id]

    async def _select(self, report: ArchiveReport, cutoff: datetime) -> _Move:
        """Examine up to ``scan_limit`` client order ids of the pass; collect what may move.

        Client order ids are time-ordered (``execution.py``), so the oldest come first and the pass ends at the
        first chunk whose records are all newer than the cutoff (everything after it is newer too).
        """
        assert self._pass is not None
        window = self._pass[self._next : self._next + self.scan_limit]
        move = _Move()
        step = max(1, _READ_CHUNK // 2)
        for start in range(0, len(window), step):
            chunk = window[start : start + step]
            got = await self.state.batch_get_state(
                [keys.intent_key(c) for c in chunk] + [keys.order_key(c) for c in chunk]
            )
            any_old = False
            for coid in chunk:
                report.scanned += 1
                self._next += 1
                old = self._consider(
                    move, coid, got.get(keys.intent_key(coid)), got.get(keys.order_key(coid)), cutoff
                )
                any_old = any_old or old
                if move.orders >= self.batch_size or len(move.values) >= MAX_MOVE_KEYS:
                    report.backlog = True  # a full batch: there may be more right after it
                    return await self._read_fills(report, move)
            if not any_old:
                self._next = len(self._pass)
                break
        # more after this window: the next cycle goes on; else the next pass starts from the beginning
        report.backlog = self._next < len(self._pass)
        if not report.backlog:
            self._pass = None
        return await self._read_fills(report, move)

    async def _read_fills(self, report: ArchiveReport, move: _Move) -> _Move:
        """Read the bodies of the fills ``move`` takes along (chosen by the index)."""
        fill_keys = [k for k in move.values if k.startswith(keys.FILL_PREFIX)]
        bodies: dict[str, object] = {}
        for start in range(0, len(fill_keys), _READ_CHUNK):
            got = await self.state.batch_get_state(fill_keys[start : start + _READ_CHUNK])
            bodies.update({k: v for k, v in got.items() if v is not None})
        missing = [k for k in fill_keys if k not in bodies]
        if missing:  # a fill key vanished since it was indexed: this move waits for the next run
            self._forget_fills(missing)
            report.backlog = True
            return _Move()
        move.values.update(bodies)
        return move

    def _consider(
        self, move: _Move, coid: ClientOrderId, raw_intent: object, raw_order: object, cutoff: datetime
    ) -> bool:
        """Add ``coid``'s records to ``move`` if all of them may leave the live keys; return whether any of
        them was written before the cutoff."""
        intent = None if raw_intent is None else IntentRecord.from_dict(raw_intent)
        order = None if raw_order is None else OrderRecord.from_dict(raw_order)
        old = (intent is not None and intent.created_at < cutoff) or (
            order is not None and order.updated_at < cutoff
        )
        if not old or coid in self.tracker.orders or coid in self.tracker.intents:
            return old  # new, or the tracker still works on it (followed, unresolved)
        if intent is not None:
            written = max(intent.created_at, intent.updated_at or intent.created_at)
            if intent.status not in _FINAL_INTENT or written >= cutoff:
                return old
        fills: list[_FillRef] = []
        if order is not None:
            if not order.status.is_terminal or order.updated_at >= cutoff:
                return old
            fills = [self._fills[k] for k in sorted(self._by_order.get(order.order_id, ()))]
            booked = sum((abs(f.signed) for f in fills), start=Decimal(0))
            if booked != order.filled_quantity:
                return old  # not every fill is booked (or the exchange reported more): stays live
            if any(f.trade_time >= cutoff or f.symbol != order.symbol for f in fills):
                return old
        if intent is not None:
            move.values[keys.intent_key(coid)] = raw_intent
            move.intents += 1
            newest = move.newest_intent_at
            move.newest_intent_at = intent.created_at if newest is None else max(newest, intent.created_at)
        if order is not None:
            move.values[keys.order_key(coid)] = raw_order
            move.order_ids.append(order.order_id)
            move.orders += 1
            for ref in fills:
                move.values[ref.key] = None  # the body is read once the selection is done
                move.quantities[ref.symbol] = move.quantities.get(ref.symbol, Decimal(0)) + ref.signed
                move.fills += 1
        return old

    async def _move(
        self, report: ArchiveReport, summary: ArchiveSummary, move: _Move, cutoff: datetime, now: datetime
    ) -> None:
        """Steps 1-3 of the module doc."""
        live = list(move.values)
        quantities = dict(summary.quantities)
        for symbol, qty in move.quantities.items():
            quantities[symbol] = quantities.get(symbol, Decimal(0)) + qty
        newest = summary.newest_intent_at
        if move.newest_intent_at is not None:
            newest = move.newest_intent_at if newest is None else max(newest, move.newest_intent_at)
        pending = ArchiveSummary(
            quantities=quantities,
            orders=summary.orders + move.orders,
            intents=summary.intents + move.intents,
            fills=summary.fills + move.fills,
            horizon=cutoff if summary.horizon is None else max(summary.horizon, cutoff),
            newest_intent_at=newest,
            pending_keys=tuple(live),
            pending_order_ids=tuple(move.order_ids),
            updated_at=now,
        )
        writes = [StateWrite(keys.archive_key(k), v, StateCategory.ARCHIVE) for k, v in move.values.items()]
        writes.append(StateWrite(keys.ARCHIVE_KEY, pending.to_dict(), StateCategory.METADATA))
        await self.state.batch_write(writes)  # 1: archived and counted, atomically
        self.tracker.archived(pending)
        self._forget_fills(k for k in live if k.startswith(keys.FILL_PREFIX))
        await self.state.batch_delete_state(live)  # 2
        done = dataclasses.replace(pending, pending_keys=(), pending_order_ids=())
        await self.state.set_state(keys.ARCHIVE_KEY, done.to_dict(), StateCategory.METADATA)  # 3
        self.tracker.archived(done)
        report.orders, report.intents, report.fills = move.orders, move.intents, move.fills
        report.keys_moved = len(live)


def _text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "TimeoutError: took too long"
    one_line = getattr(exc, "one_line", None)
    return str(one_line()) if callable(one_line) else f"{type(exc).__name__}: {' '.join(str(exc).split())}"
