"""Balances with holds, and futures positions (entry VWAP, realized PnL)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot_v2.brokerages.simulated.models import ZERO, SimPosition, decode_record, encode_record

__all__ = ["Balance", "Ledger", "apply_position_fill"]


@dataclass(slots=True)
class Balance:
    available: Decimal = ZERO
    hold: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.available + self.hold


class Ledger:
    """Per-currency balances; a hold moves money from available to hold until released."""

    def __init__(self, starting: Mapping[str, Decimal]) -> None:
        self.balances: dict[str, Balance] = {ccy: Balance(Decimal(v)) for ccy, v in starting.items()}
        self.positions: dict[str, SimPosition] = {}

    def balance(self, currency: str) -> Balance:
        if currency not in self.balances:
            self.balances[currency] = Balance()
        return self.balances[currency]

    def available(self, currency: str) -> Decimal:
        return self.balance(currency).available

    def add(self, currency: str, amount: Decimal) -> None:
        """Credit (or, negative, debit) the available balance."""
        self.balance(currency).available += amount

    def hold(self, currency: str, amount: Decimal) -> None:
        bal = self.balance(currency)
        bal.available -= amount
        bal.hold += amount

    def release(self, currency: str, amount: Decimal) -> None:
        bal = self.balance(currency)
        bal.hold -= amount
        bal.available += amount

    def position(self, product_id: str) -> SimPosition:
        if product_id not in self.positions:
            self.positions[product_id] = SimPosition(product_id)
        return self.positions[product_id]

    def to_state(self) -> dict[str, Any]:
        return {
            "balances": {c: [str(b.available), str(b.hold)] for c, b in self.balances.items()},
            "positions": [encode_record(p) for p in self.positions.values()],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.balances = {c: Balance(Decimal(a), Decimal(h)) for c, (a, h) in state["balances"].items()}
        self.positions = {}
        for raw in state["positions"]:
            pos = decode_record(SimPosition, raw)
            self.positions[pos.product_id] = pos


def apply_position_fill(
    pos: SimPosition, signed_size: Decimal, price: Decimal, contract_size: Decimal
) -> Decimal:
    """Net a fill of ``signed_size`` contracts into ``pos``; return the realized PnL in quote currency."""
    net = pos.net_size
    new = net + signed_size
    realized = ZERO
    if net == 0 or (net > 0) == (signed_size > 0):
        pos.entry_vwap = (abs(net) * pos.entry_vwap + abs(signed_size) * price) / abs(new)
    else:
        closing = min(abs(signed_size), abs(net))
        direction = 1 if net > 0 else -1
        realized = closing * (price - pos.entry_vwap) * contract_size * direction
        if new == 0:
            pos.entry_vwap = ZERO
        elif (new > 0) != (net > 0):
            pos.entry_vwap = price
    pos.net_size = new
    pos.realized_pnl += realized
    pos.daily_realized_pnl += realized
    return realized
