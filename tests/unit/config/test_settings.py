"""Settings: profile -> .env -> environment -> given CLI flags, validated once into frozen objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot_v2.config import (
    BrokerKind,
    CliOverrides,
    Profile,
    ReconcileMismatchAction,
    load_settings,
    merged_environment,
    read_env_file,
)
from bot_v2.errors import ConfigError, MissingCredentialsError
from bot_v2.state.settings import ColdBackend, HotBackend, WarmBackend


def test_dev_profile_defaults_are_offline(tmp_path: Path) -> None:
    settings = load_settings("dev", {}, root=tmp_path)
    assert settings.profile is Profile.DEV
    assert settings.broker is BrokerKind.SIMULATED
    assert settings.symbols == ("BTC-USD", "ETH-USD")
    assert settings.state.hot_backend is HotBackend.MEMORY
    assert settings.state.warm_backend is WarmBackend.SQLITE
    assert settings.state.cold_backend is ColdBackend.DIRECTORY
    assert settings.data_dir == tmp_path / "var" / "data" / "perps_bot" / "dev"
    assert settings.events_path.name == "events.jsonl"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings("dev", {}, root=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.dry_run = True  # type: ignore[misc]


def test_environment_overrides_profile_and_flags_override_environment(tmp_path: Path) -> None:
    env = {"PERPS_SYMBOLS": "sol-usd", "PERPS_INTERVAL_SECONDS": "7", "PERPS_DRY_RUN": "yes"}
    settings = load_settings("dev", env, root=tmp_path)
    assert settings.symbols == ("SOL-USD",)
    assert settings.interval_seconds == 7.0
    assert settings.dry_run is True
    flagged = load_settings(
        "dev", env, CliOverrides(symbols=("BTC-USD",), interval_seconds=2.5), root=tmp_path
    )
    assert flagged.symbols == ("BTC-USD",)
    assert flagged.interval_seconds == 2.5
    assert flagged.dry_run is True  # a flag left out never resets the env/profile value


def test_flag_left_out_keeps_profile_value(tmp_path: Path) -> None:
    settings = load_settings("dev", {}, CliOverrides(dry_run=None, reduce_only=None), root=tmp_path)
    assert settings.dry_run is False
    assert settings.risk.reduce_only_mode is False
    assert (
        load_settings("dev", {}, CliOverrides(reduce_only=True), root=tmp_path).risk.reduce_only_mode is True
    )


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"PERPS_SYMBOLS": "BTCUSD"}, "PERPS_SYMBOLS"),
        ({"PERPS_SYMBOLS": "BTC-USD,BTC-USD"}, "PERPS_SYMBOLS"),
        ({"PERPS_INTERVAL_SECONDS": "soon"}, "PERPS_INTERVAL_SECONDS"),
        ({"PERPS_DRY_RUN": "maybe"}, "PERPS_DRY_RUN"),
        ({"PERPS_BOT_ID": "Bad Id!"}, "PERPS_BOT_ID"),
        ({"PERPS_LOG_LEVEL": "LOUD"}, "PERPS_LOG_LEVEL"),
        ({"PERPS_SHUTDOWN_ORDER_POLICY": "sell"}, "PERPS_SHUTDOWN_ORDER_POLICY"),
        ({"PERPS_RECONCILE_MISMATCH_ACTION": "panic"}, "PERPS_RECONCILE_MISMATCH_ACTION"),
        ({"COINBASE_BASE_URL": "https://api.coinbase.com"}, "COINBASE_BASE_URL"),
        ({"COINBASE_TIMEOUT_SECONDS": "0"}, "COINBASE_TIMEOUT_SECONDS"),
        ({"COINBASE_KEY_FILE": "/nonexistent/key.json"}, "COINBASE_KEY_FILE"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"REDIS_SENTINELS": "no-port", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "h:99999", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "h:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        (
            {"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "redis://h"},
            "REDIS_SENTINELS",
        ),
        ({"REDIS_DB": "-1"}, "REDIS_DB"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"STATE_MAX_VALUE_BYTES": "-1"}, "STATE_MAX_VALUE_BYTES"),
        ({"RISK_MAX_LEVERAGE": "lots"}, "RISK_MAX_LEVERAGE"),
    ],
)
def test_invalid_values_name_the_field(tmp_path: Path, env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings("dev", env, root=tmp_path)
    assert field in str(info.value)
    assert "\n" not in info.value.one_line()
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ReconcileMismatchAction.REDUCE_ONLY),
        ("", ReconcileMismatchAction.REDUCE_ONLY),
        ("reduce_only", ReconcileMismatchAction.REDUCE_ONLY),
        ("HALT", ReconcileMismatchAction.HALT),
    ],
)
def test_reconcile_mismatch_action(
    tmp_path: Path, raw: str | None, expected: ReconcileMismatchAction
) -> None:
    env = {} if raw is None else {"PERPS_RECONCILE_MISMATCH_ACTION": raw}
    settings = load_settings("dev", env, root=tmp_path)
    assert settings.reconcile_mismatch_action is expected
    halted = expected is ReconcileMismatchAction.HALT
    assert settings.reconcile_mismatch_action.trading_state.value == ("HALTED" if halted else "REDUCE_ONLY")


def test_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile"):
        load_settings("staging", {}, root=tmp_path)


def test_real_exchange_profiles_need_credentials(tmp_path: Path) -> None:
    env = {"REDIS_URL": "redis://localhost:6379/0", "DATABASE_URL": "postgresql://u@h/db", "S3_BUCKET": "b"}
    with pytest.raises(MissingCredentialsError, match="COINBASE_API_KEY"):
        load_settings("prod", env, root=tmp_path)
    with pytest.raises(MissingCredentialsError, match="COINBASE_API_SECRET"):
        load_settings("canary", env | {"COINBASE_API_KEY": "organizations/x/apiKeys/y"}, root=tmp_path)


def test_real_service_profiles_need_state_urls(tmp_path: Path) -> None:
    env = {"COINBASE_API_KEY": "k" * 20, "COINBASE_API_SECRET": "s" * 40}
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings("spot", env, root=tmp_path)


def test_urls_switch_tiers_and_secrets_are_masked(tmp_path: Path) -> None:
    env = {
        "REDIS_URL": "redis://:hunter2hunter2@localhost:6379/0",
        "DATABASE_URL": "postgresql://bot:pgsecretpw99@localhost/bot",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "S3_BUCKET": "perps",
        "AWS_SECRET_ACCESS_KEY": "awssecretvalue1234",
        "COINBASE_API_KEY": "organizations/o/apiKeys/KEYID1234",
        "COINBASE_API_SECRET": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIabcdef\n-----END EC PRIVATE KEY-----",
    }
    settings = load_settings("prod", env, root=tmp_path)
    assert settings.state.hot_backend is HotBackend.REDIS
    assert settings.state.warm_backend is WarmBackend.POSTGRES
    assert settings.state.cold_backend is ColdBackend.S3
    text = repr(settings)
    for secret in ("hunter2hunter2", "pgsecretpw99", "awssecretvalue1234", "MHcCAQEEIabcdef"):
        assert secret not in text
    assert "awssecretvalue1234" in settings.secrets


def test_sentinels_put_hot_on_redis_and_their_passwords_are_masked(tmp_path: Path) -> None:
    env = {
        "REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380,[::1]:26381",
        "REDIS_SENTINEL_MASTER": "perps",
        "REDIS_PASSWORD": "datanodesecret1",
        "REDIS_SENTINEL_PASSWORD": "sentinelsecret2",
        "REDIS_DB": "3",
    }
    settings = load_settings("dev", env, root=tmp_path)
    state = settings.state
    assert state.hot_backend is HotBackend.REDIS and state.redis_url is None
    assert state.redis_sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381))
    assert (state.redis_sentinel_master, state.redis_db) == ("perps", 3)
    text = repr(settings)
    assert "datanodesecret1" not in text and "sentinelsecret2" not in text and "26380" in text
    assert {"datanodesecret1", "sentinelsecret2"} <= set(settings.secrets)


def test_a_multi_host_database_url_is_accepted_and_masked(tmp_path: Path) -> None:
    url = "postgresql://bot:pgsecretpw99@10.0.0.1:5432,10.0.0.2:5432/bot?target_session_attrs=read-write"
    settings = load_settings("dev", {"DATABASE_URL": url}, root=tmp_path)
    assert settings.state.warm_backend is WarmBackend.POSTGRES and settings.state.database_url == url
    assert "pgsecretpw99" not in repr(settings) and "pgsecretpw99" in settings.secrets


def test_env_file_parsing_and_precedence(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nexport PERPS_SYMBOLS=ETH-USD\nPERPS_LOG_LEVEL='debug'\n"
        'COINBASE_API_SECRET="line1\\nline2"\nPERPS_INTERVAL_SECONDS=3 # trailing comment\n'
    )
    values = read_env_file(env_file)
    assert values["PERPS_SYMBOLS"] == "ETH-USD"
    assert values["PERPS_LOG_LEVEL"] == "debug"
    assert values["COINBASE_API_SECRET"] == "line1\nline2"
    assert values["PERPS_INTERVAL_SECONDS"] == "3"
    merged = merged_environment(env_file, {"PERPS_SYMBOLS": "SOL-USD"})
    assert merged["PERPS_SYMBOLS"] == "SOL-USD"  # the environment wins over .env
    assert merged_environment(tmp_path / "missing.env", {}) == {}


@pytest.mark.parametrize("line", ["NOEQUALS", "1BAD=x", 'A="unterminated', "A='x' trailing"])
def test_malformed_env_file_is_a_clear_error(tmp_path: Path, line: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"OK=1\n{line}\n")
    with pytest.raises(ConfigError, match=r"\.env:2"):
        read_env_file(env_file)


def test_strategy_params_come_from_profile_and_env(tmp_path: Path) -> None:
    settings = load_settings("dev", {}, root=tmp_path)
    assert settings.strategy == "ma_crossover"
    assert settings.strategy_params == {"position_fraction": "0.02"}
    tuned = load_settings("dev", {"PERPS_STRATEGY_PARAMS": "fast_window=3, slow_window=9"}, root=tmp_path)
    assert tuned.strategy_params == {"position_fraction": "0.02", "fast_window": "3", "slow_window": "9"}
    other = load_settings("dev", {"PERPS_STRATEGY": "hold"}, root=tmp_path)
    assert other.strategy_params == {}  # the profile's params belong to the profile's strategy


@pytest.mark.parametrize(
    "env",
    [
        {"PERPS_STRATEGY": "martingale"},
        {"PERPS_STRATEGY_PARAMS": "fast_window"},
        {"PERPS_STRATEGY_PARAMS": "bogus=1"},
        {"PERPS_STRATEGY_PARAMS": "fast_window=30,slow_window=10"},
    ],
)
def test_bad_strategy_settings_fail_at_start(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="PERPS_STRATEGY"):
        load_settings("dev", env, root=tmp_path)
