#!/usr/bin/env python3
"""The PostgreSQL promotion drill under the name issue 9 gave it: runs ``postgres_promotion_drill.py`` (same
arguments, same table, JSON ``var/benchmarks/postgres_promotion_drill.json`` and RESULT line).

    .venv/bin/python scripts/benchmarks/postgres_promote_drill.py --rounds 2
"""

from __future__ import annotations

import asyncio

from postgres_promotion_drill import drill, parse_args

if __name__ == "__main__":
    raise SystemExit(asyncio.run(drill(parse_args())))
