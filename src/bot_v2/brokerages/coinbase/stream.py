"""``CoinbaseStream``: the Advanced Trade WebSocket feed -- level-2 quotes, heartbeats and the ``user`` channel.

The loop reads quotes from memory instead of asking REST every cycle, and learns of fills as the exchange
reports them. The feed is only trusted while it is provably complete: every message's ``sequence_num`` must
follow the previous one on the socket, and something (at least the 1 s heartbeat) must arrive within
``stale_seconds``. A gap, a silence longer than that, a closed socket or an error message drops the socket
and reconnects with a fresh subscription (a new snapshot) after an exponential backoff
(``backoff_initial_seconds`` doubling up to ``backoff_max_seconds``). Until the new socket has a snapshot for
every symbol, ``quotes()`` returns None and the caller uses REST.

Why not the SDK's ``WSClient``: it runs its own event loop on a thread, builds an unverified ``SSLContext()``
for wss:// (no certificate check), and retries only after a close with an error code, with a 7.5 s+ backoff.
This client speaks the SDK's message format (the same subscribe messages, the JWT from the SDK's
``jwt_generator``) on the bot's event loop, verifies TLS (``ca_file`` or the system store) and reconnects
within ``backoff_max_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coinbase import jwt_generator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from bot_v2.brokerages.coinbase.streambook import Level2Book, OrderUpdate, order_updates
from bot_v2.domain import Quote, Symbol, utc_now
from bot_v2.errors import ConfigError
from bot_v2.monitoring.masking import SecretMasker

__all__ = ["CoinbaseStream", "OrderCallback", "StateCallback", "StreamSettings", "StreamStatus"]

logger = logging.getLogger(__name__)
USER_AGENT = "perps-bot (coinbase-advanced-py message format)"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Where the feed is and how strictly it is judged. ``user_channel`` needs credentials."""

    url: str
    stale_seconds: float = 5.0
    backoff_initial_seconds: float = 0.05
    backoff_max_seconds: float = 0.5
    open_timeout_seconds: float = 5.0
    user_channel: bool = True

    def __post_init__(self) -> None:
        if not self.url.startswith(("wss://", "ws://")):
            raise ConfigError(f"COINBASE_WS_URL: expected a wss:// (or ws://) URL, got {self.url!r}")
        if self.stale_seconds <= 0:
            raise ConfigError(f"COINBASE_WS_STALE_SECONDS: must be positive, got {self.stale_seconds}")
        if not 0 < self.backoff_initial_seconds <= self.backoff_max_seconds:
            raise ConfigError("stream backoff: need 0 < initial <= max")


@dataclass(slots=True)
class StreamStatus:
    """Counters and health of the feed (read by the loop for metrics, alerts, the dashboard)."""

    connected: bool = False
    healthy: bool = False
    connections: int = 0  # sockets that got as far as subscribing
    reconnects: int = 0  # sockets dropped by the client (gap, stale, closed, error)
    sequence_gaps: int = 0
    messages: int = 0
    last_disconnect_reason: str | None = None
    down_since: float | None = None  # monotonic time the feed last stopped being healthy (None: healthy)
    reasons: dict[str, int] = field(default_factory=dict)


class _Drop(Exception):
    """Drop the socket and reconnect; ``reason`` is a short word for metrics (gap, stale, closed, error)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


StateCallback = Callable[[bool, str], None]
OrderCallback = Callable[[OrderUpdate, bool], None]


class CoinbaseStream:
    """One WebSocket connection for ``symbols``' level-2 books, heartbeats and (optionally) the user channel.

    ``on_state(connected, reason)`` is called on the event loop when the feed becomes healthy or stops being
    healthy; ``on_order(update, snapshot)`` for every order row of the user channel. Both must not block.
    """

    def __init__(
        self,
        settings: StreamSettings,
        symbols: Sequence[Symbol],
        *,
        credentials: tuple[str, str] | None = None,
        ca_file: str | None = None,
        masker: SecretMasker | None = None,
        on_state: StateCallback | None = None,
        on_order: OrderCallback | None = None,
    ) -> None:
        if settings.user_channel and credentials is None:
            raise ConfigError("the user channel needs the API key and secret")
        self.settings = settings
        self.symbols = tuple(dict.fromkeys(symbols))
        self._credentials = credentials
        self._ssl = _ssl_context(settings.url, ca_file)
        self._masker = masker or SecretMasker(())
        self._on_state = on_state
        self._on_order = on_order
        self.status = StreamStatus(down_since=time.monotonic())
        self._books: dict[Symbol, Level2Book] = {}
        self._as_of: datetime | None = None  # exchange time of the newest message on the current socket
        self._last_message = 0.0  # monotonic
        self._sequence: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.generation = 0  # bumped per healthy socket: fills may have been missed between two generations

    def __repr__(self) -> str:
        return f"CoinbaseStream(url={self.settings.url!r}, symbols={self.symbols!r})"

    # --- what the loop reads ----------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Connected, gap-free, heard from within ``stale_seconds``, and a book for every symbol."""
        if not self.status.healthy:
            return False
        return time.monotonic() - self._last_message <= self.settings.stale_seconds

    def quotes(self) -> dict[Symbol, Quote] | None:
        """Every symbol's best bid/ask from memory, or None while the feed cannot be trusted (use REST)."""
        if not self.healthy or self._as_of is None:
            return None
        found = {s: q for s, b in self._books.items() if (q := b.quote(self._as_of)) is not None}
        return found if len(found) == len(self.symbols) else None

    def down_seconds(self) -> float:
        """How long the feed has not been healthy (0 while it is)."""
        if self.healthy:
            return 0.0
        since = self.status.down_since
        if since is None:  # healthy until the staleness just now
            since = self._last_message + self.settings.stale_seconds
        return max(0.0, time.monotonic() - since)

    def last_message_age(self) -> float | None:
        return None if not self._last_message else time.monotonic() - self._last_message

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the connection task (on the running loop); ``close`` stops it."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="coinbase-stream")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_down("closed by the bot", count=False)

    async def __aenter__(self) -> CoinbaseStream:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the connection loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.settings.backoff_initial_seconds
        while True:
            try:
                await self._session()
            except _Drop as drop:
                self._set_down(f"{drop.reason}: {drop}", reason=drop.reason)
            except (OSError, TimeoutError, WebSocketException) as exc:
                reason = "refused" if isinstance(exc, InvalidHandshake | OSError) else "closed"
                self._set_down(
                    f"{reason}: {self._masker.mask(str(exc)) or type(exc).__name__}", reason=reason
                )
            else:
                self._set_down("closed: the server ended the feed", reason="closed")
            if self.status.connected:
                backoff = self.settings.backoff_initial_seconds
            self.status.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.backoff_max_seconds)

    async def _session(self) -> None:
        self._books = {s: Level2Book(s) for s in self.symbols}
        self._sequence, self._as_of = None, None
        async with connect(
            self.settings.url,
            ssl=self._ssl,
            open_timeout=self.settings.open_timeout_seconds,
            max_size=MAX_MESSAGE_BYTES,
            user_agent_header=USER_AGENT,
            ping_interval=None,  # the exchange's heartbeats channel is the liveness signal
        ) as ws:
            for message in self._subscriptions():
                await ws.send(json.dumps(message))
            self.status.connected = True
            self.status.connections += 1
            subscribed_at = time.monotonic()
            while True:
                try:
                    async with asyncio.timeout(self.settings.stale_seconds):
                        raw = await ws.recv()
                except TimeoutError:
                    raise _Drop("stale", f"no message for {self.settings.stale_seconds:g}s") from None
                self._handle(raw)
                if not self.status.healthy and time.monotonic() - subscribed_at > self.settings.stale_seconds:
                    # alive (heartbeats) but a snapshot never came: subscribe again on a new socket
                    raise _Drop("stale", f"no snapshot within {self.settings.stale_seconds:g}s")

    def _subscriptions(self) -> list[dict[str, Any]]:
        """The SDK's subscribe messages: one per channel, with a fresh JWT when authenticated."""
        channels: list[tuple[str, list[str]]] = [("heartbeats", []), ("level2", list(self.symbols))]
        if self.settings.user_channel:
            channels.append(("user", list(self.symbols)))
        messages = []
        for channel, products in channels:
            message: dict[str, Any] = {"type": "subscribe", "product_ids": products, "channel": channel}
            if self._credentials is not None:
                message["jwt"] = jwt_generator.build_ws_jwt(*self._credentials)
            messages.append(message)
        return messages

    def _handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            raise _Drop("error", "a message that is not JSON") from None
        if not isinstance(message, Mapping):
            raise _Drop("error", "a message that is not a JSON object")
        if message.get("type") == "error":
            raise _Drop("error", str(message.get("message") or "error"))
        sequence = message.get("sequence_num")
        if not isinstance(sequence, int):
            raise _Drop("error", "a message without sequence_num")
        if self._sequence is not None and sequence <= self._sequence:
            return  # a repeat: already applied
        if self._sequence is not None and sequence != self._sequence + 1:
            self.status.sequence_gaps += 1
            raise _Drop("gap", f"sequence_num {sequence} after {self._sequence}")
        self._sequence = sequence
        self._last_message = time.monotonic()
        self.status.messages += 1
        self._as_of = _message_time(message.get("timestamp"))
        channel = message.get("channel")
        events = message.get("events") or ()
        if channel == "l2_data":
            for event in events:
                book = self._books.get(Symbol(str(event.get("product_id", ""))))
                if book is not None:
                    try:
                        book.apply(event)
                    except ValueError as exc:
                        raise _Drop("error", str(exc)) from None
        elif channel == "user" and self._on_order is not None:
            for event in events:
                snapshot = event.get("type") == "snapshot"
                for update in order_updates(event):
                    self._on_order(update, snapshot)
        if not self.status.healthy and all(b.has_snapshot for b in self._books.values()):
            self._set_up()

    def _set_up(self) -> None:
        self.status.healthy = True
        self.status.down_since = None
        self.generation += 1
        logger.info("market data feed healthy: %s (%s)", self.settings.url, ", ".join(self.symbols))
        if self._on_state is not None:
            self._on_state(True, "subscribed")

    def _set_down(self, detail: str, *, reason: str | None = None, count: bool = True) -> None:
        if reason is not None:
            self.status.reasons[reason] = self.status.reasons.get(reason, 0) + 1
        self.status.last_disconnect_reason = detail
        was_healthy = self.status.healthy
        self.status.healthy = False
        if self.status.down_since is None:
            self.status.down_since = time.monotonic()
        if not was_healthy:
            return
        if count:
            self.status.reconnects += 1
        logger.warning("market data feed down (%s); quotes from REST until it is back", detail)
        if self._on_state is not None:
            self._on_state(False, detail)


def _message_time(value: object) -> datetime:
    """The envelope's exchange timestamp (RFC 3339, nanoseconds allowed); now when it cannot be read."""
    if isinstance(value, str) and value:
        text = value.replace("Z", "+00:00")
        head, dot, frac = text.partition(".")
        if dot:
            digits = len(frac) - len(frac.lstrip("0123456789"))  # the fraction, not the offset's digits
            text = f"{head}.{frac[: min(digits, 6)]}{frac[digits:]}"
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is not None:
                return parsed
    return utc_now()


def _ssl_context(url: str, ca_file: str | None) -> ssl.SSLContext | None:
    if not url.startswith("wss://"):
        return None
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
