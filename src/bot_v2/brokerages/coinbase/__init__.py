"""Coinbase Advanced Trade adapter over the official SDK (coinbase-advanced-py).

The only place where SDK types and errors exist.

``CoinbaseBroker(CoinbaseConnection(api_key=..., api_secret=...))`` implements
``bot_v2.brokerages.base.Broker``.
"""

from bot_v2.brokerages.coinbase.broker import CoinbaseBroker
from bot_v2.brokerages.coinbase.connection import CoinbaseConnection
from bot_v2.brokerages.coinbase.ratelimit import RateLimitInfo
from bot_v2.brokerages.coinbase.stream import CoinbaseStream, StreamSettings, StreamStatus
from bot_v2.brokerages.coinbase.streambook import OrderUpdate

__all__ = [
    "CoinbaseBroker",
    "CoinbaseConnection",
    "CoinbaseStream",
    "OrderUpdate",
    "RateLimitInfo",
    "StreamSettings",
    "StreamStatus",
]
