#!/usr/bin/env python3
"""Check a running perps-bot's Prometheus endpoint (the previous bot's exporter command, kept for its runbook).

perps-bot serves its metrics itself, on 127.0.0.1 at its profile's port (prod 9102, canary 9103, spot 9104,
dev 9105, a dry run + 10; METRICS_PORT / METRICS_HOST): there is no exporter process to start. This command
scrapes that endpoint once, says whether it answers, for which bot and how old the last cycle is, and with
--metrics-file writes the scrape to that file (replaced atomically on every run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot_v2.config import CliOverrides, Profile, load_settings, merged_environment
from bot_v2.errors import PerpsBotError
from bot_v2.tools.common import ToolArgumentParser, fail, positive_float

EPILOG = """\
examples:
  scripts/monitoring/export_metrics.py --profile prod                 is 127.0.0.1:9102/metrics up and fresh?
  scripts/monitoring/export_metrics.py --profile prod --metrics-file var/metrics/prod.prom
  scripts/monitoring/export_metrics.py --profile prod --dry-run --json    the paper bot's endpoint, as JSON

Exit codes: 0 answering with a recent cycle, 1 not answering or stale, 2 bad arguments or configuration
(metrics off: METRICS_PORT=0).
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ToolArgumentParser(prog="export_metrics.py", description=__doc__, epilog=EPILOG)
    parser.add_argument("--profile", choices=[p.value for p in Profile], default=None,
                        help="settings profile (default: $PERPS_PROFILE or dev)")  # fmt: skip
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="KEY=VALUE file (default: .env)")
    parser.add_argument("--dry-run", action="store_true", help="the profile's paper bot (its port + 10)")
    parser.add_argument("--metrics-file", type=Path, default=None, help="also write the scrape to this file")
    parser.add_argument("--timeout", type=positive_float, default=5.0, help="seconds to wait (default 5)")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from bot_v2.tools.metrics_check import check_metrics, write_atomically

    args = parse_args(sys.argv[1:] if argv is None else argv)
    out: Path | None = args.metrics_file
    try:
        env = merged_environment(args.env_file)
        profile = str(args.profile or env.get("PERPS_PROFILE") or "dev")
        settings = load_settings(profile, env, CliOverrides(dry_run=True) if args.dry_run else None)
        report = check_metrics(settings, timeout=args.timeout)
        if report.answering and out is not None:
            write_atomically(out, report.text)
    except PerpsBotError as exc:
        fail(exc.one_line(), exc.exit_code)
    except OSError as exc:  # --metrics-file not writable
        fail(f"--metrics-file: {exc.strerror or exc}: {exc.filename}", 2)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.message + (f"; wrote {out}" if report.answering and out else ""))
    sys.exit(0 if report.answering and report.fresh else 1)


if __name__ == "__main__":
    main()
