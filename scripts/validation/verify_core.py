#!/usr/bin/env python3
"""Quick health sweep of perps-bot's core surfaces: config, exchange, state, risk, loop. Each check runs in
its own temporary directory and never touches the bot's data; exit 1 if any check fails.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from bot_v2.config import Profile, merged_environment
from bot_v2.errors import PerpsBotError
from bot_v2.tools.common import (
    ToolArgumentParser,
    checks_exit_code,
    checks_table,
    checks_to_json,
    configure_tool_logging,
    fail,
    make_console,
    summary_line,
)

EPILOG = """\
examples:
  scripts/validation/verify_core.py --check all            every check on the dev profile
  scripts/validation/verify_core.py --check state --json   one check, JSON output
  scripts/validation/verify_core.py --check exchange --profile canary   read-only calls to Coinbase

Checks: config (every profile loads), exchange (products, quotes, preview), state (embedded StateManager round
trip), risk (an over-limit order is denied, a small one passes), loop (one cycle on the simulator; dev only).
Exit codes: 0 all passed, 1 a check failed, 2 bad arguments or configuration.
"""


def parse_args(argv: list[str]) -> dict[str, object]:
    from bot_v2.tools.verify import CHECKS

    parser = ToolArgumentParser(prog="verify_core.py", description=__doc__, epilog=EPILOG)
    parser.add_argument("--check", choices=["all", *CHECKS], default="all", help="which check (default all)")
    parser.add_argument("--profile", choices=[p.value for p in Profile], default="dev",
                        help="profile for the exchange / risk / loop checks (default dev)")  # fmt: skip
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="KEY=VALUE file (default: .env)")
    parser.add_argument("--json", dest="as_json", action="store_true", help="print JSON instead of a table")
    return vars(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    from bot_v2.cli import render
    from bot_v2.tools.verify import CHECKS, run_checks

    opts = parse_args(sys.argv[1:] if argv is None else argv)
    names = list(CHECKS) if opts["check"] == "all" else [str(opts["check"])]
    profile = str(opts["profile"])
    try:
        env = merged_environment(opts["env_file"])  # type: ignore[arg-type]
        log_dir = Path(env.get("PERPS_LOG_DIR") or os.path.join(os.getcwd(), "var", "logs"))
        masker = configure_tool_logging(log_dir, "verify_core")
        results = asyncio.run(run_checks(names, profile, env))
    except PerpsBotError as exc:
        fail(exc.one_line(), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # last line of defence: one line, no traceback
        fail(f"internal error: {type(exc).__name__}: {exc}", 1)
    results = [r.__class__(r.name, r.status, masker.mask(r.reason), r.seconds) for r in results]
    if opts["as_json"]:
        render.print_json(checks_to_json("verify_core", results, profile=profile))
    else:
        console = make_console()
        console.print(checks_table(f"Core checks: profile {profile}", results))
        console.print(summary_line(results))
    sys.exit(checks_exit_code(results))


if __name__ == "__main__":
    main()
