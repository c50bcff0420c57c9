"""The Advanced Trade WebSocket feed: heartbeats, ticker, level2 (l2_data), market_trades and user channels.

Served over TLS (wss://, the same CA as REST) on its own port, plain ws:// only when asked (the SDK's WSClient
takes the URL verbatim). Every message carries the full envelope with a per-socket ``sequence_num``; ``user``
needs a valid JWT in the subscribe message. ``FeedFaults`` are the drills' switches: refuse new sockets, stall
(sockets stay open, nothing is sent), skip a sequence number.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from bot_v2.brokerages.simulated.auth import AuthError, KeyRegistry
from bot_v2.brokerages.simulated.engine import Engine
from bot_v2.brokerages.simulated.models import SimOrder, dstr, iso

__all__ = ["Feed", "FeedFaults"]

log = logging.getLogger(__name__)
CHANNELS = ("heartbeats", "ticker", "level2", "market_trades", "user")
PRIVATE_CHANNELS = ("user",)
OUT_CHANNEL = {"level2": "l2_data"}
UNSET_TIME = "0001-01-01T00:00:00Z"
Book = dict[str, dict[Decimal, Decimal]]  # side -> price -> size
#: Recent trades a ``market_trades`` subscription starts with (the real channel's snapshot).
TRADES_SNAPSHOT = 50


@dataclass(slots=True)
class FeedFaults:
    """Fault switches for the feed: ``refusing`` answers new upgrades with 503 (an exchange that is down);
    ``stalled`` keeps sockets open but sends nothing (not even heartbeats) and answers subscriptions only once
    it ends; ``skip_sequences`` makes the next
    that many messages (whichever socket they go to) jump one sequence number (a lost message)."""

    refusing: bool = False
    stalled: bool = False
    skip_sequences: int = 0

    def reset(self) -> None:
        self.refusing, self.stalled, self.skip_sequences = False, False, 0


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    subscriptions: dict[str, set[str]] = field(default_factory=dict)
    sequence: int = 0
    books: dict[str, Book] = field(default_factory=dict)


class Feed:
    """Fan-out of engine changes to subscribed sockets; all methods run on the simulator's loop."""

    def __init__(self, engine: Engine, keys: KeyRegistry, auth_required: bool) -> None:
        self.engine = engine
        self.keys = keys
        self.auth_required = auth_required
        self._clients: set[_Client] = set()
        self._last_trade = engine.market.trade_count
        self._heartbeat_counter = 0
        self.faults = FeedFaults()
        self._flowing = asyncio.Event()  # clear while stalled
        self._flowing.set()
        self.connections = 0  # sockets accepted since start (drills count reconnects with it)

    # --- connection handling ------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.faults.refusing:
            return web.Response(status=503, text="feed unavailable")
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        self.connections += 1
        client = _Client(ws)
        self._clients.add(client)
        try:
            async for msg in ws:
                await self._flowing.wait()  # a stalled exchange answers nothing, subscriptions included
                if msg.type is WSMsgType.TEXT:
                    await self._on_message(client, msg.data)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
        return ws

    def set_stalled(self, stalled: bool) -> None:
        """Stall the feed (sockets stay open, nothing is sent or answered) or let it flow again."""
        self.faults.stalled = stalled
        if stalled:
            self._flowing.clear()
        else:
            self._flowing.set()

    def reset_faults(self) -> None:
        self.faults.reset()
        self._flowing.set()

    async def close_all(self, code: int = 1000, message: str = "") -> None:
        """Close every socket (1011 exercises the SDK's reconnect, 1000 a clean end)."""
        for client in list(self._clients):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await client.ws.close(code=code, message=message.encode())
        self._clients.clear()

    async def _on_message(self, client: _Client, data: str) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            await client.ws.send_str(json.dumps({"type": "error", "message": "invalid JSON"}))
            return
        kind, channel = msg.get("type"), msg.get("channel")
        products = [str(p) for p in msg.get("product_ids") or []]
        if kind not in ("subscribe", "unsubscribe") or channel not in CHANNELS:
            await client.ws.send_str(
                json.dumps({"type": "error", "message": f"unsupported {kind} {channel}"})
            )
            return
        if kind == "subscribe" and channel in PRIVATE_CHANNELS and self.auth_required:
            try:
                self.keys.verify_ws(msg.get("jwt"))
            except AuthError:
                await client.ws.send_str(json.dumps({"type": "error", "message": "authentication failure"}))
                return
        wanted = set(products) or {""}
        if kind == "subscribe":
            client.subscriptions.setdefault(channel, set()).update(wanted)
        else:
            remaining = client.subscriptions.get(channel, set()) - wanted
            client.subscriptions.pop(channel, None)
            if remaining and products:
                client.subscriptions[channel] = remaining
        ack = {ch: sorted(p for p in ids if p) for ch, ids in client.subscriptions.items()}
        await self._send(client, "subscriptions", [{"subscriptions": ack}])
        if kind == "subscribe":
            await self._snapshot(client, channel, products)

    # --- publishing ---------------------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        self._heartbeat_counter += 1
        event = {"current_time": iso(self.engine.clock.now()), "heartbeat_counter": self._heartbeat_counter}
        for client in list(self._clients):
            if "heartbeats" in client.subscriptions:
                await self._send(client, "heartbeats", [event])

    async def publish(self) -> None:
        """Push what changed since the last call: tickers, book diffs, new trades, order updates."""
        changed = [
            self.engine.orders[i] for i in sorted(self.engine.changed_orders) if i in self.engine.orders
        ]
        self.engine.changed_orders.clear()
        trades = self._new_trades()
        for client in list(self._clients):
            subs = client.subscriptions
            for pid in sorted(subs.get("ticker", ())):
                await self._send(client, "ticker", [{"type": "update", "tickers": [self._ticker(pid)]}])
            for pid in sorted(subs.get("level2", ())):
                updates = self._book_diff(client, pid)
                if updates:
                    event = {"type": "update", "product_id": pid, "updates": updates}
                    await self._send(client, "level2", [event])
            wanted = subs.get("market_trades", set())
            mine = [t for t in trades if t["product_id"] in wanted]
            if mine:
                await self._send(client, "market_trades", [{"type": "update", "trades": mine}])
            user = subs.get("user")
            if user is not None and changed:
                orders = [self._user_order(o) for o in changed if "" in user or o.product_id in user]
                if orders:
                    await self._send(client, "user", [self._user_event("update", orders)])

    async def _snapshot(self, client: _Client, channel: str, products: list[str]) -> None:
        if channel == "ticker":
            tickers = [self._ticker(p) for p in products if p in self.engine.products]
            await self._send(client, "ticker", [{"type": "snapshot", "tickers": tickers}])
        elif channel == "level2":
            for pid in products:
                if pid in self.engine.products:
                    client.books.pop(pid, None)
                    event = {"type": "snapshot", "product_id": pid, "updates": self._book_diff(client, pid)}
                    await self._send(client, "level2", [event])
        elif channel == "market_trades":
            trades = [t for pid in products if pid in self.engine.products for t in self._recent_trades(pid)]
            await self._send(client, "market_trades", [{"type": "snapshot", "trades": trades}])
        elif channel == "user":
            wanted = set(products)
            orders = [
                self._user_order(o) for o in self.engine.open_orders() if not wanted or o.product_id in wanted
            ]
            for start in range(0, max(len(orders), 1), 50):
                await self._send(client, "user", [self._user_event("snapshot", orders[start : start + 50])])

    async def _send(self, client: _Client, channel: str, events: list[dict[str, Any]]) -> None:
        if self.faults.stalled:
            return
        client.sequence += 1
        if self.faults.skip_sequences > 0:
            self.faults.skip_sequences -= 1
            client.sequence += 1  # the message numbered before this one is "lost"
        envelope = {
            "channel": OUT_CHANNEL.get(channel, channel),
            "client_id": "",
            "timestamp": iso(self.engine.clock.now()),
            "sequence_num": client.sequence,
            "events": events,
        }
        try:
            await client.ws.send_str(json.dumps(envelope))
        except (ConnectionError, RuntimeError) as exc:
            log.debug("dropping websocket client: %s", exc)
            self._clients.discard(client)

    # --- message bodies -----------------------------------------------------------------------------------

    def _ticker(self, pid: str) -> dict[str, str]:
        bids, asks = self.engine.market.book(pid, 1)
        day = self.engine.market.candles(pid, None, None, 3600, 24)
        price = self.engine.market.last_price(pid)
        low = min((c[3] for c in day), default=price)
        high = max((c[2] for c in day), default=price)
        open_24h = day[-1][1] if day else price
        return {
            "type": "ticker",
            "product_id": pid,
            "price": dstr(price),
            "volume_24_h": dstr(sum((c[5] for c in day), Decimal(0))),
            "low_24_h": dstr(low),
            "high_24_h": dstr(high),
            "low_52_w": dstr(low),
            "high_52_w": dstr(high),
            "price_percent_chg_24_h": dstr(((price - open_24h) / open_24h * 100).quantize(Decimal("0.0001"))),
            "best_bid": dstr(bids[0][0]),
            "best_bid_quantity": dstr(bids[0][1]),
            "best_ask": dstr(asks[0][0]),
            "best_ask_quantity": dstr(asks[0][1]),
        }

    def _book_diff(self, client: _Client, pid: str) -> list[dict[str, str]]:
        bids, asks = self.engine.market.book(pid)
        now = iso(self.engine.clock.now())
        new: Book = {"bid": dict(bids), "offer": dict(asks)}
        old = client.books.get(pid, {"bid": {}, "offer": {}})
        client.books[pid] = new
        updates = []
        for side in ("bid", "offer"):
            for price in sorted(set(old[side]) | set(new[side])):
                size = new[side].get(price, Decimal(0))
                if old[side].get(price) != size:
                    updates.append(
                        {
                            "side": side,
                            "event_time": now,
                            "price_level": dstr(price),
                            "new_quantity": dstr(size),
                        }
                    )
        return updates

    def _recent_trades(self, pid: str) -> list[dict[str, str]]:
        """The newest trades of ``pid``, newest first (what the real snapshot starts with)."""
        recent = self.engine.market.trades(pid, TRADES_SNAPSHOT)
        rows = [self._trade_json(pid, t) for t in recent]
        return sorted(rows, key=lambda t: int(t["trade_id"]), reverse=True)

    @staticmethod
    def _trade_json(pid: str, t: Any) -> dict[str, str]:
        return {
            "trade_id": t.trade_id,
            "product_id": pid,
            "price": dstr(t.price),
            "size": dstr(t.size),
            "side": t.side,
            "time": iso(t.time),
        }

    def _new_trades(self) -> list[dict[str, str]]:
        fresh = []
        for pid in self.engine.products:
            for t in self.engine.market.trades(pid, 200):
                if int(t.trade_id) > self._last_trade:
                    fresh.append(self._trade_json(pid, t))
        self._last_trade = self.engine.market.trade_count
        return sorted(fresh, key=lambda t: int(t["trade_id"]))

    def _user_event(self, kind: str, orders: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "type": kind,
            "orders": orders,
            "positions": {"perpetual_futures_positions": [], "expiring_futures_positions": []},
        }

    def _user_order(self, order: SimOrder) -> dict[str, str]:
        spec = self.engine.products[order.product_id]
        leaves = order.remaining if order.is_open else Decimal(0)
        completion = order.filled_size / order.base_size * 100 if order.base_size else Decimal(0)
        return {
            "avg_price": dstr(order.average_filled_price),
            "cancel_reason": order.cancel_message,
            "client_order_id": order.client_order_id,
            "completion_percentage": dstr(completion.quantize(Decimal("0.01"))),
            "contract_expiry_type": "PERPETUAL" if spec.is_future else "UNKNOWN_CONTRACT_EXPIRY_TYPE",
            "cumulative_quantity": dstr(order.filled_size),
            "filled_value": dstr(order.filled_value * spec.contract_size),
            "leaves_quantity": dstr(leaves),
            "limit_price": dstr(order.limit_price) if order.limit_price is not None else "0",
            "number_of_fills": str(order.number_of_fills),
            "order_id": order.order_id,
            "order_side": order.side,
            "order_type": order.kind,
            "outstanding_hold_amount": dstr(order.hold_amount),
            "post_only": "true" if order.post_only else "false",
            "product_id": order.product_id,
            "product_type": spec.product_type,
            "reject_reason": order.reject_reason,
            "retail_portfolio_id": "",
            "risk_managed_by": "MANAGED_BY_FCM" if spec.is_future else "UNKNOWN_RISK_MANAGEMENT_TYPE",
            "status": order.status,
            "stop_price": dstr(order.stop_price) if order.stop_price is not None else "0",
            "time_in_force": {
                "IOC": "IMMEDIATE_OR_CANCEL",
                "GTC": "GOOD_UNTIL_CANCELLED",
                "GTD": "GOOD_UNTIL_DATE_TIME",
                "FOK": "FILL_OR_KILL",
            }[order.tif],
            "total_fees": dstr(order.total_fees),
            "total_value_after_fees": dstr(
                order.filled_value * spec.contract_size
                + (1 if order.side == "BUY" else -1) * order.total_fees
            ),
            "trigger_status": order.trigger_status,
            "creation_time": iso(order.created_time),
            "end_time": iso(order.end_time) or UNSET_TIME,
            "start_time": UNSET_TIME,
        }


async def run_heartbeats(feed: Feed, interval_seconds: float = 1.0) -> None:
    """Send heartbeats forever (a tracked task owned by the service)."""
    while True:
        await asyncio.sleep(interval_seconds)
        await feed.heartbeat()
