"""Brokers: the ``Broker`` port and its adapters (Coinbase over the official SDK, paper, simulated exchange)."""
