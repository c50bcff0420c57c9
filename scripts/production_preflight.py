#!/usr/bin/env python3
"""Preflight checks before a deploy: config, credentials, exchange reachability and clock skew, key
permissions, products, fee tier, derivatives, state tiers (schema, round trip, coherence), disk space, log
directory and risk-limit sanity. Each check is PASS / WARN / FAIL / SKIP with a one-line reason.
"""

from __future__ import annotations

import asyncio
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
    positive_float,
    summary_line,
)

EPILOG = """\
examples:
  scripts/production_preflight.py --profile canary            table of checks; exit 0 only if none FAILs
  scripts/production_preflight.py --profile prod --json       the same as JSON (for CI / deploy gates)
  scripts/production_preflight.py --profile dev               end to end against the in-process simulator
  scripts/production_preflight.py --profile canary --timeout 3

Clock skew: WARN above 1 s, FAIL above 5 s. A key that can transfer funds is a WARN.
The state round trip writes, reads back and deletes the key metadata:preflight in the bot's namespace.
Exit codes: 0 no FAIL, 1 a check FAILed (a config problem is a FAIL too), 2 bad arguments or .env file.
"""


def parse_args(argv: list[str]) -> dict[str, object]:
    parser = ToolArgumentParser(prog="production_preflight.py", description=__doc__, epilog=EPILOG)
    parser.add_argument("--profile", choices=[p.value for p in Profile], default=None,
                        help="settings profile (default: $PERPS_PROFILE or dev)")  # fmt: skip
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="KEY=VALUE file (default: .env)")
    parser.add_argument("--json", dest="as_json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=positive_float, default=5.0,
                        help="seconds allowed per network / state call (default 5)")  # fmt: skip
    return vars(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    from bot_v2.cli import render
    from bot_v2.tools.preflight import run_preflight

    opts = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        env = merged_environment(opts["env_file"])  # type: ignore[arg-type]
        profile = str(opts["profile"] or env.get("PERPS_PROFILE") or "dev")
        secrets = [v for k, v in env.items() if k in {"COINBASE_API_KEY", "COINBASE_API_SECRET"} and v]
        log_dir = Path(env.get("PERPS_LOG_DIR") or Path.cwd() / "var" / "logs")
        masker = configure_tool_logging(log_dir, "production_preflight", secrets)
        results = asyncio.run(run_preflight(profile, env, timeout_seconds=float(opts["timeout"])))  # type: ignore[arg-type]
    except PerpsBotError as exc:
        fail(exc.one_line(), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # last line of defence: one line, no traceback
        fail(f"internal error: {type(exc).__name__}: {exc}", 1)
    results = [r.__class__(r.name, r.status, masker.mask(r.reason), r.seconds) for r in results]
    if opts["as_json"]:
        render.print_json(checks_to_json("production_preflight", results, profile=profile))
    else:
        console = make_console()
        console.print(checks_table(f"Preflight: profile {profile}", results))
        console.print(summary_line(results))
    sys.exit(checks_exit_code(results))


if __name__ == "__main__":
    main()
