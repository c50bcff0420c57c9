from decimal import Decimal

import pytest

from bot_v2.domain import Symbol
from bot_v2.errors import ConfigError
from bot_v2.risk import RISK_ENV_DOCS, RISK_ENV_VARS, DrawdownAction, RiskConfig

REQUIRED_VARS = (
    "RISK_KILL_SWITCH_ENABLED",
    "RISK_REDUCE_ONLY_MODE",
    "RISK_MAX_LEVERAGE",
    "RISK_MAX_POSITION_SIZE",
    "RISK_MAX_NOTIONAL_PER_SYMBOL_USD",
    "RISK_MAX_TOTAL_EXPOSURE_USD",
    "RISK_DAILY_LOSS_LIMIT_PCT",
    "RISK_MAX_DRAWDOWN_PCT",
    "RISK_MAX_MARK_STALENESS_SECONDS",
    "RISK_VOLATILITY_WARN_PCT",
    "RISK_VOLATILITY_REDUCE_ONLY_PCT",
    "RISK_VOLATILITY_HALT_PCT",
    "RISK_MAX_SLIPPAGE_BPS",
    "RISK_MAX_ORDERS_PER_MINUTE",
    "RISK_MAX_OPEN_POSITIONS",
    "RISK_MIN_LIQUIDATION_BUFFER_PCT",
)


def test_env_vars_listed_and_documented() -> None:
    assert set(REQUIRED_VARS) <= set(RISK_ENV_VARS)
    assert len(set(RISK_ENV_VARS)) == len(RISK_ENV_VARS)
    assert set(RISK_ENV_DOCS) == set(RISK_ENV_VARS)
    assert all(RISK_ENV_DOCS[v] for v in RISK_ENV_VARS)


def test_from_env_reads_every_variable() -> None:
    env = {
        "RISK_KILL_SWITCH_ENABLED": "yes",
        "RISK_REDUCE_ONLY_MODE": "ON",
        "RISK_MAX_LEVERAGE": "2.5",
        "RISK_MAX_POSITION_SIZE": "0.5,ETH-USD=10",
        "RISK_MAX_NOTIONAL_PER_SYMBOL_USD": "25000",
        "RISK_MAX_TOTAL_EXPOSURE_USD": "60000",
        "RISK_DAILY_LOSS_LIMIT_PCT": "2",
        "RISK_DAILY_LOSS_LIMIT_USD": "1500",
        "RISK_MAX_DRAWDOWN_PCT": "8",
        "RISK_DRAWDOWN_ACTION": "reduce_only",
        "RISK_MAX_MARK_STALENESS_SECONDS": "15",
        "RISK_VOLATILITY_WARN_PCT": "3",
        "RISK_VOLATILITY_REDUCE_ONLY_PCT": "5",
        "RISK_VOLATILITY_HALT_PCT": "9",
        "RISK_MAX_SLIPPAGE_BPS": "20",
        "RISK_MAX_ORDERS_PER_MINUTE": "12",
        "RISK_MAX_OPEN_POSITIONS": "4",
        "RISK_MIN_LIQUIDATION_BUFFER_PCT": "25",
        "RISK_ERROR_RATE_REDUCE_ONLY_PCT": "20",
        "RISK_ERROR_RATE_HALT_PCT": "40",
        "RISK_ERROR_RATE_MIN_SAMPLES": "5",
        "UNRELATED": "ignored",
    }
    cfg = RiskConfig.from_env(env, RiskConfig())
    assert cfg.kill_switch_enabled and cfg.reduce_only_mode
    assert cfg.max_leverage == Decimal("2.5")
    assert cfg.position_size_limit(Symbol("BTC-USD")) == Decimal("0.5")
    assert cfg.position_size_limit(Symbol("ETH-USD")) == Decimal(10)
    assert cfg.max_notional_per_symbol_usd == Decimal(25000)
    assert cfg.max_total_exposure_usd == Decimal(60000)
    assert cfg.daily_loss_limit_pct == Decimal(2)
    assert cfg.daily_loss_limit_usd == Decimal(1500)
    assert cfg.max_drawdown_pct == Decimal(8)
    assert cfg.drawdown_action is DrawdownAction.REDUCE_ONLY
    assert cfg.max_mark_staleness_seconds == 15.0
    assert (cfg.volatility_warn_pct, cfg.volatility_reduce_only_pct, cfg.volatility_halt_pct) == (3, 5, 9)
    assert cfg.max_slippage_bps == Decimal(20)
    assert cfg.max_orders_per_minute == 12
    assert cfg.max_open_positions == 4
    assert cfg.min_liquidation_buffer_pct == Decimal(25)
    assert (cfg.error_rate_reduce_only_pct, cfg.error_rate_halt_pct, cfg.error_rate_min_samples) == (
        20,
        40,
        5,
    )


@pytest.mark.parametrize("raw", ["1", "true", "YES", "on", " True "])
def test_bool_true_spellings(raw: str) -> None:
    assert RiskConfig.from_env({"RISK_KILL_SWITCH_ENABLED": raw}, RiskConfig()).kill_switch_enabled


@pytest.mark.parametrize("raw", ["0", "false", "No", "off"])
def test_bool_false_spellings(raw: str) -> None:
    base = RiskConfig(kill_switch_enabled=True)
    assert not RiskConfig.from_env({"RISK_KILL_SWITCH_ENABLED": raw}, base).kill_switch_enabled


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("RISK_KILL_SWITCH_ENABLED", "maybe"),
        ("RISK_MAX_LEVERAGE", "abc"),
        ("RISK_MAX_LEVERAGE", "-1"),
        ("RISK_MAX_LEVERAGE", "0"),
        ("RISK_MAX_LEVERAGE", "none"),
        ("RISK_MAX_LEVERAGE", "NaN"),
        ("RISK_MAX_ORDERS_PER_MINUTE", "1.5"),
        ("RISK_DAILY_LOSS_LIMIT_PCT", "150"),
        ("RISK_MAX_POSITION_SIZE", "BTC-USD=-1"),
        ("RISK_MAX_POSITION_SIZE", "=5"),
        ("RISK_DRAWDOWN_ACTION", "panic"),
        ("RISK_MAX_MARK_STALENESS_SECONDS", "soon"),
    ],
)
def test_bad_env_value_names_the_variable(var: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=var):
        RiskConfig.from_env({var: raw}, RiskConfig())


def test_cross_field_error_names_the_variables() -> None:
    with pytest.raises(ConfigError, match="RISK_VOLATILITY_WARN_PCT"):
        RiskConfig.from_env({"RISK_VOLATILITY_WARN_PCT": "20"}, RiskConfig())


def test_empty_keeps_base_and_none_disables() -> None:
    base = RiskConfig(max_notional_per_symbol_usd=Decimal(5))
    assert RiskConfig.from_env({"RISK_MAX_NOTIONAL_PER_SYMBOL_USD": " "}, base) == base
    cfg = RiskConfig.from_env(
        {"RISK_MAX_NOTIONAL_PER_SYMBOL_USD": "none", "RISK_MAX_POSITION_SIZE": "none"}, base
    )
    assert cfg.max_notional_per_symbol_usd is None
    assert cfg.position_size_limit(Symbol("BTC-USD")) is None


def test_from_mapping_accepts_profile_values() -> None:
    cfg = RiskConfig.from_mapping(
        {
            "max_leverage": 2,
            "max_position_size": {"btc-usd": "0.25"},
            "max_slippage_bps": 12.5,
            "max_mark_staleness_seconds": "10",
            "drawdown_action": "halt",
            "reduce_only_mode": "off",
            "volatility_warn_pct": None,
        }
    )
    assert cfg.max_leverage == Decimal(2)
    assert cfg.position_size_limit(Symbol("BTC-USD")) == Decimal("0.25")
    assert cfg.max_slippage_bps == Decimal("12.5")
    assert cfg.max_mark_staleness_seconds == 10.0
    assert cfg.volatility_warn_pct is None


def test_from_mapping_rejects_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"risk.max_levrage"):
        RiskConfig.from_mapping({"max_levrage": 3})


def test_from_mapping_bad_value_names_key() -> None:
    with pytest.raises(ConfigError, match=r"risk.max_open_positions"):
        RiskConfig.from_mapping({"max_open_positions": "many"})


def test_config_is_frozen_and_mapping_immutable() -> None:
    cfg = RiskConfig(max_position_size_by_symbol={Symbol("BTC-USD"): Decimal(1)})
    with pytest.raises(AttributeError):
        cfg.max_leverage = Decimal(10)  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.max_position_size_by_symbol[Symbol("ETH-USD")] = Decimal(1)  # type: ignore[index]


def test_direct_construction_validates() -> None:
    with pytest.raises(ConfigError, match="max_slippage_bps"):
        RiskConfig(max_slippage_bps=Decimal(-1))
    with pytest.raises(ConfigError, match="error_rate_reduce_only_pct"):
        RiskConfig(error_rate_reduce_only_pct=Decimal(60), error_rate_halt_pct=Decimal(50))


def test_to_dict_is_plain() -> None:
    d = RiskConfig().to_dict()
    assert d["drawdown_action"] == "HALT"
    assert d["max_position_size_by_symbol"] == {}
