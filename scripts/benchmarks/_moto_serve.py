"""moto's S3 server as ``_chaos.MotoProcess`` runs it: the recorded writes are replayed BEFORE the server
listens on its port.

    python scripts/benchmarks/_moto_serve.py --port 5000 [--replay]

A restarted endpoint then answers only once it holds what it held before the kill, as a real S3 does, and no
client request meets the replay: moto records nothing while it replays (``recorder.replay_recording``), so a
write a client made meanwhile would be missing from the recording and lost at the next kill, and the replay's
own requests would compete with the client's for the server. The replay goes to a private server of this
process on another port (moto's backends are per process, so the public server then serves the same state);
``MOTO_ENABLE_RECORDING`` / ``MOTO_RECORDER_FILEPATH`` come from the environment, as for ``moto.server``.
"""

from __future__ import annotations

import argparse
import socket
import sys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def replay() -> None:
    import requests
    from moto.server import ThreadedMotoServer

    port = free_port()
    private = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    private.start()
    try:
        response = requests.post(f"http://127.0.0.1:{port}/moto-api/recorder/replay-recording", timeout=600)
        if response.status_code != 200:
            sys.exit(f"moto replay failed: HTTP {response.status_code} {response.text[:200]}")
    finally:
        private.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replay", action="store_true", help="replay the recording before listening")
    args = parser.parse_args()
    if args.replay:
        replay()
    from moto.server import main as serve

    serve(["-H", "127.0.0.1", "-p", str(args.port)])


if __name__ == "__main__":
    main()
