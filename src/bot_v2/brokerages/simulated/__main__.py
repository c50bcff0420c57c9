"""Run the simulated exchange standalone (see --help)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
from pathlib import Path

from bot_v2.brokerages.simulated.runner import SimulatorConfig, start_simulator

EPILOG = """examples:
  python -m bot_v2.brokerages.simulated --port 8443 --state-dir var/data/simulator
  python -m bot_v2.brokerages.simulated --port 0 --state-dir /tmp/sim --seed 7 --tick-seconds 1

On start it prints one line:
  SIMULATOR READY base_url=127.0.0.1:PORT ca=PATH key_file=PATH ws_url=wss://127.0.0.1:WSPORT/ws admin_token=TOKEN
Point coinbase.rest.RESTClient(key_file=KEY_FILE, base_url=BASE_URL) at it, with
client.session.trust_env = False and client.session.verify = CA; the WebSocket feed (coinbase.websocket.WSClient
or perps-bot's COINBASE_WS_URL) at WS_URL, served over TLS with the same CA (--ws-plain: ws://).
TOKEN (new each run, printed nowhere else) unlocks the fault switches and price hooks:
POST https://BASE_URL/__simulator/control/<switch> with header X-Simulator-Admin-Token: TOKEN and a JSON object
of arguments (bot_v2.brokerages.simulated.RemoteSimulatorControl; docs/SIMULATOR.md).
SIGINT/SIGTERM persist state and exit 0.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot_v2.brokerages.simulated",
        description="A local Coinbase Advanced Trade-compatible exchange over TLS, with a matching engine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 picks a free one; default 0)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--state-dir", type=Path, required=True, help="where state, certificates and key live"
    )
    parser.add_argument("--seed", type=int, default=42, help="price-walk seed (default 42)")
    parser.add_argument("--tick-seconds", type=float, default=0.25, help="price step interval; 0 disables")
    parser.add_argument("--rate-limit", type=float, default=30.0, help="requests per second per key; 0 = off")
    parser.add_argument("--ws-plain", action="store_true", help="serve the WebSocket feed over plain ws://")
    parser.add_argument("--no-auth", action="store_true", help="accept requests without a valid JWT")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    config = SimulatorConfig(
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        seed=args.seed,
        tick_seconds=args.tick_seconds,
        auth_required=not args.no_auth,
        rate_limit_per_second=args.rate_limit or None,
        websocket_plain=args.ws_plain,
        admin_token=secrets.token_urlsafe(32),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with start_simulator(config) as sim:
        print(
            f"SIMULATOR READY base_url={sim.base_url} ca={sim.ca_path} key_file={sim.key_file} ws_url={sim.ws_url}"
            f" admin_token={config.admin_token}",
            flush=True,
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
