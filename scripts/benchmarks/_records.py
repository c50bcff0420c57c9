"""Realistic mixed state records for the drills and benchmarks: what a running bot keeps in its hot set.

``hot_set(n)`` returns ``n`` ``StateWrite`` records of the HOT categories in the proportions a bot with a
few hundred live orders has: orders (60 %), positions (10 %), guard state (15 %), risk / safety state (10 %)
and marks (5 %), with the value types the bot really stores (``Decimal`` money, aware ``datetime``, nested
dicts and lists); 170-510 bytes encoded, ~420 on average. Deterministic for a given ``n`` and ``version``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for _path in (str(ROOT), str(ROOT / "src")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bot_v2.state import StateCategory, StateWrite  # noqa: E402

_T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
_PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD", "BIP-20DEC30-CDE", "ETP-20DEC30-CDE")


def _order(i: int, version: int) -> dict[str, Any]:
    product = _PRODUCTS[i % len(_PRODUCTS)]
    return {
        "client_order_id": f"pb-{i:08d}",
        "order_id": f"{i:08x}-0b1c-4d2e-9f3a-{version:012x}",
        "product_id": product,
        "side": "BUY" if i % 2 else "SELL",
        "type": "LIMIT" if i % 3 else "STOP_LIMIT",
        "time_in_force": "GTC",
        "size": Decimal("0.00100000") * (1 + i % 7),
        "price": Decimal(f"{60000 + i % 997}.25"),
        "stop_price": None if i % 3 else Decimal(f"{59000 + i % 991}.50"),
        "status": ("OPEN", "PENDING", "PARTIALLY_FILLED")[i % 3],
        "filled_size": Decimal("0.00025000") * (i % 3),
        "average_filled_price": Decimal(f"{60000 + i % 997}.10") if i % 3 else None,
        "reduce_only": bool(i % 5 == 0),
        "created_at": _T0 + timedelta(seconds=i),
        "updated_at": _T0 + timedelta(seconds=i, milliseconds=version),
        "v": version,
    }


def _position(i: int, version: int) -> dict[str, Any]:
    return {
        "product_id": _PRODUCTS[i % len(_PRODUCTS)],
        "side": "LONG" if i % 2 else "SHORT",
        "size": Decimal("0.01000000") * (1 + i % 5),
        "entry_price": Decimal(f"{61000 + i % 499}.75"),
        "mark_price": Decimal(f"{61010 + i % 499}.00"),
        "unrealized_pnl": Decimal(f"{(i % 41) - 20}.125"),
        "realized_pnl": Decimal(f"{i % 13}.5"),
        "leverage": Decimal(1 + i % 5),
        "margin_type": "CROSS",
        "funding_accrued": Decimal("-0.0042"),
        "opened_at": _T0 - timedelta(hours=i % 48),
        "updated_at": _T0 + timedelta(milliseconds=version),
    }


def _guard(i: int, version: int) -> dict[str, Any]:
    return {
        "name": ("daily_loss", "error_rate", "volatility", "max_drawdown", "staleness")[i % 5],
        "state": "OK" if i % 4 else "WARN",
        "tripped_at": None if i % 4 else _T0 + timedelta(minutes=i % 60),
        "window_seconds": 300,
        "samples": [Decimal(f"0.0{(i + k) % 10}") for k in range(8)],
        "threshold": Decimal("0.05"),
        "v": version,
    }


def _risk(i: int, version: int) -> dict[str, Any]:
    return {
        "trading_state": ("ACTIVE", "REDUCE_ONLY", "ACTIVE", "ACTIVE")[i % 4],
        "reason": None if i % 4 != 1 else "error rate above 20% over 5 min",
        "since": _T0 + timedelta(minutes=i % 90),
        "limits": {
            "max_position_usd": Decimal("25000"),
            "max_order_usd": Decimal("5000"),
            "max_leverage": Decimal(3),
            "daily_loss_usd": Decimal("1500"),
        },
        "kill_switch": False,
        "v": version,
    }


def _mark(i: int, version: int) -> dict[str, Any]:
    return {
        "product_id": _PRODUCTS[i % len(_PRODUCTS)],
        "bid": Decimal(f"{60999 + i % 997}.50"),
        "ask": Decimal(f"{61000 + i % 997}.00"),
        "mark": Decimal(f"{60999 + i % 997}.75"),
        "at": _T0 + timedelta(milliseconds=i + version),
    }


_KINDS = (  # (share of 20, key prefix, category, value)
    (12, "orders:pb-", StateCategory.ORDERS, _order),
    (2, "positions:p-", StateCategory.POSITIONS, _position),
    (3, "guards:g-", StateCategory.GUARDS, _guard),
    (2, "safety:risk-", StateCategory.SAFETY, _risk),
    (1, "marks:m-", StateCategory.MARKS, _mark),
)
_SLOTS = [kind for kind in _KINDS for _ in range(kind[0])]


def hot_set(n: int, version: int = 1) -> list[StateWrite]:
    """``n`` realistic HOT-category records (see the module docstring), keys unique and stable."""
    out: list[StateWrite] = []
    for i in range(n):
        _, prefix, category, make = _SLOTS[i % len(_SLOTS)]
        out.append(StateWrite(f"{prefix}{i:08d}", make(i, version), category))
    return out
