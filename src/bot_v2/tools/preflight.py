"""The production preflight: everything a deploy needs, checked before the bot starts.

``run_preflight(profile, env)`` returns one ``CheckResult`` per check, in a fixed order; nothing raises for a
failed check. Network and state calls run under short timeouts so an unreachable service FAILs in seconds.
The in-process simulator (dev) runs from a private temporary directory, never the bot's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bot_v2.brokerages.base import Broker
from bot_v2.config import BotSettings, load_settings
from bot_v2.domain import Product, Symbol, utc_now
from bot_v2.errors import ConfigError, MissingCredentialsError, PerpsBotError
from bot_v2.orchestration.keys import SAFETY_KEY
from bot_v2.state import StateManager, WarmBackend
from bot_v2.tools.checks import (
    check_clock_skew,
    check_credentials,
    check_disk,
    check_fee_tier,
    check_permissions,
    check_products,
    check_risk_limits,
)
from bot_v2.tools.common import CheckResult, CheckStatus
from bot_v2.tools.metrics_check import metrics_preflight

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "run_preflight"]

DEFAULT_TIMEOUT_SECONDS = 5.0
_PLACEHOLDER = {"COINBASE_API_KEY": "preflight-placeholder", "COINBASE_API_SECRET": "preflight-placeholder"}

PASS, WARN, FAIL, SKIP = CheckStatus.PASS, CheckStatus.WARN, CheckStatus.FAIL, CheckStatus.SKIP
T = TypeVar("T")

EXCHANGE_CHECKS = ("exchange", "clock skew", "key permissions", "products", "fee tier", "derivatives")
STATE_CHECKS = ("state tiers", "schema version", "lease", "coherence")


def _skip(names: tuple[str, ...], reason: str) -> list[CheckResult]:
    return [CheckResult(name, SKIP, reason) for name in names]


def _error_text(exc: BaseException, limit_seconds: float) -> str:
    if isinstance(exc, PerpsBotError):
        return exc.one_line()
    if isinstance(exc, TimeoutError):
        return f"no answer within {limit_seconds:g}s"
    return f"{type(exc).__name__}: {exc}"


def load_for_preflight(
    profile: str, env: Mapping[str, str]
) -> tuple[BotSettings | None, CheckResult, CheckResult | None]:
    """Load settings; return (settings or None, the config check, the credentials check if it already failed).

    Missing credentials do not stop the other checks: the rest of the configuration is validated with a
    placeholder so the operator sees every problem in one run (the exchange checks are then skipped).
    """
    try:
        settings = load_settings(profile, env)
    except MissingCredentialsError as exc:
        credentials = CheckResult("credentials", FAIL, exc.one_line())
        try:
            settings = load_settings(profile, {**env, **_PLACEHOLDER})
        except ConfigError as other:
            return None, CheckResult("config", FAIL, other.one_line()), credentials
        return settings, _config_pass(settings), credentials
    except ConfigError as exc:
        return None, CheckResult("config", FAIL, exc.one_line()), None
    return settings, _config_pass(settings), None


def _config_pass(settings: BotSettings) -> CheckResult:
    s = settings.state
    return CheckResult(
        "config",
        PASS,
        f"profile {settings.profile.value}: broker {settings.broker.value}, symbols {','.join(settings.symbols)}, "
        f"state {s.hot_backend.value}/{s.warm_backend.value}/{s.cold_backend.value}, "
        f"interval {settings.interval_seconds:g}s" + (", DRY RUN" if settings.dry_run else ""),
    )


async def run_preflight(
    profile: str, env: Mapping[str, str], *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> list[CheckResult]:
    """Run every check for ``profile`` with ``env`` (the merged .env + environment)."""
    settings, config, credentials_failed = load_for_preflight(profile, env)
    results = [config]
    if settings is None:
        results.append(credentials_failed or CheckResult("credentials", SKIP, "config invalid"))
        results += _skip(EXCHANGE_CHECKS + STATE_CHECKS, "config invalid")
        results += _skip(("disk space", "log dir", "metrics", "risk limits"), "config invalid")
        return results
    from bot_v2.orchestration.wiring import exchange_connection_needs_simulator

    simulated = exchange_connection_needs_simulator(settings)
    coinbase = settings.coinbase
    if credentials_failed is not None:
        results.append(credentials_failed)
        results += _skip(EXCHANGE_CHECKS, "no credentials")
        products: dict[str, Product] | None = None
    else:
        key_file = str(coinbase.key_file) if coinbase.key_file is not None else None
        results.append(check_credentials(coinbase.api_key, key_file, simulated=simulated))
        exchange_results, products = await _exchange_checks(settings, timeout_seconds)
        results += exchange_results
    results += await _state_checks(settings, timeout_seconds)
    results.append(_disk_check(settings.data_dir))
    results.append(_log_dir_check(settings.log_dir))
    results.append(metrics_preflight(settings, timeout=min(timeout_seconds, 2.0)))
    results += check_risk_limits(settings.risk, products, enable_derivatives=settings.enable_derivatives)
    return results


async def _timed(
    name: str, limit_seconds: float, call: Callable[[], Awaitable[T]]
) -> tuple[T | None, CheckResult | None, float]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit_seconds):
            value = await call()
    except (PerpsBotError, TimeoutError, OSError) as exc:
        return (
            None,
            CheckResult(name, FAIL, _error_text(exc, limit_seconds), time.perf_counter() - started),
            0.0,
        )
    return value, None, time.perf_counter() - started


async def _exchange_checks(
    settings: BotSettings, limit_seconds: float
) -> tuple[list[CheckResult], dict[str, Product] | None]:
    from contextlib import AsyncExitStack

    from bot_v2.orchestration.wiring import exchange_connection_needs_simulator, open_runtime

    connection = dataclasses.replace(
        settings.coinbase, timeout_seconds=min(settings.coinbase.timeout_seconds, limit_seconds)
    )
    settings = dataclasses.replace(settings, coinbase=connection)
    out: list[CheckResult] = []
    async with AsyncExitStack() as stack:
        where = connection.base_url
        if exchange_connection_needs_simulator(settings):
            sim_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perps-preflight-sim-")))
            settings = dataclasses.replace(
                settings, simulator=dataclasses.replace(settings.simulator, state_dir=sim_dir)
            )
            where = "the in-process simulator"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit_seconds * 2):
                runtime = await stack.enter_async_context(open_runtime(settings, with_state=False))
                exchange: Broker = runtime.exchange
                before = utc_now()
                server_time = await exchange.server_time()
                after = utc_now()
        except (PerpsBotError, TimeoutError, OSError) as exc:
            out.append(
                CheckResult("exchange", FAIL, _error_text(exc, limit_seconds), time.perf_counter() - started)
            )
            return out + _skip(EXCHANGE_CHECKS[1:], "exchange not reached"), None
        elapsed = time.perf_counter() - started
        out.append(
            CheckResult("exchange", PASS, f"reached {where}, server time {server_time.isoformat()}", elapsed)
        )
        local_mid = before + (after - before) / 2
        out.append(check_clock_skew((server_time - local_mid).total_seconds()))

        perms, failed, took = await _timed("key permissions", limit_seconds, exchange.get_key_permissions)
        out.append(failed or dataclasses.replace(check_permissions(perms), seconds=took))  # type: ignore[arg-type]

        symbols = [Symbol(s) for s in settings.symbols]
        listed, failed, took = await _timed(
            "products", limit_seconds, lambda: exchange.list_products(symbols)
        )
        products = {str(p.symbol): p for p in listed} if listed is not None else None
        out.append(
            failed or dataclasses.replace(check_products(settings.symbols, products or {}), seconds=took)
        )

        fee, failed, took = await _timed("fee tier", limit_seconds, exchange.get_fee_tier)
        out.append(failed or dataclasses.replace(check_fee_tier(fee), seconds=took))  # type: ignore[arg-type]

        if settings.enable_derivatives:
            summary, failed, took = await _timed(
                "derivatives", limit_seconds, exchange.get_futures_balance_summary
            )
            if failed is not None:
                out.append(failed)
            elif summary is None:
                out.append(
                    CheckResult("derivatives", FAIL, "CFM balance summary not available for this key", took)
                )
            else:
                out.append(
                    CheckResult(
                        "derivatives",
                        PASS,
                        f"CFM balance {summary.total_usd_balance} USD, buying power {summary.buying_power}, "
                        f"liquidation buffer {summary.liquidation_buffer_percentage}%",
                        took,
                    )
                )
        else:
            out.append(CheckResult("derivatives", SKIP, "COINBASE_ENABLE_DERIVATIVES is off"))
    return out, products


async def _state_checks(settings: BotSettings, limit_seconds: float) -> list[CheckResult]:
    state_settings = dataclasses.replace(  # a reader: no write, promotion or repair on any tier
        settings.state,
        connect_timeout_seconds=min(settings.state.connect_timeout_seconds, limit_seconds),
        read_only=True,
    )
    s = state_settings
    backends = f"hot {s.hot_backend.value} / warm {s.warm_backend.value} / cold {s.cold_backend.value}"
    out: list[CheckResult] = []
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit_seconds * 3):
            state = await StateManager.create(state_settings)
    except (PerpsBotError, TimeoutError, OSError) as exc:
        out.append(
            CheckResult(
                "state tiers",
                FAIL,
                f"{backends}: {_error_text(exc, limit_seconds)}",
                time.perf_counter() - started,
            )
        )
        return out + _skip(STATE_CHECKS[1:], "state not reachable")
    try:
        health = state.health()
        took = time.perf_counter() - started
        if health.degraded_hot:
            out.append(
                CheckResult(
                    "state tiers",
                    FAIL,
                    f"{backends}: HOT {health.hot_state.value}: {health.last_hot_error}",
                    took,
                )
            )
        else:
            out.append(CheckResult("state tiers", PASS, f"{backends} reachable", took))
        out.append(await _schema_check(state, s.warm_backend, limit_seconds))
        out.append(await _lease_check(state, limit_seconds))
        out.append(await _coherence_check(state, limit_seconds))
    finally:
        await state.close()
    return out


async def _schema_check(state: StateManager, warm: WarmBackend, limit_seconds: float) -> CheckResult:
    from bot_v2.state.migrations import latest_version

    if warm is WarmBackend.POSTGRES:
        from bot_v2.state.migrations.postgres import MIGRATIONS
    else:
        from bot_v2.state.migrations.sqlite import MIGRATIONS
    stats, failed, took = await _timed("schema version", limit_seconds, state.get_storage_stats)
    if failed is not None or stats is None:
        return failed or CheckResult("schema version", FAIL, "no answer")
    expected = latest_version(MIGRATIONS)
    if stats.schema_version != expected:
        return CheckResult(
            "schema version", FAIL, f"WARM schema {stats.schema_version}, code expects {expected}", took
        )
    return CheckResult(
        "schema version",
        PASS,
        f"WARM schema {stats.schema_version} (current), {stats.warm_records} records",
        took,
    )


async def _lease_check(state: StateManager, limit_seconds: float) -> CheckResult:
    """Read the bot's lease (and its safety record, through every read path): who holds it now. Preflight is
    a reader: it writes nothing to any tier (DESIGN.md "Ownership")."""

    async def probe() -> tuple[Any, Any]:
        return await state.read_lease(), await state.get_state(SAFETY_KEY)

    found, failed, took = await _timed("lease", limit_seconds, probe)
    if failed is not None or found is None:
        return failed or CheckResult("lease", FAIL, "no answer")
    lease, _ = found
    if lease is None:
        return CheckResult("lease", PASS, "never held: no bot of this id has run on these stores", took)
    if lease.live:
        return CheckResult(
            "lease",
            WARN,
            f"a bot of this id is running ({lease.describe()}): a new one is refused; start it with --standby "
            "and hand over with --step-down",
            took,
        )
    return CheckResult("lease", PASS, f"free (last holder {lease.describe()})", took)


async def _coherence_check(state: StateManager, limit_seconds: float) -> CheckResult:
    report, failed, took = await _timed(
        "coherence", limit_seconds * 2, lambda: state.verify_coherence(page_size=200)
    )
    if failed is not None or report is None:
        return failed or CheckResult("coherence", FAIL, "no answer")
    if not report.ok:
        kinds = sorted({m.kind for m in report.mismatches})
        return CheckResult(
            "coherence",
            FAIL,
            f"{report.mismatch_count} of {report.checked} HOT keys disagree with WARM ({', '.join(kinds)})",
            took,
        )
    return CheckResult("coherence", PASS, f"{report.checked} HOT keys agree with WARM", took)


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _disk_check(data_dir: Path) -> CheckResult:
    where = _existing_parent(data_dir)
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return CheckResult("disk space", FAIL, f"{where}: {exc}")
    return check_disk(usage.free, str(data_dir))


def _log_dir_check(log_dir: Path) -> CheckResult:
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=log_dir, prefix=".preflight-", delete=True) as handle:
            handle.write(b"ok")
            handle.flush()
    except OSError as exc:
        return CheckResult("log dir", FAIL, f"{log_dir} not writable: {exc.strerror or exc}")
    return CheckResult("log dir", PASS, f"{log_dir} writable")
