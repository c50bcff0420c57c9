"""``MarketFeed``: the loop's side of the WebSocket feed -- quotes from memory, fills as they arrive.

The adapter's ``CoinbaseStream`` keeps the books and judges the socket (sequence numbers, staleness); this
module decides what the loop does with it:

* quotes: ``quotes()`` gives the feed's quotes when it is healthy, None otherwise (the cycle then asks REST and
  the cycle counts as ``rest`` in ``perps_bot_market_data_cycles``);
* fills: a user-channel update for an order the bot follows, whose filled quantity or status differs from the
  bot's record, books that order's fills at once (``book_orders``, the cycle's lock held, state flushed) --
  still de-duplicated by trade id, since the REST sync may see the same fill;
* the per-cycle REST sync becomes a reconciliation (``rest_sync_due``): every cycle while the feed is down,
  once after every reconnect (the gap may have hidden fills), and every ``rest_sync_seconds`` otherwise;
* observability: ``ws_connected`` / ``ws_disconnected`` events, the ``perps_bot_ws_*`` metrics, quote age per
  symbol, and ``down_seconds`` for the runbook's "WebSocket down" alert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot_v2.brokerages.coinbase import CoinbaseStream, OrderUpdate
from bot_v2.domain import OrderId, Quote, Symbol, utc_now
from bot_v2.monitoring.events import EventStore, EventType
from bot_v2.monitoring.metrics import BotMetrics
from bot_v2.orchestration.concurrency import cancel_and_wait
from bot_v2.orchestration.tracking import OrderTracker

__all__ = ["FeedStatus", "MarketFeed", "open_feed"]

logger = logging.getLogger(__name__)

BookOrders = Callable[[set[OrderId]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """What the health file and the dashboard show about the feed."""

    connected: bool
    down_seconds: float
    reconnects: int
    sequence_gaps: int
    messages: int
    last_disconnect: str | None
    quote_age_seconds: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "down_seconds": round(self.down_seconds, 3),
            "reconnects": self.reconnects,
            "sequence_gaps": self.sequence_gaps,
            "messages": self.messages,
            "last_disconnect": self.last_disconnect,
            "quote_age_seconds": {s: round(a, 3) for s, a in self.quote_age_seconds.items()},
        }


class MarketFeed:
    """Owns the stream for one run: start it, read it, book what its user channel reports, close it."""

    def __init__(
        self,
        stream: CoinbaseStream,
        *,
        tracker: OrderTracker,
        events: EventStore,
        metrics: BotMetrics,
        rest_sync_seconds: float = 30.0,
    ) -> None:
        self.stream = stream
        self.tracker = tracker
        self.events = events
        self.metrics = metrics
        self.rest_sync_seconds = rest_sync_seconds
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._book: BookOrders | None = None
        self._task: asyncio.Task[None] | None = None
        self._synced_generation = -1
        self._last_rest_sync = 0.0
        self._seen = (0, 0)  # messages and gaps already counted in the metrics
        self._reasons_seen: dict[str, int] = {}
        self.quote_ages: dict[str, float] = {}

    @classmethod
    def callbacks(
        cls,
    ) -> tuple[Callable[[bool, str], None], Callable[[OrderUpdate, bool], None], list[MarketFeed]]:
        """Stream callbacks that forward to the feed built later (the stream needs them at construction)."""
        holder: list[MarketFeed] = []

        def on_state(up: bool, why: str) -> None:
            if holder:
                holder[0]._queue.put_nowait(("state", (up, why, utc_now())))

        def on_order(update: OrderUpdate, snapshot: bool) -> None:
            if holder:
                holder[0]._queue.put_nowait(("order", update))

        return on_state, on_order, holder

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self, book_orders: BookOrders) -> None:
        """Connect, and book user-channel fills through ``book_orders`` (the cycle's locked sync + flush)."""
        self._book = book_orders
        self.stream.start()
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="market-feed")

    async def close(self) -> None:
        await self.stream.close()
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        self.metrics.ws_connected.set(0)

    # --- what the cycle asks ----------------------------------------------------------------------------

    def quotes(self) -> dict[Symbol, Quote] | None:
        """The feed's quotes when it is healthy; None means: ask REST."""
        return self.stream.quotes()

    def rest_sync_due(self) -> bool:
        """Whether this cycle must poll its open orders over REST (see the module docstring)."""
        if not self.stream.settings.user_channel or not self.stream.healthy:
            return True
        if self.stream.generation != self._synced_generation:
            return True
        return time.monotonic() - self._last_rest_sync >= self.rest_sync_seconds

    def rest_synced(self) -> None:
        """The cycle polled every open order: what the current socket missed before it started is covered."""
        self._synced_generation = self.stream.generation if self.stream.healthy else -1
        self._last_rest_sync = time.monotonic()

    def down_seconds(self) -> float:
        return self.stream.down_seconds()

    def observe_cycle(self, quotes: Mapping[Symbol, Quote], source: str) -> None:
        """Metrics of the cycle's market data: its source, each quote's age now, the feed's counters."""
        self.metrics.market_data_cycles.labels(source=source).inc()
        now = utc_now()
        for symbol, quote in quotes.items():
            age = max((now - quote.time).total_seconds(), 0.0)
            self.quote_ages[symbol] = age
            self.metrics.quote_age_seconds.labels(symbol=symbol).set(age)
        self._count()

    def status(self) -> FeedStatus:
        self._count()
        st = self.stream.status
        return FeedStatus(
            connected=self.stream.healthy,
            down_seconds=self.down_seconds(),
            reconnects=st.reconnects,
            sequence_gaps=st.sequence_gaps,
            messages=st.messages,
            last_disconnect=st.last_disconnect_reason,
            quote_age_seconds=dict(self.quote_ages),
        )

    # --- the stream's reports ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            kind, item = await self._queue.get()
            if kind == "state":
                await self._state(*item)
                continue
            wanted = {item.order_id} if self._needs_booking(item) else set()
            while not self._queue.empty():  # take what else arrived: one sync for a burst of updates
                kind, more = self._queue.get_nowait()
                if kind == "state":
                    await self._state(*more)
                elif self._needs_booking(more):
                    wanted.add(more.order_id)
            if wanted and self._book is not None:
                try:
                    await self._book(wanted)
                except Exception as exc:  # the next cycle's REST sync books it; never kill the feed
                    logger.warning(
                        "booking fills of %s from the user channel failed: %s", sorted(wanted), exc
                    )
                    self._synced_generation = -1

    def _needs_booking(self, update: OrderUpdate) -> bool:
        record = self.tracker.orders.get(update.client_order_id)
        if record is None or record.order_id != update.order_id or record.status.is_terminal:
            return False
        return update.filled_quantity != record.filled_quantity or update.status != record.status.value

    async def _state(self, up: bool, why: str, at: datetime) -> None:
        self.metrics.ws_connected.set(1 if up else 0)
        self._count()
        if up:
            await self.events.emit(EventType.WS_CONNECTED, at, url=self.stream.settings.url, reason=why)
        else:
            await self.events.emit(EventType.WS_DISCONNECTED, at, url=self.stream.settings.url, reason=why)

    def _count(self) -> None:
        st = self.stream.status
        messages, gaps = self._seen
        if st.messages > messages:
            self.metrics.ws_messages.inc(st.messages - messages)
        if st.sequence_gaps > gaps:
            self.metrics.ws_sequence_gaps.inc(st.sequence_gaps - gaps)
        for reason, count in st.reasons.items():
            counted = self._reasons_seen.get(reason, 0)
            if count > counted:
                self.metrics.ws_reconnects.labels(reason=reason).inc(count - counted)
                self._reasons_seen[reason] = count
        self._seen = (st.messages, st.sequence_gaps)


def open_feed(
    exchange: object,
    symbols: Sequence[Symbol],
    *,
    tracker: OrderTracker,
    events: EventStore,
    metrics: BotMetrics,
    user_channel: bool,
    rest_sync_seconds: float,
) -> MarketFeed | None:
    """A ``MarketFeed`` when ``exchange`` is the Coinbase adapter (also behind the lease's ``LeasedBroker``,
    which passes ``open_stream`` through) with a WebSocket URL, else None."""
    open_stream = getattr(exchange, "open_stream", None)
    if not callable(open_stream):
        return None
    on_state, on_order, holder = MarketFeed.callbacks()
    stream = open_stream(symbols, user_channel=user_channel, on_state=on_state, on_order=on_order)
    if stream is not None and not isinstance(stream, CoinbaseStream):
        return None
    if stream is None:
        return None
    feed = MarketFeed(
        stream, tracker=tracker, events=events, metrics=metrics, rest_sync_seconds=rest_sync_seconds
    )
    holder.append(feed)
    return feed
