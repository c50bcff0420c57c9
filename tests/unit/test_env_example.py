""".env.example lists every variable the bot reads."""

from __future__ import annotations

from pathlib import Path

from bot_v2.config import ENV_VARS
from bot_v2.risk.config import RISK_ENV_VARS

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_every_variable_is_documented() -> None:
    text = EXAMPLE.read_text()
    missing = [var for var in (*ENV_VARS, *RISK_ENV_VARS) if f"# {var}=" not in text]
    assert not missing, f".env.example lacks {missing}"


def test_example_has_no_active_settings() -> None:
    active = [line for line in EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert active == []
