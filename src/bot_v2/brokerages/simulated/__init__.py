"""A local exchange that speaks the Coinbase Advanced Trade REST API over TLS, backed by a matching engine.

Start it with :func:`run_simulator_in_thread` (own loop, daemon thread) or
``async with start_simulator(cfg)``;
point ``coinbase.rest.RESTClient(base_url=sim.base_url, ...)`` at it and trust ``sim.ca_path``.
``StandaloneSimulator`` runs it as its own process, whose switches ``RemoteSimulatorControl`` flips over HTTPS.
See docs/SIMULATOR.md.
"""

from bot_v2.brokerages.simulated.remote import (
    RemoteSimulatorControl,
    SimulatorControlError,
    StandaloneSimulator,
)
from bot_v2.brokerages.simulated.runner import (
    RunningSimulator,
    SimulatorConfig,
    SimulatorControl,
    run_simulator_in_thread,
    start_simulator,
)

__all__ = [
    "RemoteSimulatorControl",
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorControl",
    "SimulatorControlError",
    "StandaloneSimulator",
    "run_simulator_in_thread",
    "start_simulator",
]
