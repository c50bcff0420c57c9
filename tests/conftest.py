"""Shared test setup. Fixture modules live in tests/fixtures/ and are loaded as plugins here."""

import os

# A running bot serves metrics by default on its profile's fixed port (9105 for dev). Bots the tests start --
# in-process or as subprocesses, which inherit this -- serve none unless a test asks for a port of its own, so
# parallel tests (and other suites on the machine) never share one.
os.environ.setdefault("METRICS_PORT", "0")

pytest_plugins = [
    "tests.fixtures.simulator",
    "tests.fixtures.services",
    "tests.fixtures.ha",
]
