"""Pure verdicts of the preflight and core checks: facts in, ``CheckResult`` out (no I/O here)."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from decimal import Decimal

from bot_v2.domain import FeeTier, KeyPermissions, Product
from bot_v2.monitoring.masking import mask_secret
from bot_v2.risk import RiskConfig
from bot_v2.tools.common import CheckResult, CheckStatus

__all__ = [
    "DISK_FAIL_BYTES",
    "DISK_WARN_BYTES",
    "SKEW_FAIL_SECONDS",
    "SKEW_WARN_SECONDS",
    "check_clock_skew",
    "check_credentials",
    "check_disk",
    "check_fee_tier",
    "check_permissions",
    "check_products",
    "check_risk_limits",
]

SKEW_WARN_SECONDS = 1.0
SKEW_FAIL_SECONDS = 5.0
DISK_WARN_BYTES = 1024**3
DISK_FAIL_BYTES = 200 * 1024**2

PASS, WARN, FAIL, SKIP = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL, CheckStatus.SKIP


def check_credentials(api_key: str | None, key_file: str | None, *, simulated: bool) -> CheckResult:
    """Credentials must be present for a real exchange; the key is only ever shown masked."""
    if simulated and not api_key and not key_file:
        return CheckResult("credentials", PASS, "in-process simulator: a key is generated at start")
    if key_file:
        return _key_file_check(key_file)
    if api_key:
        return CheckResult("credentials", PASS, f"API key {mask_secret(api_key)} + secret present")
    return CheckResult(
        "credentials", FAIL, "COINBASE_API_KEY + COINBASE_API_SECRET (or COINBASE_KEY_FILE) not set"
    )


def _key_file_check(key_file: str) -> CheckResult:
    """A CDP key file holds the private key: other users of the host must not be able to read it (like ssh's
    refusal of a group- or world-readable identity file). Missing or unreadable is a FAIL."""
    try:
        mode = os.stat(key_file).st_mode
    except OSError as exc:
        return CheckResult("credentials", FAIL, f"key file {key_file}: cannot stat ({exc.strerror})")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return CheckResult(
            "credentials",
            WARN,
            f"key file {key_file} is group- or world-accessible (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {key_file}",
        )
    return CheckResult("credentials", PASS, f"key file {key_file} (mode {stat.S_IMODE(mode):04o})")


def check_clock_skew(skew_seconds: float) -> CheckResult:
    """WARN above 1 s (JWTs and order times drift), FAIL above 5 s (requests get refused)."""
    text = f"server time differs from local clock by {skew_seconds:+.3f}s"
    if abs(skew_seconds) > SKEW_FAIL_SECONDS:
        return CheckResult("clock skew", FAIL, f"{text} (> {SKEW_FAIL_SECONDS:g}s): fix NTP")
    if abs(skew_seconds) > SKEW_WARN_SECONDS:
        return CheckResult("clock skew", WARN, f"{text} (> {SKEW_WARN_SECONDS:g}s)")
    return CheckResult("clock skew", PASS, text)


def check_permissions(perms: KeyPermissions) -> CheckResult:
    """A trading key must trade; one that can also transfer funds is a needless risk (WARN)."""
    if not perms.can_view or not perms.can_trade:
        missing = ", ".join(n for n, ok in (("view", perms.can_view), ("trade", perms.can_trade)) if not ok)
        return CheckResult("key permissions", FAIL, f"key lacks: {missing}")
    if perms.can_transfer:
        return CheckResult(
            "key permissions",
            WARN,
            "key can transfer funds: a trading key should not (make a view+trade key)",
        )
    return CheckResult("key permissions", PASS, "view + trade, no transfer")


def check_products(symbols: Sequence[str], products: Mapping[str, Product]) -> CheckResult:
    """Every configured symbol is listed and tradable."""
    missing = [s for s in symbols if s not in products]
    disabled = [s for s in symbols if s in products and products[s].trading_disabled]
    if missing or disabled:
        parts = []
        if missing:
            parts.append(f"not listed: {', '.join(missing)}")
        if disabled:
            parts.append(f"trading disabled: {', '.join(disabled)}")
        return CheckResult("products", FAIL, "; ".join(parts))
    return CheckResult("products", PASS, f"{', '.join(symbols)} listed and tradable")


def check_fee_tier(fee: FeeTier) -> CheckResult:
    return CheckResult(
        "fee tier",
        PASS,
        f"{fee.pricing_tier or '-'}: maker {fee.maker_fee_rate}, taker {fee.taker_fee_rate}",
    )


def check_disk(free_bytes: int, path: str) -> CheckResult:
    free = f"{free_bytes / 1024**3:.1f} GiB free at {path}"
    if free_bytes < DISK_FAIL_BYTES:
        return CheckResult("disk space", FAIL, f"only {free} (< {DISK_FAIL_BYTES // 1024**2} MiB)")
    if free_bytes < DISK_WARN_BYTES:
        return CheckResult("disk space", WARN, f"only {free} (< 1 GiB)")
    return CheckResult("disk space", PASS, free)


def check_risk_limits(
    risk: RiskConfig, products: Mapping[str, Product] | None, *, enable_derivatives: bool
) -> list[CheckResult]:
    """Limits that contradict each other or the products: FAIL when a limit can never bind as meant."""
    out: list[CheckResult] = []
    per_symbol, total = risk.max_notional_per_symbol_usd, risk.max_total_exposure_usd
    if per_symbol is not None and total is not None and per_symbol > total:
        out.append(
            CheckResult(
                "risk: notional vs exposure",
                FAIL,
                f"max notional per symbol {per_symbol} > max total exposure {total}",
            )
        )
    elif per_symbol is None or total is None:
        unset = "RISK_MAX_NOTIONAL_PER_SYMBOL_USD" if per_symbol is None else "RISK_MAX_TOTAL_EXPOSURE_USD"
        out.append(CheckResult("risk: notional vs exposure", WARN, f"{unset} is unset: no cap"))
    else:
        out.append(
            CheckResult("risk: notional vs exposure", PASS, f"per symbol {per_symbol} <= total {total}")
        )
    if products:
        caps = [p.max_leverage if p.is_derivative else Decimal(1) for p in products.values()]
        product_max = max(caps) if caps else Decimal(1)
        if risk.max_leverage > product_max:
            where = "derivatives products" if enable_derivatives else "spot products (1x)"
            out.append(
                CheckResult(
                    "risk: leverage",
                    WARN,
                    f"RISK max leverage {risk.max_leverage} > what the {where} allow ({product_max}x)",
                )
            )
        else:
            out.append(
                CheckResult("risk: leverage", PASS, f"max leverage {risk.max_leverage} <= {product_max}x")
            )
    else:
        out.append(CheckResult("risk: leverage", SKIP, "products unknown (exchange not reached)"))
    switches = [
        n
        for n, on in (("kill switch", risk.kill_switch_enabled), ("reduce-only", risk.reduce_only_mode))
        if on
    ]
    if switches:
        out.append(CheckResult("risk: switches", WARN, f"{' and '.join(switches)} enabled at start"))
    if risk.daily_loss_limit_pct is None and risk.daily_loss_limit_usd is None:
        out.append(CheckResult("risk: daily loss", WARN, "no daily loss limit set"))
    return out
