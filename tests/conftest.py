"""Shared test setup. Fixture modules live in tests/fixtures/ and are loaded as plugins here."""

import atexit
import os
import shutil
import stat
import sys
import tempfile

# A running bot serves metrics by default on its profile's fixed port (9105 for dev). Bots the tests start --
# in-process or as subprocesses, which inherit this -- serve none unless a test asks for a port of its own, so
# parallel tests (and other suites on the machine) never share one.
os.environ.setdefault("METRICS_PORT", "0")

# Hundreds of tests start Python subprocesses (the CLI, drills, tools, bots). With PYTHONDONTWRITEBYTECODE set
# and no .pyc in the tree or the venv (as on the CI machines), each of them compiled every module it imports:
# ~0.6 s of CPU per start (a CLI call took 1.0 s instead of 0.4 s). The session's processes share a bytecode
# cache outside the tree instead (as a deployed bot has its .pyc, and as the drills and the chaos soak already
# give their bots): nothing is written into the tree or the venv.


def _bytecode_cache() -> str:
    """This user's cache in the temp dir, kept between sessions (collecting the suite: 11 s -> 3 s once warm;
    .pyc files are checked against their source's mtime and size as in any __pycache__); a fresh one removed at
    exit when that directory is not this user's alone."""
    kept = os.path.join(tempfile.gettempdir(), f"perps-tests-pycache-{os.getuid()}")
    try:
        os.mkdir(kept, 0o700)
    except FileExistsError:
        pass
    except OSError:
        kept = ""
    if kept:
        info = os.lstat(kept)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
            return kept
    fresh = tempfile.mkdtemp(prefix="perps-tests-pycache-")
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)
    return fresh


if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    _pycache = _bytecode_cache()
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    os.environ["PYTHONPYCACHEPREFIX"] = _pycache
    sys.pycache_prefix = _pycache  # this process too: the modules it imports from here on use the cache
    sys.dont_write_bytecode = False

pytest_plugins = [
    "tests.fixtures.simulator",
    "tests.fixtures.services",
    "tests.fixtures.ha",
]
