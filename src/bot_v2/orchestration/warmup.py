"""Warm start: give the strategy its price history before the first cycle, so it can decide at once.

Two sources, in order:

1. the history the previous run left at its clean stop (``history:<symbol>``, MARKS category), when its last
   sample is recent enough to continue (not older than ``max_samples`` minutes);
2. the exchange's 1-minute candles (``broker.get_candles``), enough to cover ``max_samples`` -- only closes
   newer than what is already there are appended (``PriceHistory.seed_from_candles``).

Neither may stop the bot: an unreadable stored history is ignored, and a candles failure for a symbol (an
exchange error or ``CANDLES_TIMEOUT_SECONDS``) is logged as a warning -- that symbol warms up from live quotes
as before. The history is written back in the shutdown flush (``persist_history``), not every cycle: the
per-cycle batch stays small (see docs/BENCHMARKS.md), and after a crash the candles cover the gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot_v2.brokerages.base import Broker
from bot_v2.domain import Candle, Symbol
from bot_v2.errors import PerpsBotError, StateIntegrityError
from bot_v2.orchestration import keys
from bot_v2.orchestration.batch import StateBatch
from bot_v2.orchestration.ports import StateCategory, StateStore
from bot_v2.strategies import PriceHistory

logger = logging.getLogger(__name__)

__all__ = ["CANDLES_TIMEOUT_SECONDS", "WarmStart", "persist_history", "warm_start"]

#: Upper bound on fetching every symbol's candles at start-up.
CANDLES_TIMEOUT_SECONDS = 10.0
GRANULARITY = "ONE_MINUTE"
_CANDLE = timedelta(minutes=1)


@dataclass(slots=True)
class WarmStart:
    """What the warm start did per symbol: samples restored from state, candle closes added, candle
    failures (``errors``) and unreadable stored histories (``ignored``)."""

    restored: dict[Symbol, int] = field(default_factory=dict)
    from_candles: dict[Symbol, int] = field(default_factory=dict)
    errors: dict[Symbol, str] = field(default_factory=dict)
    ignored: dict[Symbol, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "restored": dict(self.restored),
            "from_candles": dict(self.from_candles),
            "errors": dict(self.errors),
            "ignored": dict(self.ignored),
        }


async def warm_start(
    broker: Broker,
    state: StateStore,
    history: PriceHistory,
    symbols: Sequence[Symbol],
    now: datetime,
) -> WarmStart:
    """Fill ``history`` from the stored history (if fresh) and then from 1-minute candles; never raises
    for an exchange or stored-data problem."""
    report = WarmStart()
    await _restore(state, history, symbols, now, report)
    candles = await _fetch_all(broker, symbols, history.max_samples, now, report)
    for symbol, series in candles.items():
        report.from_candles[symbol] = history.seed_from_candles(symbol, [c for c in series if c.start < now])
    return report


def persist_history(batch: StateBatch, history: PriceHistory, symbols: Sequence[Symbol]) -> None:
    """Queue each symbol's samples as ``history:<symbol>`` (done in the shutdown flush)."""
    for symbol in symbols:
        series = history.samples(symbol)
        if series:
            value = {"max_samples": history.max_samples, "samples": {symbol: [[t, m] for t, m in series]}}
            batch.put(keys.history_key(symbol), value, StateCategory.MARKS)


async def _restore(
    state: StateStore,
    history: PriceHistory,
    symbols: Sequence[Symbol],
    now: datetime,
    report: WarmStart,
) -> None:
    """Copy each symbol's stored samples into ``history`` when they are recent enough to continue."""
    stored = await state.batch_get_state([keys.history_key(s) for s in symbols])
    oldest_useful = now - _CANDLE * history.max_samples
    for symbol in symbols:
        raw = stored.get(keys.history_key(symbol))
        if raw is None:
            continue
        try:
            if not isinstance(raw, Mapping):
                raise StateIntegrityError(f"expected a mapping, got {type(raw).__name__}")
            samples = PriceHistory.from_dict(raw).samples(symbol)
        except StateIntegrityError as exc:
            report.ignored[symbol] = str(exc)
            logger.warning("warm start: stored %s ignored (%s)", keys.history_key(symbol), exc)
            continue
        if not samples or not oldest_useful <= samples[-1][0] <= now:
            continue
        report.restored[symbol] = sum(1 for at, mid in samples if history.append(symbol, mid, at))


async def _fetch_all(
    broker: Broker, symbols: Sequence[Symbol], minutes: int, now: datetime, report: WarmStart
) -> dict[Symbol, list[Candle]]:
    """Fetch every symbol's recent candles concurrently; a failing symbol is reported, not raised."""
    start = now - _CANDLE * (minutes + 1)
    found: dict[Symbol, list[Candle]] = {}

    async def one(symbol: Symbol) -> None:
        try:
            found[symbol] = await broker.get_candles(symbol, start, now, GRANULARITY)
        except PerpsBotError as exc:
            report.errors[symbol] = exc.one_line()

    try:
        async with asyncio.timeout(CANDLES_TIMEOUT_SECONDS), asyncio.TaskGroup() as group:
            for symbol in symbols:
                group.create_task(one(symbol))
    except TimeoutError:
        for symbol in symbols:
            if symbol not in found:
                report.errors.setdefault(symbol, f"candles: no answer within {CANDLES_TIMEOUT_SECONDS:g}s")
    for symbol, error in report.errors.items():
        logger.warning("warm start: no candles for %s (%s); warming up from live quotes", symbol, error)
    return found
