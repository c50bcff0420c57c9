"""A standalone simulator from another process: start it, read its READY line, flip its switches over HTTPS.

``StandaloneSimulator(state_dir)`` runs ``python -m bot_v2.brokerages.simulated`` as a child process and exposes
what the READY line gives (``base_url``, ``ca_path``, ``key_file``, ``ws_url``) plus ``control``, a
``RemoteSimulatorControl``: the in-process ``SimulatorControl``'s methods, each one POST to the control routes
(``admin.py``) with the run's admin token. Used by drills and by operators running chaos by hand.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests

from bot_v2.brokerages.simulated.admin import ADMIN_PREFIX, ADMIN_TOKEN_HEADER
from bot_v2.monitoring.masking import mask_secret

__all__ = ["RemoteSimulatorControl", "SimulatorControlError", "StandaloneSimulator", "parse_ready_line"]

READY_PREFIX = "SIMULATOR READY "
DEFAULT_TIMEOUT_SECONDS = 30.0


class SimulatorControlError(RuntimeError):
    """A control request the simulator refused: ``status`` 401 (token), 400 (switch or argument), ..."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"simulator control answered {status} {error}: {message}")
        self.status, self.error, self.message = status, error, message


class RemoteSimulatorControl:
    """The switches of a simulator in another process, by the names and defaults of ``SimulatorControl``.

    Each call is one HTTPS request (verified against the simulator's CA) that returns once the switch is set on
    the simulator's loop. Thread-safe (one request at a time)."""

    def __init__(
        self,
        base_url: str,
        ca_path: Path | str,
        admin_token: str,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        host = base_url if "://" in base_url else f"https://{base_url}"
        self.url = host.rstrip("/") + ADMIN_PREFIX
        self._token = admin_token
        self._timeout = timeout_seconds
        self._session = requests.Session()
        self._session.trust_env = False  # REQUESTS_CA_BUNDLE / proxies would override verify and the target
        self._session.verify = str(ca_path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RemoteSimulatorControl(url={self.url!r}, admin_token={mask_secret(self._token)!r})"

    def call(self, switch: str, **arguments: Any) -> Any:
        """POST ``arguments`` to ``switch``; its result, or ``SimulatorControlError``."""
        with self._lock:
            response = self._session.post(
                self.url + switch,
                json=arguments,
                headers={ADMIN_TOKEN_HEADER: self._token},
                timeout=self._timeout,
            )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200:
            raise SimulatorControlError(
                response.status_code, str(body.get("error", "")), str(body.get("message", response.text))
            )
        return body.get("result")

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RemoteSimulatorControl:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- prices and the walk

    def set_price(self, symbol: str, price: Decimal | str) -> None:
        """Move ``symbol`` to ``price`` and match resting orders against it."""
        self.call("set_price", symbol=symbol, price=str(price))

    def advance(self, steps: int = 1) -> None:
        self.call("advance", steps=steps)

    def price(self, symbol: str) -> Decimal:
        return Decimal(self.call("price", symbol=symbol))

    def set_ticking(self, enabled: bool) -> None:
        self.call("set_ticking", enabled=enabled)

    # --- REST faults

    def set_latency(self, seconds: float) -> None:
        self.call("set_latency", seconds=seconds)

    def fail_next(self, n: int, status: int = 503) -> None:
        self.call("fail_next", n=n, status=status)

    def drop_next(self, n: int) -> None:
        self.call("drop_next", n=n)

    def lose_acks_next(self, n: int, land_after_seconds: float = 0.0) -> None:
        self.call("lose_acks_next", n=n, land_after_seconds=land_after_seconds)

    def malformed_next(self, n: int, kind: str = "random", seed: int = 0) -> None:
        self.call("malformed_next", n=n, kind=kind, seed=seed)

    def set_rate_limit(self, per_second: float | None) -> None:
        self.call("set_rate_limit", per_second=per_second)

    def reset_faults(self) -> None:
        self.call("reset_faults")

    # --- the WebSocket feed

    def close_websockets(self, code: int = 1011) -> None:
        self.call("close_websockets", code=code)

    def refuse_websockets(self, refusing: bool = True) -> None:
        self.call("refuse_websockets", refusing=refusing)

    def stall_websockets(self, stalled: bool = True) -> None:
        self.call("stall_websockets", stalled=stalled)

    def skip_websocket_sequence(self, n: int = 1) -> None:
        self.call("skip_websocket_sequence", n=n)

    def websocket_connections(self) -> int:
        return int(self.call("websocket_connections"))

    def register_key(self, name: str, public_pem: str) -> None:
        self.call("register_key", name=name, public_pem=public_pem)


def parse_ready_line(line: str) -> dict[str, str]:
    """The ``key=value`` fields of a ``SIMULATOR READY ...`` line (``ValueError`` for anything else)."""
    line = line.strip()
    if not line.startswith(READY_PREFIX):
        raise ValueError("not a SIMULATOR READY line")
    return dict(part.split("=", 1) for part in line.removeprefix(READY_PREFIX).split() if "=" in part)


class StandaloneSimulator:
    """``python -m bot_v2.brokerages.simulated`` as a child process, serving once the constructor returns.

    ``args`` are extra command-line flags (``--seed``, ``--tick-seconds``, ``--rate-limit``, ``--ws-plain``...);
    ``env`` the child's environment (default this process's), with the source root put first on its PYTHONPATH.
    The admin token is read from the READY line and kept only in ``control``. ``stop()`` (or leaving the ``with``
    block) sends SIGTERM, so the simulator persists its state, and kills it if it has not exited in 10 s."""

    def __init__(
        self,
        state_dir: Path,
        *args: str,
        stderr: IO[Any] | int | None = subprocess.DEVNULL,
        startup_timeout_seconds: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        source_root = str(Path(__file__).resolve().parents[3])  # .../src, where bot_v2 lives
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (source_root, child_env.get("PYTHONPATH", "")) if p
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot_v2.brokerages.simulated", "--state-dir", str(state_dir), *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=child_env,
        )
        try:
            fields = parse_ready_line(self._read_line(startup_timeout_seconds))
        except BaseException:
            self.stop()
            raise
        self.pid = self.process.pid
        self.state_dir = state_dir
        self.base_url = fields["base_url"]
        self.ca_path = Path(fields["ca"])
        self.key_file = Path(fields["key_file"])
        self.ws_url: str | None = None if fields.get("ws_url", "None") == "None" else fields["ws_url"]
        self.control = RemoteSimulatorControl(self.base_url, self.ca_path, fields["admin_token"])

    def _read_line(self, timeout_seconds: float) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        buffer = b""
        deadline = time.monotonic() + timeout_seconds
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"the standalone simulator printed no READY line within {timeout_seconds}s"
                )
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the standalone simulator exited ({self.process.wait()}) before READY")
            buffer += chunk
        return buffer.split(b"\n", 1)[0].decode()

    def stop(self) -> int | None:
        """SIGTERM (state persisted), wait, kill after 10 s; the exit code. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        control = getattr(self, "control", None)
        if control is not None:
            control.close()
        return self.process.returncode

    def __enter__(self) -> StandaloneSimulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"StandaloneSimulator(pid={self.process.pid}, base_url={getattr(self, 'base_url', None)!r})"
