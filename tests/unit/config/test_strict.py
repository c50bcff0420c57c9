"""Strict configuration: unknown variables with the bot's prefixes are refused naming the closest known one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot_v2.config import load_settings
from bot_v2.config.strict import PREFIXES, TEST_ONLY_VARIABLE, closest_variable, known_variables
from bot_v2.errors import ConfigError
from bot_v2.orchestration.crashpoints import CRASH_ENV

ROOT = Path(__file__).resolve().parents[3]
#: Python names (constants) the docs quote that are not environment variables.
# names the docs show that are not variables: constants, and the README's deliberate typo example
NOT_VARIABLES = {"RISK_ENV_VARS", "RISK_ENV_DOCS", "STATE_SCHEMA_VERSION", "RISK_KILL_SWITCH_ENABLD"}


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("RISK_KILL_SWITCH_ENABLD", "RISK_KILL_SWITCH_ENABLED"),
        ("PERPS_INTERVAL_SECOND", "PERPS_INTERVAL_SECONDS"),
        ("CHECKPOINT_RETENTON", "CHECKPOINT_RETENTION"),
        ("COINBASE_API_SECERT", "COINBASE_API_SECRET"),
        ("S3_BUCKETS", "S3_BUCKET"),
        ("STATE_MAX_VALUE_BYTE", "STATE_MAX_VALUE_BYTES"),
    ],
)
def test_a_typo_is_refused_naming_the_closest_variable(typo: str, meant: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings("dev", {typo: "1"}, root=tmp_path)
    assert caught.value.one_line() == f"ConfigError: {typo}: unknown variable (did you mean {meant}?)"
    assert caught.value.exit_code == 2


def test_unrelated_and_known_variables_pass(tmp_path: Path) -> None:
    load_settings("dev", {"HOME": "/root", "SIM_SEED": "3", "RISK_KILL_SWITCH_ENABLED": "1"}, root=tmp_path)
    with pytest.raises(ConfigError, match=r"PERPS_NOTHING_LIKE_IT: unknown variable \(see \.env\.example"):
        load_settings("dev", {"PERPS_NOTHING_LIKE_IT": "x"}, root=tmp_path)


def test_known_variables_come_from_the_settings_definitions() -> None:
    from bot_v2.config import ENV_VARS
    from bot_v2.risk import RISK_ENV_VARS

    assert known_variables() == {*ENV_VARS, *RISK_ENV_VARS, TEST_ONLY_VARIABLE}
    assert TEST_ONLY_VARIABLE == CRASH_ENV
    assert closest_variable("XYZ", known_variables()) is None


def test_every_variable_the_docs_mention_is_known() -> None:
    """README, docs/*.md and .env.example name only variables the bot reads (a renamed one fails here)."""
    pattern = re.compile(r"\b((?:" + "|".join(p.rstrip("_") for p in PREFIXES) + r")_[A-Z0-9_]*[A-Z0-9])\b")
    files = [ROOT / "README.md", ROOT / ".env.example", *sorted((ROOT / "docs").glob("*.md"))]
    mentioned = {(name, f.name) for f in files for name in pattern.findall(f.read_text(encoding="utf-8"))}
    unknown = sorted(
        (name, where) for name, where in mentioned if name not in known_variables() | NOT_VARIABLES
    )
    assert not unknown, unknown
