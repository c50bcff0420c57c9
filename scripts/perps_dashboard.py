#!/usr/bin/env python3
"""Live terminal dashboard of one perps-bot: trading state, positions & PnL, open orders, recent events,
alerts, state tiers. Read-only: it reads the bot's state stores, health.json and events.jsonl; it talks to
the exchange only with --with-exchange.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot_v2.config import Profile, load_settings, merged_environment
from bot_v2.errors import PerpsBotError
from bot_v2.tools.common import (
    ToolArgumentParser,
    configure_tool_logging,
    fail,
    make_console,
    positive_float,
)

EPILOG = """\
examples:
  scripts/perps_dashboard.py --profile dev                      live view, refresh every 5 s (Ctrl-C quits)
  scripts/perps_dashboard.py --profile prod --refresh 2 --window-min 60
  scripts/perps_dashboard.py --profile dev --once               one frame and exit (cron, tests)
  scripts/perps_dashboard.py --profile dev --once --json        the frame's data as JSON
  scripts/perps_dashboard.py --profile canary --with-exchange   also balances and quotes from the exchange

The dashboard reads var/data/perps_bot/<profile>/ (PERPS_DATA_DIR) and the profile's state stores.
health.json older than 3 intervals is shown in red: the loop is stuck or dead.
Exit codes: 0 ok (also Ctrl-C), 1 runtime failure, 2 bad arguments or configuration.
"""


def parse_args(argv: list[str]) -> object:
    parser = ToolArgumentParser(prog="perps_dashboard.py", description=__doc__, epilog=EPILOG)
    parser.add_argument("--profile", choices=[p.value for p in Profile], default=None,
                        help="settings profile (default: $PERPS_PROFILE or dev)")  # fmt: skip
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="KEY=VALUE file (default: .env)")
    parser.add_argument(
        "--refresh", type=positive_float, default=5.0, help="seconds between frames (default 5)"
    )
    parser.add_argument("--window-min", type=positive_float, default=15.0,
                        help="minutes of events to show and judge (default 15)")  # fmt: skip
    parser.add_argument("--once", action="store_true", help="render one frame and exit")
    parser.add_argument("--json", dest="as_json", action="store_true", help="with --once: print JSON")
    parser.add_argument("--with-exchange", action="store_true",
                        help="also read balances and quotes from the exchange (dev: a private simulator)")  # fmt: skip
    return parser.parse_args(argv)


async def run(args: object) -> int:
    from rich.live import Live

    from bot_v2.cli import render
    from bot_v2.tools.dashboard import DashboardSource, build_frame, build_layout, frame_json

    opts = vars(args)
    env = merged_environment(opts["env_file"])
    settings = load_settings(opts["profile"] or env.get("PERPS_PROFILE") or "dev", env)
    configure_tool_logging(settings.log_dir, "perps_dashboard", settings.secrets)
    console = make_console()
    source = DashboardSource(
        settings,
        window_minutes=opts["window_min"],
        refresh_seconds=opts["refresh"],
        with_exchange=opts["with_exchange"],
    )
    async with source:
        if opts["once"]:
            data = await source.snapshot()
            if opts["as_json"]:
                render.print_json(frame_json(data))
            else:
                console.print(build_frame(data))
            return 0
        data = await source.snapshot()
        with Live(build_layout(data), console=console, screen=True, auto_refresh=False) as live:
            while True:
                await asyncio.sleep(opts["refresh"])
                live.update(build_layout(await source.snapshot()), refresh=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if vars(args)["as_json"] and not vars(args)["once"]:
        fail("--json needs --once", 2)
    try:
        code = asyncio.run(run(args))
    except KeyboardInterrupt:
        code = 0  # Ctrl-C is how a live dashboard ends
    except PerpsBotError as exc:
        fail(exc.one_line(), exc.exit_code)
    except Exception as exc:  # last line of defence: one line, no traceback
        fail(f"internal error: {type(exc).__name__}: {exc}", 1)
    sys.exit(code)


if __name__ == "__main__":
    main()
