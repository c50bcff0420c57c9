"""Hypothesis settings for the fuzz tests: a time-bounded CI share by default, a long run on demand.

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/fuzz -q -p no:cacheprovider \
        --hypothesis-show-statistics

``fuzz(n)`` gives a test ``n`` examples in CI (``ci``, the default: the whole fuzz set stays well under 40 s on
2 cores) and ``LONG_FACTOR * n`` under ``HYPOTHESIS_PROFILE=long`` (over 10,000 cases in total; the counts
of the documented run are in docs/TESTING.md). No example database: CI runs are reproducible from the seed
hypothesis prints, and a failure found by the long run is pinned with ``@example`` as a regression case.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
LONG = PROFILE == "long"
LONG_FACTOR = 25

F = TypeVar("F", bound=Callable[..., Any])


def fuzz(examples: int) -> Callable[[F], F]:
    """Settings for one fuzz test: ``examples`` cases in CI, ``LONG_FACTOR`` times as many in the long run."""
    return settings(
        max_examples=examples * LONG_FACTOR if LONG else examples,
        deadline=None,  # the machine is shared: a slow example is not a failure
        database=None,
        derandomize=not LONG,  # CI: the same cases every run; long: new ones each time
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        print_blob=True,
    )
