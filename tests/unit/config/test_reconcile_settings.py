"""PERPS_INTENT_GRACE_SECONDS and PERPS_RECONCILE_EVERY_CYCLES: defaults, parsing, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot_v2.config import load_settings
from bot_v2.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings("dev", {}, root=tmp_path)
    assert settings.intent_grace_seconds == 30.0
    assert settings.reconcile_every_cycles == 20


def test_values_from_the_environment(tmp_path: Path) -> None:
    env = {"PERPS_INTENT_GRACE_SECONDS": "2.5", "PERPS_RECONCILE_EVERY_CYCLES": "3"}
    settings = load_settings("dev", env, root=tmp_path)
    assert settings.intent_grace_seconds == 2.5
    assert settings.reconcile_every_cycles == 3


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PERPS_INTENT_GRACE_SECONDS", "-1"),
        ("PERPS_INTENT_GRACE_SECONDS", "soon"),
        ("PERPS_INTENT_GRACE_SECONDS", "inf"),
        ("PERPS_RECONCILE_EVERY_CYCLES", "0"),
        ("PERPS_RECONCILE_EVERY_CYCLES", "1.5"),
    ],
)
def test_invalid_values_name_the_variable(tmp_path: Path, name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings("dev", {name: raw}, root=tmp_path)
