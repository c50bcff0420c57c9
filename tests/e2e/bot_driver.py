"""Test driver: run the bot as its own process against an external simulator (crash tests).

    python tests/e2e/bot_driver.py --cycles N [--buy | --buy-every] [--lease | --standby]

Settings come from the environment exactly as for ``perps-bot --profile dev`` (COINBASE_BASE_URL,
COINBASE_KEY_FILE, COINBASE_CA_FILE, PERPS_DATA_DIR, PERPS_SYMBOLS, ...). ``--buy`` trades a fixed small size
on the first cycle so the order path runs deterministically; without it the bot only holds (a restart that
reconciles); ``--buy-every`` buys every cycle. ``--lease`` runs the way ``perps-bot`` does (the lease, fenced
state, the gated exchange: ``commands.run_with_lease``), ``--standby`` as ``perps-bot --standby``; ``--cycles 0``
runs until SIGTERM. ``--mode-file PATH``: the test steers the strategy by writing ``buy``, ``sell`` or ``hold``
to PATH (read every cycle). ``--log``: the bot's log file as ``perps-bot`` writes it (``<log dir>/perps_bot.log``,
no console). PERPS_TEST_CRASH_AT is honoured by the bot itself. Prints ``DRIVER DONE <json>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot_v2.config import load_settings
from bot_v2.domain import Position
from bot_v2.errors import PerpsBotError
from bot_v2.orchestration.bot import run_bot
from bot_v2.orchestration.wiring import open_runtime
from bot_v2.strategies import Decision, MarketView


class BuyOnce:
    """Buys ``quantity`` on the first cycle for every symbol, then holds (``every``: buys every cycle)."""

    name = "e2e_buy_once"

    def __init__(self, quantity: Decimal, enabled: bool, every: bool = False) -> None:
        self.quantity = quantity
        self.enabled = enabled
        self.every = every
        self.seen: set[str] = set()

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        if self.enabled and (self.every or view.symbol not in self.seen):
            self.seen.add(view.symbol)
            return Decision.buy(view.symbol, self.quantity, "e2e buy")
        return Decision.hold(view.symbol, "e2e hold")


class Steered:
    """Reads ``path`` every decision: ``buy`` buys, ``sell`` sells a step of a long position, else holds."""

    name = "e2e_steered"

    def __init__(self, path: Path, quantity: Decimal) -> None:
        self.path = path
        self.quantity = quantity

    @property
    def required_history(self) -> int:
        return 0

    def decide(self, view: MarketView, position: Position | None) -> Decision:
        try:
            mode = self.path.read_text().strip()
        except OSError:
            mode = "hold"
        held = position.quantity if position is not None else Decimal(0)
        if mode == "buy":
            return Decision.buy(view.symbol, self.quantity, "e2e steered buy")
        if mode == "sell" and held > 0:
            return Decision.sell(view.symbol, min(held, self.quantity), "e2e steered sell")
        return Decision.hold(view.symbol, "e2e steered hold")


async def main(
    cycles: int,
    buy: bool,
    every: bool,
    lease: bool,
    standby: bool,
    mode_file: Path | None = None,
    log: bool = False,
) -> int:
    settings = load_settings("dev", dict(os.environ))
    if log:
        from bot_v2.monitoring.logsetup import configure_logging

        configure_logging(settings.log_dir, settings.log_level, settings.secrets, console=False)
    strategy: Any = BuyOnce(Decimal("0.001"), buy or every, every)
    if mode_file is not None:
        strategy = Steered(mode_file, Decimal("0.001"))
    if lease or standby:
        from bot_v2.orchestration.commands import run_with_lease

        summary = await run_with_lease(
            settings, standby=standby, max_cycles=cycles or None, strategy=strategy
        )
    else:
        async with open_runtime(settings) as runtime:
            summary = await run_bot(runtime, max_cycles=cycles, strategy=strategy)
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
                "fenced": summary.fenced,
                "stepped_down": summary.stepped_down,
                "stopped_by": summary.stopped_by,
            },
            default=str,
        ),
        flush=True,
    )
    if summary.fenced:  # as the CLI: a fenced run is a runtime failure
        print("error: FencedError: a newer lease holder took over", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--buy", action="store_true")
    parser.add_argument("--buy-every", action="store_true")
    parser.add_argument("--lease", action="store_true")
    parser.add_argument("--standby", action="store_true")
    parser.add_argument("--mode-file", type=Path, default=None)
    parser.add_argument("--log", action="store_true")
    args = parser.parse_args()
    try:
        code = asyncio.run(
            main(args.cycles, args.buy, args.buy_every, args.lease, args.standby, args.mode_file, args.log)
        )
    except PerpsBotError as exc:  # as the CLI: one line, its exit code
        print(f"error: {exc.one_line()}", file=sys.stderr, flush=True)
        code = exc.exit_code
    sys.exit(code)
