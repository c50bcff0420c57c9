"""The effective configuration's hash: stable, changed by any setting, blind to secrets."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path

from bot_v2.config import load_settings
from bot_v2.config.hashing import config_hash, effective_config


def test_same_settings_same_hash_and_any_setting_changes_it(tmp_path: Path) -> None:
    base = load_settings("dev", {}, root=tmp_path)
    assert config_hash(base) == config_hash(load_settings("dev", {}, root=tmp_path))
    assert config_hash(base) != config_hash(load_settings("dev", {"RISK_MAX_LEVERAGE": "2"}, root=tmp_path))
    assert config_hash(base) != config_hash(load_settings("dev", {"PERPS_SYMBOLS": "BTC-USD"}, root=tmp_path))


def test_secrets_are_left_out(tmp_path: Path) -> None:
    base = load_settings("dev", {}, root=tmp_path)
    rotated = dataclasses.replace(
        base,
        coinbase=dataclasses.replace(
            base.coinbase, api_key="organizations/x/apiKeys/NEW", api_secret="s3cr3t"
        ),
        state=dataclasses.replace(
            base.state, aws_secret_access_key="AWSSECRET", database_url="postgresql://u:hunter2@db:5432/x"
        ),
        secrets=("s3cr3t", "hunter2"),
    )
    text = json.dumps(effective_config(rotated), default=str)
    assert "s3cr3t" not in text and "hunter2" not in text and "AWSSECRET" not in text
    other_db = dataclasses.replace(
        rotated, state=dataclasses.replace(rotated.state, database_url="postgresql://u:other@db:5432/x")
    )
    assert config_hash(rotated) == config_hash(other_db)  # only the password differs
    assert config_hash(
        dataclasses.replace(base, risk=dataclasses.replace(base.risk, max_leverage=Decimal(3)))
    ) != (config_hash(base))
