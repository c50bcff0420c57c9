#!/usr/bin/env python3
"""Daily PnL export of one perps-bot, per UTC day and symbol, from its stored fills (read-only).

Columns: day, symbol, fills, bought, sold, buy_notional_usd, sell_notional_usd, fees_usd, realized_pnl_usd
(gross of fees, as the bot books it), net_pnl_usd, position_end. Live and archived fills both count.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from pathlib import Path

from bot_v2.config import Profile, load_settings, merged_environment
from bot_v2.errors import PerpsBotError
from bot_v2.tools.common import ToolArgumentParser, configure_tool_logging, fail

EPILOG = """\
examples:
  scripts/export_pnl.py --profile prod                               every day, CSV on stdout
  scripts/export_pnl.py --profile prod --since 2026-11-01 --format json
  scripts/export_pnl.py --profile prod --day 2026-11-29 --out /backup/pnl_20261129.csv

Exit codes: 0 ok, 1 runtime failure (a state store unreachable), 2 bad arguments or configuration.
"""


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected YYYY-MM-DD, got {text!r}") from None


def parse_args(argv: list[str]) -> object:
    parser = ToolArgumentParser(prog="export_pnl.py", description=__doc__, epilog=EPILOG)
    parser.add_argument("--profile", choices=[p.value for p in Profile], default=None,
                        help="settings profile (default: $PERPS_PROFILE or dev)")  # fmt: skip
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="KEY=VALUE file (default: .env)")
    parser.add_argument("--day", type=_day, default=None, help="one UTC day (YYYY-MM-DD)")
    parser.add_argument("--since", type=_day, default=None, help="first UTC day listed")
    parser.add_argument("--until", type=_day, default=None, help="last UTC day listed")
    parser.add_argument("--format", choices=["csv", "json"], default="csv", help="csv (default) or json")
    parser.add_argument("--out", type=Path, default=None, help="write to this file instead of stdout")
    return parser.parse_args(argv)


async def run(args: object) -> int:
    from bot_v2.cli import render
    from bot_v2.tools.pnl_export import daily_rows, load_fills, to_csv, to_json_rows

    opts = vars(args)
    env = merged_environment(opts["env_file"])
    settings = load_settings(opts["profile"] or env.get("PERPS_PROFILE") or "dev", env)
    configure_tool_logging(settings.log_dir, "export_pnl", settings.secrets)
    since, until = (opts["day"], opts["day"]) if opts["day"] else (opts["since"], opts["until"])
    fills, sizes = await load_fills(settings)
    rows = daily_rows(fills, sizes, since, until)
    if opts["format"] == "csv":
        text = to_csv(rows)
    else:
        import json

        text = json.dumps({"bot_id": settings.bot_id, "days": to_json_rows(rows)}, indent=2) + "\n"
    if opts["out"] is not None:
        opts["out"].write_text(text, encoding="utf-8")
        render.print_line(f"wrote {len(rows)} rows to {opts['out']}")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    opts = vars(args)
    if opts["day"] and (opts["since"] or opts["until"]):
        fail("--day: not with --since/--until", 2)
    try:
        code = asyncio.run(run(args))
    except PerpsBotError as exc:
        fail(exc.one_line(), exc.exit_code)
    except Exception as exc:  # last line of defence: one line, no traceback
        fail(f"internal error: {type(exc).__name__}: {exc}", 1)
    sys.exit(code)


if __name__ == "__main__":
    main()
