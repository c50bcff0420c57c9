"""Built-in profiles. Each is a plain mapping of setting -> value, validated by the loader like any other input.

Precedence, lowest first: profile -> .env file -> process environment -> CLI flags that were given.

Each profile serves its metrics on a port of its own (prod 9102, the previous bot's runbook's ``curl``; canary
9103, spot 9104, dev 9105; a dry run the profile's + 10), so bots of different profiles on one host never
collide (``settings._metrics_endpoint``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


class Profile(enum.StrEnum):
    DEV = "dev"
    CANARY = "canary"
    SPOT = "spot"
    PROD = "prod"


class BrokerKind(enum.StrEnum):
    SIMULATED = "simulated"
    COINBASE = "coinbase"


_DEV: dict[str, Any] = {
    "metrics_port": 9105,
    "broker": "simulated",
    "symbols": ("BTC-USD", "ETH-USD"),
    "dry_run": False,
    "interval_seconds": 5.0,
    "enable_derivatives": False,
    "strategy": "ma_crossover",
    "strategy_params": {"position_fraction": "0.02"},
    "state_backends": ("memory", "sqlite", "directory"),
    "risk": {
        "max_leverage": "1",
        "max_notional_per_symbol_usd": "5000",
        "max_total_exposure_usd": "10000",
        "daily_loss_limit_pct": "2",
        "max_open_positions": 5,
    },
}

_CANARY: dict[str, Any] = {
    "metrics_port": 9103,
    "broker": "coinbase",
    "symbols": ("BTC-USD",),
    "dry_run": False,
    "interval_seconds": 30.0,
    "enable_derivatives": False,
    "strategy": "ma_crossover",
    "strategy_params": {"position_fraction": "0.0005"},
    "state_backends": ("redis", "postgres", "s3"),
    "risk": {
        "max_leverage": "1",
        "max_notional_per_symbol_usd": "100",
        "max_total_exposure_usd": "200",
        "daily_loss_limit_pct": "1",
        "max_open_positions": 1,
    },
}

_SPOT: dict[str, Any] = {
    "metrics_port": 9104,
    "broker": "coinbase",
    "symbols": ("BTC-USD", "ETH-USD", "SOL-USD"),
    "dry_run": False,
    "interval_seconds": 15.0,
    "enable_derivatives": False,
    "strategy": "ma_crossover",
    "strategy_params": {"position_fraction": "0.01"},
    "state_backends": ("redis", "postgres", "s3"),
    "risk": {
        "max_leverage": "1",
        "max_notional_per_symbol_usd": "2500",
        "max_total_exposure_usd": "7500",
        "daily_loss_limit_pct": "2",
        "max_open_positions": 3,
    },
}

_PROD: dict[str, Any] = {
    "metrics_port": 9102,
    "broker": "coinbase",
    "symbols": ("BTC-USD", "ETH-USD"),
    "dry_run": False,
    "interval_seconds": 10.0,
    "enable_derivatives": False,
    "strategy": "ma_crossover",
    "strategy_params": {"position_fraction": "0.02"},
    "state_backends": ("redis", "postgres", "s3"),
    "risk": {
        "max_leverage": "3",
        "max_notional_per_symbol_usd": "10000",
        "max_total_exposure_usd": "25000",
        "daily_loss_limit_pct": "2",
        "max_drawdown_pct": "5",
        "max_open_positions": 5,
    },
}

PROFILES: Mapping[Profile, Mapping[str, Any]] = MappingProxyType(
    {
        Profile.DEV: MappingProxyType(_DEV),
        Profile.CANARY: MappingProxyType(_CANARY),
        Profile.SPOT: MappingProxyType(_SPOT),
        Profile.PROD: MappingProxyType(_PROD),
    }
)
