"""Wiring: build the parts a command needs from ``BotSettings`` and close them in reverse order.

``open_runtime(settings)`` yields a ``Runtime`` with the exchange broker (the real Coinbase adapter, pointed at
api.coinbase.com, an external simulator, or an in-process one), the paper broker when ``dry_run`` is set,
and the ``StateManager``. Commands (CLI, scripts) call this and nothing else to get connected.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from bot_v2.brokerages.base import Broker
from bot_v2.brokerages.coinbase import CoinbaseBroker, CoinbaseConnection
from bot_v2.config import BotSettings, BrokerKind
from bot_v2.state import StateManager

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    """Connected parts for one command. ``broker`` is what orders go to (paper when dry-run)."""

    settings: BotSettings
    exchange: Broker
    broker: Broker
    state: StateManager | None
    simulator: object | None = None


async def _start_simulator(settings: BotSettings, stack: AsyncExitStack) -> tuple[CoinbaseConnection, object]:
    """Start the in-process simulated exchange and return a connection to it."""
    from bot_v2.brokerages.simulated import SimulatorConfig, start_simulator

    config = SimulatorConfig(
        state_dir=settings.simulator.state_dir,
        seed=settings.simulator.seed,
        tick_seconds=settings.simulator.tick_seconds,
    )
    sim = await stack.enter_async_context(start_simulator(config))
    connection = dataclasses.replace(
        settings.coinbase,
        base_url=sim.base_url,
        api_key=sim.api_key,
        api_secret=sim.api_secret,
        key_file=None,
        ca_file=sim.ca_path,
        ws_url=sim.ws_url if settings.simulator.websocket else None,
    )
    logger.info("started in-process simulated exchange at %s", sim.base_url)
    return connection, sim


def exchange_connection_needs_simulator(settings: BotSettings) -> bool:
    return settings.broker is BrokerKind.SIMULATED and not settings.simulator.external


def reader_settings(settings: BotSettings) -> BotSettings:
    """Settings whose state opens read-only (DESIGN.md "Ownership"): no write, no promotion, no start-up
    repair, no restore or sync on any tier -- for commands that only look, a standby, and a bot before it
    holds its lease (``StateManager.take_ownership`` then makes it the writer)."""
    state = dataclasses.replace(settings.state, read_only=True, hot_required_at_start=False)
    return dataclasses.replace(settings, state=state)


def control_writer_settings(settings: BotSettings) -> BotSettings:
    """Settings for operator commands that only hand a request to the running bot through its control key:
    they write that key (unfenced: they hold no lease) and nothing else -- no start-up HOT repair."""
    return dataclasses.replace(settings, state=dataclasses.replace(settings.state, repair_hot_at_start=False))


@asynccontextmanager
async def open_state(settings: BotSettings) -> AsyncIterator[StateManager]:
    """Connect only the state layer (for commands that never talk to the exchange)."""
    state = await StateManager.create(settings.state)
    try:
        yield state
    finally:
        await state.close()


@asynccontextmanager
async def open_runtime(
    settings: BotSettings, *, with_state: bool = True, state: StateManager | None = None
) -> AsyncIterator[Runtime]:
    """Connect the exchange (starting the simulator if needed) and the state layer (or use ``state``, which
    the caller keeps and closes); close all on exit."""
    async with AsyncExitStack() as stack:
        simulator: object | None = None
        connection = settings.coinbase
        if exchange_connection_needs_simulator(settings):
            connection, simulator = await _start_simulator(settings, stack)
        exchange = CoinbaseBroker(connection)
        stack.push_async_callback(exchange.close)
        if state is None and with_state:
            state = await StateManager.create(settings.state)
            stack.push_async_callback(state.close)
        broker: Broker = exchange
        if settings.dry_run:
            from bot_v2.brokerages.paper import PaperBroker

            broker = PaperBroker(market=exchange)
            stack.push_async_callback(broker.close)
        yield Runtime(settings=settings, exchange=exchange, broker=broker, state=state, simulator=simulator)
