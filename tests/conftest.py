"""Shared test setup. Fixture modules live in tests/fixtures/ and are loaded as plugins here."""

pytest_plugins = [
    "tests.fixtures.simulator",
    "tests.fixtures.services",
    "tests.fixtures.ha",
]
