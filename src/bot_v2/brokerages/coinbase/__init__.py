"""Coinbase Advanced Trade adapter over the official SDK (coinbase-advanced-py).

The only place where SDK types and errors exist.

``CoinbaseBroker(CoinbaseConnection(api_key=..., api_secret=...))`` implements
``bot_v2.brokerages.base.Broker``.
"""

from bot_v2.brokerages.coinbase.broker import CoinbaseBroker
from bot_v2.brokerages.coinbase.connection import CoinbaseConnection
from bot_v2.brokerages.coinbase.ratelimit import RateLimitInfo

__all__ = ["CoinbaseBroker", "CoinbaseConnection", "RateLimitInfo"]
