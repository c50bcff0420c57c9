"""A local exchange that speaks the Coinbase Advanced Trade REST API over TLS, backed by a matching engine.

Start it with :func:`run_simulator_in_thread` (own loop, daemon thread) or
``async with start_simulator(cfg)``;
point ``coinbase.rest.RESTClient(base_url=sim.base_url, ...)`` at it and trust ``sim.ca_path``.
See docs/SIMULATOR.md.
"""

from bot_v2.brokerages.simulated.runner import (
    RunningSimulator,
    SimulatorConfig,
    SimulatorControl,
    run_simulator_in_thread,
    start_simulator,
)

__all__ = [
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorControl",
    "run_simulator_in_thread",
    "start_simulator",
]
