"""Test driver: run the bot as its own process against an external simulator (crash tests).

    python tests/e2e/bot_driver.py --cycles N [--buy]

Settings come from the environment exactly as for ``perps-bot --profile dev`` (COINBASE_BASE_URL,
COINBASE_KEY_FILE, COINBASE_CA_FILE, PERPS_DATA_DIR, PERPS_SYMBOLS, ...). ``--buy`` trades a fixed small size
on the first cycle so the order path runs deterministically; without it the bot only holds (a restart that
reconciles). PERPS_TEST_CRASH_AT is honoured by the bot itself. Prints ``DRIVER DONE <json summary>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from decimal import Decimal

from bot_v2.config import load_settings
from bot_v2.domain import Position
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.wiring import open_runtime
from bot_v2.strategies import Decision, MarketView


class BuyOnce:
    """Buys ``quantity`` on the first cycle for every symbol, then holds."""

    name = "e2e_buy_once"

    def __init__(self, quantity: Decimal, enabled: bool) -> None:
        self.quantity = quantity
        self.enabled = enabled
        self.seen: set[str] = set()

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        if self.enabled and view.symbol not in self.seen:
            self.seen.add(view.symbol)
            return Decision.buy(view.symbol, self.quantity, "e2e buy")
        return Decision.hold(view.symbol, "e2e hold")


async def main(cycles: int, buy: bool) -> int:
    settings = load_settings("dev", dict(os.environ))
    async with open_runtime(settings) as runtime:
        summary = await run_bot(runtime, max_cycles=cycles, strategy=BuyOnce(Decimal("0.001"), buy))
    print(
        "DRIVER DONE "
        + json.dumps(
            {
                "cycles": summary.cycles,
                "orders_placed": summary.orders_placed,
                "fills": summary.fills,
                "trading_state": summary.trading_state,
                "errors": summary.errors,
                "reconciliation": summary.reconciliation,
            },
            default=str,
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--buy", action="store_true")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.cycles, args.buy)))
