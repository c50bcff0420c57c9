"""The configuration schema drives the known variables, the typed reading, .env.example and the docs table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot_v2.config import ENV_VARS, load_settings
from bot_v2.config.schema import (
    SETTINGS,
    SETTINGS_BY_NAME,
    Setting,
    docs_table,
    env_example,
    parse,
    read,
    secret_variables,
    with_docs_table,
)
from bot_v2.config.strict import known_variables
from bot_v2.errors import ConfigError
from bot_v2.risk.config import RISK_ENV_VARS

ROOT = Path(__file__).resolve().parents[3]
REGENERATE = "run .venv/bin/python scripts/gen_config_docs.py and commit the result"


def test_env_example_is_generated_from_the_schema() -> None:
    assert (ROOT / ".env.example").read_text() == env_example(), f".env.example is stale: {REGENERATE}"


def test_the_docs_table_is_generated_from_the_schema() -> None:
    docs = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    assert docs == with_docs_table(docs), f"docs/CONFIGURATION.md's table is stale: {REGENERATE}"
    for name in (*ENV_VARS, *RISK_ENV_VARS):
        assert f"| `{name}` |" in docs_table()


def test_the_known_variables_are_the_schemas() -> None:
    assert tuple(s.name for s in SETTINGS) == ENV_VARS
    assert len(set(ENV_VARS)) == len(ENV_VARS)
    assert set(ENV_VARS) | set(RISK_ENV_VARS) <= known_variables()


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda s: s.name)
def test_every_declared_default_is_valid(spec: Setting) -> None:
    assert SETTINGS_BY_NAME[spec.name] is spec
    if spec.default is not None:
        assert parse(spec, spec.default) == read({}, spec.name)


def test_read_parses_by_type_and_names_the_variable() -> None:
    assert read({}, "PERPS_INTENT_GRACE_SECONDS") == 30.0
    assert read({"PERPS_INTENT_GRACE_SECONDS": " 12.5 "}, "PERPS_INTENT_GRACE_SECONDS") == 12.5
    assert read({"PERPS_RECONCILE_EVERY_CYCLES": ""}, "PERPS_RECONCILE_EVERY_CYCLES") == 20
    assert read({"COINBASE_WS_ENABLED": "off"}, "COINBASE_WS_ENABLED") is False
    assert read({"PERPS_WARM_OUTAGE_MODE": "FULL"}, "PERPS_WARM_OUTAGE_MODE") == "full"
    assert read({}, "REDIS_URL") is None
    assert read({}, "PERPS_LEASE_WATCHDOG_SECONDS", default=15.0) == 15.0
    for env, message in (
        ({"PERPS_LEASE_TTL_SECONDS": "0.1"}, "PERPS_LEASE_TTL_SECONDS: must be >= 0.15"),
        ({"PERPS_HISTORY_RETENTION_DAYS": "4000"}, "PERPS_HISTORY_RETENTION_DAYS: must be <= 3650"),
        ({"PERPS_LEASE_TTL_SECONDS": "nan"}, "PERPS_LEASE_TTL_SECONDS: expected a finite number"),
        ({"REDIS_DB": "1.5"}, "REDIS_DB: expected an integer"),
        ({"COINBASE_WS_ENABLED": "maybe"}, "COINBASE_WS_ENABLED: expected a boolean"),
        ({"PERPS_WARM_OUTAGE_MODE": "half"}, "PERPS_WARM_OUTAGE_MODE: expected reduce_only or full"),
    ):
        (name,) = env
        with pytest.raises(ConfigError, match=message):
            read(env, name)


def test_secret_variables_are_masked(tmp_path: Path) -> None:
    """Every value the schema calls secret is among the values the logs mask."""
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE123",
        "AWS_SECRET_ACCESS_KEY": "s3-secret-value",
        "REDIS_PASSWORD": "redis-secret-value",
        "REDIS_SENTINEL_PASSWORD": "sentinel-secret-value",
        "REDIS_SENTINELS": "127.0.0.1:26379",
        "REDIS_SENTINEL_MASTER": "perps",
        "COINBASE_API_KEY": "organizations/x/apiKeys/y",
        "COINBASE_API_SECRET": "pem-secret-value",
    }
    assert secret_variables() == set(env) - {"REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"}
    settings = load_settings("dev", env, root=tmp_path)
    for name in secret_variables():
        assert env[name] in settings.secrets, name
