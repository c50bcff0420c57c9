"""``verify_core``: a quick health sweep of the core surfaces, each in its own temporary directory.

* config   -- every profile loads with a minimal environment (placeholders for credentials and services)
* exchange -- the profile's exchange (dev: an in-process simulator): products, quotes, an order preview
* state    -- an embedded StateManager: set / get / batch / keys / coherence round trip
* risk     -- a RiskEngine denies an over-limit order and passes a small one
* loop     -- one trading cycle (``run_bot(once=True)``) on the simulated exchange
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bot_v2.config import PROFILES, BotSettings, BrokerKind, Profile, load_settings
from bot_v2.domain import OrderRequest, OrderType, Product, Quote, Side, Symbol, TimeInForce
from bot_v2.errors import PerpsBotError
from bot_v2.tools.common import CheckResult, CheckStatus

__all__ = ["CHECKS", "run_checks"]

PASS, FAIL, SKIP = CheckStatus.PASS, CheckStatus.FAIL, CheckStatus.SKIP
CHECK_TIMEOUT_SECONDS = 30.0

#: Enough for any profile to load without touching a service (nothing connects in load_settings).
MINIMAL_ENV: Mapping[str, str] = {
    "COINBASE_API_KEY": "verify-core-placeholder-key",
    "COINBASE_API_SECRET": "verify-core-placeholder-secret",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DATABASE_URL": "postgresql://verify@127.0.0.1:5432/verify",
    "S3_BUCKET": "verify-core",
}


async def check_config(profile: str, env: Mapping[str, str], work: Path) -> str:
    loaded = []
    for name in Profile:
        base = {"PERPS_DATA_DIR": str(work / name.value), "PERPS_LOG_DIR": str(work / "logs")}
        needs = PROFILES[name]["broker"] == BrokerKind.COINBASE.value
        settings = load_settings(name, {**base, **(MINIMAL_ENV if needs else {})}, root=work)
        loaded.append(f"{name.value} ({len(settings.symbols)} symbols)")
    return "profiles load: " + ", ".join(loaded)


def _scratch_settings(profile: str, env: Mapping[str, str], work: Path) -> BotSettings:
    """The profile's settings with data and logs moved into ``work`` (and a fast simulator tick)."""
    scratch = {**env, "PERPS_DATA_DIR": str(work / "data"), "PERPS_LOG_DIR": str(work / "logs")}
    scratch.setdefault("SIM_TICK_SECONDS", "0.05")
    return load_settings(profile, scratch, root=work)


async def check_exchange(profile: str, env: Mapping[str, str], work: Path) -> str:
    from bot_v2.orchestration.wiring import open_runtime

    settings = _scratch_settings(profile, env, work)
    symbol = settings.symbols[0]
    async with open_runtime(settings, with_state=False) as runtime:
        products = await runtime.exchange.list_products(list(settings.symbols))
        listed = {p.symbol for p in products}
        missing = [s for s in settings.symbols if s not in listed]
        if missing:
            raise AssertionError(f"products not listed: {', '.join(missing)}")
        quotes = await runtime.exchange.get_quotes(list(settings.symbols))
        if set(quotes) != set(settings.symbols):
            raise AssertionError(f"quotes for {sorted(quotes)} only")
        product = next(p for p in products if p.symbol == symbol)
        request = OrderRequest(
            symbol=symbol,
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=product.base_min_size,
            time_in_force=TimeInForce.IOC,
        )
        preview = await runtime.exchange.preview_order(request)
        if preview.errors:
            raise AssertionError(
                f"preview of {product.base_min_size} {symbol} refused: {', '.join(preview.errors)}"
            )
    mid = quotes[symbol].mid
    return f"{len(products)} products, quotes ({symbol} mid {mid:.2f}), preview of {product.base_min_size} {symbol} ok"


async def check_state(profile: str, env: Mapping[str, str], work: Path) -> str:
    from bot_v2.state import StateCategory, StateManager, StateSettings, StateWrite

    settings = StateSettings(bot_id="verify-core", data_dir=work / "state-check")
    async with await StateManager.create(settings) as state:
        await state.set_state("positions:BTC-USD", {"quantity": Decimal("0.5")}, StateCategory.POSITIONS)
        value = await state.get_state("positions:BTC-USD")
        if value != {"quantity": Decimal("0.5")}:
            raise AssertionError(f"set/get returned {value!r}")
        writes = [StateWrite(f"orders:verify-{i}", {"i": i}, StateCategory.ORDERS) for i in range(20)]
        writes.append(StateWrite("portfolio:pnl", {"realized": Decimal(1)}, StateCategory.PORTFOLIO))
        await state.batch_write(writes)
        got = await state.batch_get_state([w.key for w in writes])
        if len(got) != len(writes) or got["orders:verify-7"] != {"i": 7}:
            raise AssertionError(f"batch read {len(got)} of {len(writes)} keys")
        found = await state.get_keys_by_pattern("orders:*")
        if len(found) != 20:
            raise AssertionError(f"orders:* listed {len(found)} keys, expected 20")
        report = await state.verify_coherence()
        if not report.ok:
            raise AssertionError(f"coherence: {report.mismatch_count} mismatches")
        deleted = await state.batch_delete_state(found)
        if deleted != 20:
            raise AssertionError(f"deleted {deleted} of 20 keys")
    return f"set/get, batch of {len(writes)}, keys, coherence ({report.checked} HOT keys), delete ok"


async def check_risk(profile: str, env: Mapping[str, str], work: Path) -> str:
    from bot_v2.risk import RiskEngine, RiskSnapshot

    settings = _scratch_settings(profile, env, work)
    config = settings.risk
    symbol = Symbol("BTC-USD")
    now = datetime.now(UTC)
    product = Product(
        symbol=symbol,
        base_currency="BTC",
        quote_currency="USD",
        base_increment=Decimal("0.00000001"),
        price_increment=Decimal("0.01"),
        base_min_size=Decimal("0.00001"),
        base_max_size=Decimal(10000),
    )
    price = Decimal(50000)
    cap = config.max_notional_per_symbol_usd or config.max_total_exposure_usd or Decimal(100000)
    snapshot = RiskSnapshot(
        equity_usd=cap * 100,
        quotes={symbol: Quote(symbol, price - 1, price + 1, now)},
        products={symbol: product},
        symbols=(symbol,),
        cycle_count=1,
    )
    engine = RiskEngine(dataclasses.replace(config, kill_switch_enabled=False, reduce_only_mode=False))

    def order(quantity: Decimal) -> OrderRequest:
        return OrderRequest(symbol, Side.BUY, OrderType.MARKET, quantity, time_in_force=TimeInForce.IOC)

    small = engine.check_order(order(Decimal("0.0001")), snapshot, now)
    if not small.allowed:
        raise AssertionError(f"small order denied: {', '.join(d.guard for d in small.denials)}")
    big_quantity = (cap * 2 / price).quantize(Decimal("0.0001"))
    big = engine.check_order(order(big_quantity), snapshot, now)
    if big.allowed:
        raise AssertionError(f"an order of {big_quantity} BTC (> {cap} USD) was approved")
    return f"small order approved; {big_quantity} BTC denied by {', '.join(d.guard for d in big.denials)}"


async def check_loop(profile: str, env: Mapping[str, str], work: Path) -> str:
    from bot_v2.orchestration.bot import run_bot
    from bot_v2.orchestration.wiring import exchange_connection_needs_simulator, open_runtime

    settings = _scratch_settings(profile, env, work)
    if not exchange_connection_needs_simulator(settings):
        raise _Skip(f"profile {settings.profile.value} trades on a real exchange: the loop check runs on dev")
    async with open_runtime(settings) as runtime:
        summary = await run_bot(runtime, once=True)
    if summary.halted or summary.cycles != 1:
        raise AssertionError(
            f"{summary.cycles} cycle(s), halted={summary.halted}: {'; '.join(summary.errors)}"
        )
    if not settings.health_path.exists() or not settings.events_path.exists():
        raise AssertionError("health.json / events.jsonl not written")
    return (
        f"1 cycle, state {summary.trading_state}, {summary.orders_placed} order(s), health.json + events ok"
    )


class _Skip(Exception):
    """A check that does not apply to this profile."""


CheckFn = Callable[[str, Mapping[str, str], Path], Awaitable[str]]
CHECKS: dict[str, CheckFn] = {
    "config": check_config,
    "exchange": check_exchange,
    "state": check_state,
    "risk": check_risk,
    "loop": check_loop,
}


async def run_one(name: str, profile: str, env: Mapping[str, str]) -> CheckResult:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"verify-core-{name}-") as work:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                detail = await CHECKS[name](profile, env, Path(work))
        except _Skip as skip:
            return CheckResult(name, SKIP, str(skip), time.perf_counter() - started)
        except AssertionError as exc:
            return CheckResult(name, FAIL, str(exc), time.perf_counter() - started)
        except PerpsBotError as exc:
            return CheckResult(name, FAIL, exc.one_line(), time.perf_counter() - started)
        except TimeoutError:
            return CheckResult(
                name, FAIL, f"no result within {CHECK_TIMEOUT_SECONDS:g}s", time.perf_counter() - started
            )
        except Exception as exc:  # a sweep reports every surface: one broken one must not hide the others
            return CheckResult(name, FAIL, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    return CheckResult(name, PASS, detail, time.perf_counter() - started)


async def run_checks(names: list[str], profile: str, env: Mapping[str, str]) -> list[CheckResult]:
    """Run the named checks one after another (each in its own temporary directory)."""
    return [await run_one(name, profile, env) for name in names]
