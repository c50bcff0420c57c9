"""Pure verdicts of the preflight: facts in, PASS/WARN/FAIL out."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from bot_v2.domain import FeeTier, KeyPermissions, Product, ProductType, Symbol
from bot_v2.risk import RiskConfig
from bot_v2.tools.checks import (
    check_clock_skew,
    check_credentials,
    check_disk,
    check_fee_tier,
    check_permissions,
    check_products,
    check_risk_limits,
)
from bot_v2.tools.common import CheckResult, CheckStatus, checks_exit_code, checks_to_json, one_line
from bot_v2.tools.preflight import load_for_preflight


def product(symbol: str, *, disabled: bool = False, future: bool = False, leverage: str = "1") -> Product:
    return Product(
        symbol=Symbol(symbol),
        base_currency=symbol.split("-")[0],
        quote_currency="USD",
        base_increment=Decimal("0.0001"),
        price_increment=Decimal("0.01"),
        base_min_size=Decimal("0.0001"),
        base_max_size=Decimal(100),
        product_type=ProductType.FUTURE if future else ProductType.SPOT,
        max_leverage=Decimal(leverage),
        trading_disabled=disabled,
    )


def test_clock_skew_thresholds() -> None:
    assert check_clock_skew(0.2).status is CheckStatus.PASS
    assert check_clock_skew(-1.5).status is CheckStatus.WARN
    assert check_clock_skew(5.01).status is CheckStatus.FAIL
    assert "+5.010s" in check_clock_skew(5.01).reason


def test_credentials_are_masked_and_required() -> None:
    present = check_credentials("organizations/x/apiKeys/abcd1234WXYZ", None, simulated=False)
    assert present.status is CheckStatus.PASS
    assert "****WXYZ" in present.reason and "abcd1234" not in present.reason
    assert check_credentials(None, None, simulated=False).status is CheckStatus.FAIL
    assert check_credentials(None, None, simulated=True).status is CheckStatus.PASS


def test_key_file_readable_by_others_warns(tmp_path: Path) -> None:
    """The key file holds the private key: group- or world-readable is a WARN with the fix; missing FAILs."""
    key_file = tmp_path / "cdp_api_key.json"
    key_file.write_text("{}")
    key_file.chmod(0o600)
    assert check_credentials(None, str(key_file), simulated=False).status is CheckStatus.PASS
    for mode in (0o640, 0o604):
        key_file.chmod(mode)
        result = check_credentials(None, str(key_file), simulated=False)
        assert result.status is CheckStatus.WARN, mode
        assert f"mode {mode:04o}" in result.reason and f"chmod 600 {key_file}" in result.reason
    missing = check_credentials(None, str(tmp_path / "nope.json"), simulated=False)
    assert missing.status is CheckStatus.FAIL and "cannot stat" in missing.reason


def test_permissions_trade_required_transfer_warns() -> None:
    assert check_permissions(KeyPermissions(True, True, False)).status is CheckStatus.PASS
    assert check_permissions(KeyPermissions(True, False, False)).status is CheckStatus.FAIL
    warn = check_permissions(KeyPermissions(True, True, True))
    assert warn.status is CheckStatus.WARN and "transfer" in warn.reason


def test_products_listed_and_tradable() -> None:
    products = {"BTC-USD": product("BTC-USD"), "ETH-USD": product("ETH-USD", disabled=True)}
    assert check_products(["BTC-USD"], products).status is CheckStatus.PASS
    failed = check_products(["BTC-USD", "ETH-USD", "SOL-USD"], products)
    assert failed.status is CheckStatus.FAIL
    assert "SOL-USD" in failed.reason and "ETH-USD" in failed.reason


def test_fee_and_disk() -> None:
    fee = check_fee_tier(FeeTier("Advanced 1", Decimal("0.004"), Decimal("0.006")))
    assert fee.status is CheckStatus.PASS and "0.006" in fee.reason
    assert check_disk(50 * 1024**3, "/x").status is CheckStatus.PASS
    assert check_disk(500 * 1024**2, "/x").status is CheckStatus.WARN
    assert check_disk(10 * 1024**2, "/x").status is CheckStatus.FAIL


def test_risk_limits_sanity() -> None:
    sane = RiskConfig(
        max_leverage=Decimal(1), max_notional_per_symbol_usd=Decimal(100), max_total_exposure_usd=Decimal(200)
    )
    results = check_risk_limits(sane, {"BTC-USD": product("BTC-USD")}, enable_derivatives=False)
    assert {r.status for r in results} == {CheckStatus.PASS}
    contradictory = RiskConfig(
        max_leverage=Decimal(3), max_notional_per_symbol_usd=Decimal(500), max_total_exposure_usd=Decimal(200)
    )
    by_name = {
        r.name: r
        for r in check_risk_limits(contradictory, {"BTC-USD": product("BTC-USD")}, enable_derivatives=False)
    }
    assert by_name["risk: notional vs exposure"].status is CheckStatus.FAIL
    assert by_name["risk: leverage"].status is CheckStatus.WARN
    perps = {"BTC-PERP": product("BTC-PERP", future=True, leverage="5")}
    leverage = [
        r for r in check_risk_limits(contradictory, perps, enable_derivatives=True) if "leverage" in r.name
    ]
    assert leverage[0].status is CheckStatus.PASS
    unknown = [r for r in check_risk_limits(sane, None, enable_derivatives=False) if "leverage" in r.name]
    assert unknown[0].status is CheckStatus.SKIP


def test_exit_code_and_json() -> None:
    results = [CheckResult("a", CheckStatus.PASS, "ok"), CheckResult("b", CheckStatus.WARN, "hm")]
    assert checks_exit_code(results) == 0
    results.append(CheckResult("c", CheckStatus.FAIL, "line one\nline two"))
    assert checks_exit_code(results) == 1
    data = checks_to_json("t", results)
    assert data["ok"] is False and data["counts"]["FAIL"] == 1
    assert data["checks"][2]["reason"] == "line one line two"
    assert len(one_line("x" * 1000)) == 300


def test_missing_credentials_is_its_own_fail_and_the_rest_of_the_config_is_still_checked() -> None:
    env = {"REDIS_URL": "redis://h:6379/0", "DATABASE_URL": "postgresql://u@h/db", "S3_BUCKET": "b"}
    settings, config, credentials = load_for_preflight("canary", env)
    assert settings is not None and config.status is CheckStatus.PASS
    assert credentials is not None and credentials.status is CheckStatus.FAIL
    assert "COINBASE_API_KEY" in credentials.reason
    settings, config, credentials = load_for_preflight("canary", {})
    assert settings is None and config.status is CheckStatus.FAIL and "REDIS_URL" in config.reason
    assert credentials is not None and credentials.status is CheckStatus.FAIL
