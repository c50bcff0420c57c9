"""Parts of the chaos soak (``chaos_soak.py``) that are not the soak itself; the standby takeover and engine
crash drills share the exchange parts.

* ``MotoProcess``: moto's S3 server as a process of its own, so the soak can SIGKILL and SIGSTOP it like
  redis-server and PostgreSQL. moto keeps objects in memory; a real endpoint keeps them on disk. So the server
  records every request it serves (moto's recorder) and a restarted one replays the recorded writes before it
  listens on its port (``_moto_serve.py``): what was stored before the kill is there after it, and no client
  request meets the replay;
* ``Simulator``: the exchange as a standalone process (it outlives every bot), and ``child_environ`` for the
  processes the drills start;
* ``exchange_view``: the bot's orders (by client order id prefix) and their fills, read from the exchange
  through the project's adapter (``CoinbaseBroker``, the SDK underneath), every page;
* ``FileSegment``: the lines one process appended to a file that several processes of one data dir write one
  after another (a restarted bot appends to the ``events.jsonl`` and the log of the one it replaced).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
for _path in (str(ROOT), str(ROOT / "src")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from tests.fixtures.services import S3_TEST_CREDENTIALS, ServiceError, free_port  # noqa: E402

from bot_v2.brokerages.coinbase import CoinbaseBroker, CoinbaseConnection  # noqa: E402
from bot_v2.brokerages.simulated import StandaloneSimulator  # noqa: E402
from bot_v2.domain import Fill, Order, Symbol  # noqa: E402

READY_TIMEOUT_SECONDS = 20.0
REPLAY_TIMEOUT_SECONDS = 120.0
SERVE = Path(__file__).with_name("_moto_serve.py")
#: Requests that change what moto stores (GET / HEAD / OPTIONS are not replayed).
WRITES = frozenset({"PUT", "POST", "DELETE"})


def parse_ts(value: object) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _port_open(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- services ---------------------------------------------------------------------------------------------


class MotoProcess:
    """moto's S3 server in a process of its own on 127.0.0.1, durable across ``kill()`` (see the module doc)."""

    external = False

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.record = workdir / "moto-requests.jsonl"
        self.log = workdir / "moto.log"
        self.replayed = 0  # writes replayed by the last start
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.replayed = self._compact()
        env = {
            **os.environ,
            "MOTO_ENABLE_RECORDING": "true",
            "MOTO_RECORDER_FILEPATH": str(self.record),
        }
        command = [sys.executable, str(SERVE), "--port", str(self.port)]
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                command + ["--replay"] * bool(self.replayed),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        # the port opens once the recorded writes are replayed (_moto_serve.py)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS + REPLAY_TIMEOUT_SECONDS * bool(self.replayed)
        while not _port_open(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise ServiceError(f"moto server on port {self.port} did not start (see {self.log})")
            time.sleep(0.02)

    def _compact(self) -> int:
        """Keep the recorded writes only, the last one per object (a torn last line is dropped); return
        how many there are to replay."""
        if not self.record.exists():
            return 0
        last: dict[tuple[str, str], dict[str, Any]] = {}
        for line in self.record.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            method = str(entry.get("method", "")).upper()
            if method not in WRITES:
                continue
            parts = urlsplit(str(entry.get("url", "")))
            # an object PUT / DELETE supersedes the previous write of that object; anything with a query
            # (bucket settings, multi-object deletes) is kept in order under its own key
            key = (parts.path, parts.query) if parts.query else (parts.path, "")
            if method == "DELETE" and not parts.query and key in last:
                del last[key]
                continue
            last.pop(key, None)
            last[key] = entry  # re-inserted: the dict keeps the order of the last writes
        self.record.write_text("".join(json.dumps(e) + "\n" for e in last.values()))
        return len(last)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        deadline = time.monotonic() + 5
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the server process (SIGSTOP / SIGCONT)."""
        if self._proc is None or self._proc.poll() is not None:
            raise ServiceError("moto server is not running")
        os.killpg(self._proc.pid, sig)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL; the next ``start()`` replays what was written."""
        self._signal(signal.SIGKILL)

    def create_bucket(self, bucket: str) -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", **S3_TEST_CREDENTIALS)
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=bucket)
        finally:
            client.close()

    def objects(self, bucket: str) -> dict[str, str]:
        """Every object of ``bucket``: key -> ETag (to prove a restart kept them)."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", **S3_TEST_CREDENTIALS)
        try:
            out: dict[str, str] = {}
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
            return out
        finally:
            client.close()


# --- the exchange -----------------------------------------------------------------------------------------


def child_environ(env: dict[str, str]) -> dict[str, str]:
    """This environment without the bot's settings (PERPS_/COINBASE_/RISK_), plus ``env`` and the import path."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return full


class Simulator(StandaloneSimulator):
    """A standalone simulator process: the one exchange every bot of the drill trades on (no rate limit, a
    price step every 0.25 s, without the bot's settings in its environment)."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, "--rate-limit", "0", "--tick-seconds", "0.25", env=child_environ({}))
        self.ca_file = self.ca_path

    def close(self) -> None:
        self.stop()


async def exchange_view(
    base_url: str, key_file: Path, ca_file: Path, prefix: str, symbol: str = "BTC-USD"
) -> tuple[list[Order], list[Fill]]:
    """The orders whose client order id starts with ``prefix`` and their fills, via ``CoinbaseBroker`` (the
    adapter the bot trades through, so orders and fills are parsed as the bot parses them; every page).

    Each order once per order id and each fill once per trade id: the exchange pages by offset, newest first,
    so an order created between two page requests pushes one the first page had onto the second. A client
    order id on two DIFFERENT order ids stays two orders (a duplicate the caller must see)."""
    connection = CoinbaseConnection(base_url=base_url, key_file=key_file, ca_file=ca_file)
    async with CoinbaseBroker(connection) as broker:
        broker.page_size = 1000  # the simulator's most: fewer requests while a fault may be on
        orders = await broker.list_orders(symbols=[Symbol(symbol)])
        unique = {o.order_id: o for o in reversed(orders)}  # the first page's copy wins
        ours = [o for o in unique.values() if o.client_order_id.startswith(prefix)]
        ids = [o.order_id for o in ours]
        fills: list[Fill] = []
        for start in range(0, len(ids), 100):
            fills += await broker.list_fills(order_ids=ids[start : start + 100])
    return ours, list({f.trade_id: f for f in fills}.values())


# --- the bots' events -------------------------------------------------------------------------------------


@dataclass
class FileSegment:
    """The part of ``path`` one process wrote: from ``start`` (the file's size when it was spawned) to
    ``end`` (its size once the process was seen gone; None while it runs). Read incrementally: each call
    parses only what was appended since the last one, complete lines only."""

    path: Path
    start: int = 0
    end: int | None = None
    _read: int = field(default=-1, repr=False)
    _lines: list[str] = field(default_factory=list, repr=False)
    _events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _parsed: int = field(default=0, repr=False)

    @classmethod
    def at_end_of(cls, path: Path) -> FileSegment:
        return cls(path, path.stat().st_size if path.exists() else 0)

    def position(self) -> int:
        """Where the file ends now (within the segment)."""
        size = self.path.stat().st_size if self.path.exists() else self.start
        return max(self.start, size if self.end is None else min(size, self.end))

    def close(self) -> None:
        self.end = self.position()

    def lines(self) -> list[str]:
        pos = self.start if self._read < 0 else self._read
        limit = self.position()
        if limit > pos:
            with self.path.open("rb") as handle:
                handle.seek(pos)
                data = handle.read(limit - pos)
            complete = data[: data.rfind(b"\n") + 1]
            self._lines += complete.decode(errors="replace").splitlines()
            pos += len(complete)
        self._read = pos
        return self._lines

    def text(self) -> str:
        return "\n".join(self.lines())

    def events(self) -> list[dict[str, Any]]:
        """The JSON events, in the order written."""
        lines = self.lines()
        for line in lines[self._parsed :]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                self._events.append(record)
        self._parsed = len(lines)
        return self._events
