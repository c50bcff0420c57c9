"""Emergency commands (issue 10, item 2): --cancel-all, --flatten, --place-order.

Through a running bot (it holds the lease: the request goes through the control key and the bot carries it out
within a cycle) and directly (no bot: the command starts one for a cycle). The exchange is the simulator over
TLS with the real SDK; state is the dev profile's embedded tiers.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from bot_v2.brokerages.simulated import RunningSimulator
from bot_v2.cli import handlers
from bot_v2.config import BotSettings
from bot_v2.domain import OrderRequest, OrderStatus, OrderType, Side, Symbol
from bot_v2.errors import GuardDeniedError, StateUnavailableError
from bot_v2.orchestration import commands
from bot_v2.orchestration.emergency import read_emergency_result
from bot_v2.orchestration.wiring import open_runtime, open_state, reader_settings
from bot_v2.strategies.hold import HoldStrategy
from tests.e2e.test_audit import ACTOR, events
from tests.e2e.test_cli_commands import assert_one_line_error, run_cli
from tests.helpers import eventually_async

pytestmark = pytest.mark.e2e

RESTING_BUY = OrderRequest(Symbol("BTC-USD"), Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("50000"))


async def _open_orders(settings: BotSettings) -> list[str]:
    async with open_runtime(reader_settings(settings), with_state=False) as runtime:
        orders = await runtime.exchange.list_orders(statuses=[OrderStatus.OPEN])
    return [o.client_order_id for o in orders if o.client_order_id.startswith(settings.client_id_prefix)]


async def test_through_the_running_bot(
    fresh_simulator: RunningSimulator, sim_settings: Callable[..., BotSettings]
) -> None:
    settings = sim_settings(PERPS_INTERVAL_SECONDS="0.2")
    stop = asyncio.Event()
    bot = asyncio.create_task(
        commands.run_with_lease(settings, stop_event=stop, strategy=HoldStrategy.from_params({}))
    )
    try:

        async def holder() -> bool:
            try:
                async with open_state(reader_settings(settings)) as state:
                    lease = await state.read_lease()
            except StateUnavailableError:  # the bot is still creating its SQLite file: "database is locked"
                return False
            return lease is not None and lease.live

        await eventually_async(holder, timeout=30)
        assert await handlers.emergency(settings, "place_order", order=RESTING_BUY, reason="drill") == 0
        assert len(await _open_orders(settings)) == 1
        assert await handlers.emergency(settings, "cancel_all", reason="drill") == 0
        assert await _open_orders(settings) == []
        async with open_state(reader_settings(settings)) as state:
            result = await read_emergency_result(state, 2)
        assert result is not None and result["action"] == "cancel_all" and len(result["cancelled"]) == 1
        assert result["reason"] == "drill" and str(result["source"]).startswith("cli:")
    finally:
        stop.set()
        summary = await bot
    assert summary.orders_placed == 1 and not summary.errors


async def test_place_order_is_refused_like_its_preview_when_halted(
    sim_settings: Callable[..., BotSettings],
) -> None:
    settings = sim_settings(RISK_KILL_SWITCH_ENABLED="1")
    with pytest.raises(GuardDeniedError):
        await handlers.emergency(settings, "place_order", order=RESTING_BUY)
    async with open_state(reader_settings(settings)) as state:
        assert await state.get_state("control:emergency") is None  # nothing queued


def test_directly_when_no_bot_runs(tmp_path: Path) -> None:
    order = ["--order-symbol", "BTC-USD", "--order-side", "buy", "--order-quantity", "0.001"]
    placed = run_cli(tmp_path, "--place-order", *order, "--order-type", "limit", "--order-price", "50000")
    assert placed.returncode == 0, placed.stdout[-2000:] + placed.stderr[-2000:]
    assert "placed" in placed.stdout
    cancelled = run_cli(tmp_path, "--cancel-all", "--order-symbol", "BTC-USD", "--reason", "SEV-2 drill")
    assert cancelled.returncode == 0, cancelled.stderr[-2000:]
    assert "cancelled 1 of 1" in cancelled.stdout
    assert "Cancelled 1 pending orders" in (tmp_path / "logs" / "perps_bot.log").read_text()
    # who asked and why, in the events of the bot that carried it out
    [done] = [e["emergency"] for e in events(tmp_path, "control_applied") if e.get("emergency")][-1:]
    assert isinstance(done, dict) and done["action"] == "cancel_all" and done["reason"] == "SEV-2 drill"
    assert re.fullmatch(ACTOR, str(done["source"])), done

    bought = run_cli(tmp_path, "--place-order", *order, "--order-type", "market")
    assert bought.returncode == 0, bought.stderr[-2000:]
    assert_one_line_error(run_cli(tmp_path, "--flatten"), 2, "--flatten: confirm with --yes")
    flat = run_cli(tmp_path, "--flatten", "--yes")
    assert flat.returncode == 0, flat.stdout[-2000:] + flat.stderr[-2000:]
    assert "1 of 1 closing orders placed" in flat.stdout
    snapshot = json.loads(run_cli(tmp_path, "--account-snapshot", "--json").stdout)
    assert all(Decimal(str(p["quantity"])) == 0 for p in snapshot["bot_positions"])


def test_apply_order_edit_is_judged_like_a_new_order(tmp_path: Path) -> None:
    """Item 4: the edit goes through the guards and the trading state; the printed hint names the profile."""
    order = ["--order-symbol", "BTC-USD", "--order-side", "buy", "--order-quantity", "0.001"]
    placed = run_cli(tmp_path, "--place-order", *order, "--order-type", "limit", "--order-price", "50000")
    assert placed.returncode == 0, placed.stderr[-2000:]
    snapshot = json.loads(run_cli(tmp_path, "--account-snapshot", "--json").stdout)
    (order_id,) = [o["order_id"] for o in snapshot["open_orders"]]
    preview = run_cli(tmp_path, "--edit-order-preview", order_id, "--order-price", "49000")
    assert preview.returncode == 0, preview.stdout[-2000:] + preview.stderr[-2000:]
    hint = re.search(r"Apply with: (perps-bot --profile dev --apply-order-edit (\S+))", preview.stdout)
    assert hint is not None, preview.stdout
    edit_arg = hint.group(2)

    assert run_cli(tmp_path, "--kill-switch", "on", "--reason", "test").returncode == 0
    refused = run_cli(tmp_path, "--apply-order-edit", edit_arg)
    assert_one_line_error(refused, 2, f"edit of {order_id} refused")
    assert "HALTED" in refused.stderr

    assert run_cli(tmp_path, "--kill-switch", "off").returncode == 0
    applied = run_cli(tmp_path, "--apply-order-edit", edit_arg)
    assert applied.returncode == 0, applied.stdout[-2000:] + applied.stderr[-2000:]


def test_flatten_sends_nothing_while_halted(tmp_path: Path) -> None:
    """HALTED sends nothing, not even a closing order: --flatten under the kill switch exits 2, the position
    stays; with the kill switch off and reduce-only on, the same command closes it."""
    order = ["--order-symbol", "BTC-USD", "--order-side", "buy", "--order-quantity", "0.001"]
    assert run_cli(tmp_path, "--place-order", *order, "--order-type", "market").returncode == 0
    assert run_cli(tmp_path, "--kill-switch", "on", "--reason", "test").returncode == 0
    refused = run_cli(tmp_path, "--flatten", "--yes", "--reason", "test")
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "0 of 1 closing orders placed" in refused.stdout

    def held() -> list[Decimal]:
        snapshot = json.loads(run_cli(tmp_path, "--account-snapshot", "--json").stdout)
        return [Decimal(str(p["quantity"])) for p in snapshot["bot_positions"] if Decimal(str(p["quantity"]))]

    assert held() == [Decimal("0.001")]
    assert run_cli(tmp_path, "--kill-switch", "off", "--reduce-only-mode", "on").returncode == 0
    flat = run_cli(tmp_path, "--flatten", "--yes")
    assert flat.returncode == 0, flat.stdout[-2000:] + flat.stderr[-2000:]
    assert held() == []


def test_apply_order_edit_is_judged_by_the_guards_with_the_old_order_gone(tmp_path: Path) -> None:
    """Item 4: a resting buy of 0.006 (max position 0.01) may grow to 0.008 -- judged without the order it
    replaces, not 0.014 with it counted twice -- but not to 0.012, which the position-size guard refuses."""
    env = {"RISK_MAX_POSITION_SIZE": "0.01"}
    order = [
        "--order-symbol",
        "BTC-USD",
        "--order-side",
        "buy",
        "--order-type",
        "limit",
        "--order-price",
        "50000",
    ]
    placed = run_cli(tmp_path, "--place-order", *order, "--order-quantity", "0.006", env=env)
    assert placed.returncode == 0, placed.stdout[-2000:] + placed.stderr[-2000:]
    snapshot = json.loads(run_cli(tmp_path, "--account-snapshot", "--json", env=env).stdout)
    (order_id,) = [o["order_id"] for o in snapshot["open_orders"]]

    def edit(quantity: str) -> subprocess.CompletedProcess[str]:
        preview = run_cli(tmp_path, "--edit-order-preview", order_id, "--order-quantity", quantity, env=env)
        assert preview.returncode == 0, preview.stdout[-2000:] + preview.stderr[-2000:]
        hint = re.search(r"--apply-order-edit (\S+)", preview.stdout)
        assert hint is not None, preview.stdout
        return run_cli(tmp_path, "--apply-order-edit", hint[1], env=env)

    too_big = edit("0.012")
    assert_one_line_error(too_big, 2, f"edit of {order_id} refused")
    assert "position" in too_big.stderr.lower(), too_big.stderr
    grown = edit("0.008")
    assert grown.returncode == 0, grown.stdout[-2000:] + grown.stderr[-2000:]
    snapshot = json.loads(run_cli(tmp_path, "--account-snapshot", "--json", env=env).stdout)
    assert [Decimal(str(o["quantity"])) for o in snapshot["open_orders"]] == [Decimal("0.008")]
