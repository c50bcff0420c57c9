#!/usr/bin/env python3
"""Write .env.example and the variable table in docs/CONFIGURATION.md from the configuration schema
(src/bot_v2/config/schema.py and the risk limits' specs). Run after adding or changing a variable:

    .venv/bin/python scripts/gen_config_docs.py

tests/unit/config/test_schema.py fails while either file disagrees with the schema.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from bot_v2.config.schema import write_generated

    write_generated(ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
