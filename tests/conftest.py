"""Shared test setup. Fixture modules live in tests/fixtures/ and are loaded as plugins here."""

import atexit
import os
import shutil
import sys
import tempfile

# A running bot serves metrics by default on its profile's fixed port (9105 for dev). Bots the tests start --
# in-process or as subprocesses, which inherit this -- serve none unless a test asks for a port of its own, so
# parallel tests (and other suites on the machine) never share one.
os.environ.setdefault("METRICS_PORT", "0")

# Hundreds of tests start Python subprocesses (the CLI, drills, tools, bots). With PYTHONDONTWRITEBYTECODE set
# and no .pyc in the tree or the venv (as on the CI machines), each of them compiled every module it imports:
# ~0.6 s of CPU per start (a CLI call took 1.0 s instead of 0.4 s). The session's processes share a bytecode
# cache of their own in a temp dir instead (as a deployed bot has its .pyc, and as the drills and the chaos soak
# already give their bots); nothing is written into the tree or the venv, and the cache is removed at exit.
if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    _pycache = tempfile.mkdtemp(prefix="perps-tests-pycache-")
    atexit.register(shutil.rmtree, _pycache, ignore_errors=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    os.environ["PYTHONPYCACHEPREFIX"] = _pycache
    sys.pycache_prefix = _pycache  # this process too: the modules it imports from here on warm the cache
    sys.dont_write_bytecode = False

pytest_plugins = [
    "tests.fixtures.simulator",
    "tests.fixtures.services",
    "tests.fixtures.ha",
]
