"""The perps-bot CLI run as a subprocess: operator commands end to end, and bad input -> one line + exit code.

Each run uses the dev profile's in-process simulated exchange (the real SDK over TLS on 127.0.0.1) with its
own data directory, so runs are independent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot_v2.brokerages.simulated.auth import new_private_pem
from tests.e2e.conftest import PREVIEW_MARKET_BUY

pytestmark = pytest.mark.e2e

BOT = [sys.executable, "-m", "bot_v2.cli"]


def run_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    full_env.update(
        {
            "PERPS_DATA_DIR": str(tmp_path / "data"),
            "PERPS_LOG_DIR": str(tmp_path / "logs"),
            "SIM_TICK_SECONDS": "0.05",
        }
    )
    full_env.pop("REDIS_URL", None)
    full_env.pop("DATABASE_URL", None)
    full_env.pop("S3_ENDPOINT_URL", None)
    full_env.pop("S3_BUCKET", None)
    full_env.update(env or {})
    return subprocess.run(
        [*BOT, *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert needle in errors[0], errors[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_help_documents_every_flag_with_examples(tmp_path: Path) -> None:
    import click

    from bot_v2.cli import app, cli

    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0
    assert "Examples:" in result.stdout
    options = [p for p in cli.params if isinstance(p, click.Option)]
    assert len(options) > 30
    for option in options:
        flag = option.opts[0]
        assert flag in result.stdout, flag
        assert option.help and "Example" in option.help, f"{flag} has no example in its help"
    # every command flag has a worked example in the Examples section too
    examples = result.stdout.split("Examples:", 1)[1]
    for command in app.COMMAND_FLAGS:
        assert re.search(rf"^\s+perps-bot .*{re.escape(command)}\b", examples, re.M), (
            f"no example of {command}"
        )


def test_dev_fast_runs_one_cycle_through_the_simulator(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--profile", "dev", "--dev-fast")
    assert result.returncode == 0, result.stderr
    assert "Run summary" in result.stdout
    assert "BTC-USD" in result.stdout and "ETH-USD" in result.stdout
    log = (tmp_path / "logs" / "perps_bot.log").read_text()
    assert "simulated exchange" in log
    assert "PRIVATE KEY" not in log


def test_clear_reason_queues_a_request_and_rejects_other_codes(tmp_path: Path) -> None:
    first = run_cli(tmp_path, "--clear-reason", "drawdown")
    assert first.returncode == 0, first.stderr
    assert "Clear request queued" in first.stdout and "DRAWDOWN" in first.stdout
    second = run_cli(tmp_path, "--clear-reason", "RECONCILE_MISMATCH")
    assert second.returncode == 0, second.stderr
    assert "#1 DRAWDOWN, #2 RECONCILE_MISMATCH" in second.stdout  # both pending: no bot has applied them
    refused = run_cli(tmp_path, "--clear-reason", "KILL_SWITCH")
    assert refused.returncode == 2 and "KILL_SWITCH" in refused.stderr


def test_account_snapshot_tables_and_json(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--account-snapshot")
    assert result.returncode == 0, result.stderr
    for title in ("Balances", "Positions", "Open orders", "Key permissions and fees", "Risk limits"):
        assert title in result.stdout
    as_json = run_cli(tmp_path, "--account-snapshot", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert {b["currency"] for b in data["balances"]} >= {"USD", "BTC"}
    assert data["permissions"]["can_trade"] is True
    assert "clock_skew_seconds" in data and abs(data["clock_skew_seconds"]) < 5


def test_preview_order_shows_exchange_preview_and_guard_verdict(tmp_path: Path) -> None:
    result = run_cli(tmp_path, *PREVIEW_MARKET_BUY)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Exchange preview" in result.stdout and "Bot risk verdict" in result.stdout
    assert "APPROVED" in result.stdout


def test_preview_denied_by_a_guard_exits_2_with_the_reason(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "--preview-order",
        "--order-symbol",
        "BTC-USD",
        "--order-side",
        "buy",
        "--order-type",
        "market",
        "--order-quantity",
        "1",
        env={"RISK_MAX_NOTIONAL_PER_SYMBOL_USD": "100"},
    )
    assert_one_line_error(result, 2, "GuardDeniedError")
    assert "REFUSED" in result.stdout


def test_edit_preview_then_apply_changes_a_live_order(tmp_path: Path) -> None:
    import bot_v2.cli  # noqa: F401  (fail fast on import errors)

    place = run_cli(tmp_path, "--account-snapshot", "--json")
    assert place.returncode == 0
    # Place a resting limit order far below the market through the adapter, then edit it via the CLI.
    script = tmp_path / "place.py"
    script.write_text(_PLACE_SCRIPT)
    placed = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=os.environ | {"PERPS_DATA_DIR": str(tmp_path / "data"), "PERPS_LOG_DIR": str(tmp_path / "logs")},
        timeout=60,
        check=False,
    )
    assert placed.returncode == 0, placed.stderr
    order_id = placed.stdout.strip().splitlines()[-1]
    preview = run_cli(tmp_path, "--edit-order-preview", order_id, "--order-quantity", "0.002")
    assert preview.returncode == 0, preview.stderr + preview.stdout
    match = re.search(r"--apply-order-edit (\S+):(\w+)", preview.stdout)
    assert match, preview.stdout
    applied = run_cli(tmp_path, "--apply-order-edit", f"{match[1]}:{match[2]}")
    assert applied.returncode == 0, applied.stderr + applied.stdout
    assert "0.002" in applied.stdout
    again = run_cli(tmp_path, "--apply-order-edit", f"{match[1]}:{match[2]}")
    assert_one_line_error(again, 2, "no edit preview")


_PLACE_SCRIPT = """
import asyncio, os
from decimal import Decimal
from bot_v2.config import load_settings
from bot_v2.domain import OrderRequest, OrderType, Side, Symbol, TimeInForce
from bot_v2.domain.types import ClientOrderId
from bot_v2.orchestration.wiring import open_runtime

async def main():
    settings = load_settings("dev", dict(os.environ))
    async with open_runtime(settings, with_state=False) as rt:
        quotes = await rt.exchange.get_quotes([Symbol("BTC-USD")])
        price = (quotes[Symbol("BTC-USD")].bid * Decimal("0.8")).quantize(Decimal("0.01"))
        order = await rt.exchange.place_order(OrderRequest(
            symbol=Symbol("BTC-USD"), side=Side.BUY, order_type=OrderType.LIMIT, quantity=Decimal("0.001"),
            limit_price=price, time_in_force=TimeInForce.GTC, client_order_id=ClientOrderId("cli-edit-test-1")))
        print(order.order_id)

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("args", "env", "code", "needle"),
    [
        (
            ["--profile", "dev", "--dev-fast"],
            {"PERPS_INTERVAL_SECONDS": "often"},
            2,
            "PERPS_INTERVAL_SECONDS",
        ),
        (["--profile", "prod", "--dev-fast"], {}, 2, "COINBASE_API_KEY"),
        (["--apply-order-edit", "no-colon-here"], {}, 2, "ORDER_ID:PREVIEW_ID"),
        (
            [
                "--preview-order",
                "--order-symbol",
                "BTC-USD",
                "--order-side",
                "buy",
                "--order-type",
                "limit",
                "--order-quantity",
                "0.01",
            ],
            {},
            2,
            "limit price",
        ),
        (
            [
                "--preview-order",
                "--order-symbol",
                "BTC-USD",
                "--order-side",
                "buy",
                "--order-type",
                "stop_limit",
                "--order-quantity",
                "0.01",
                "--order-price",
                "100",
            ],
            {},
            2,
            "stop price",
        ),
        (
            [
                "--preview-order",
                "--order-symbol",
                "BTC-USD",
                "--order-side",
                "buy",
                "--order-quantity",
                "abc",
            ],
            {},
            2,
            "--order-quantity",
        ),
        (
            ["--preview-order", "--order-symbol", "NOPE-USD", "--order-side", "buy", "--order-quantity", "1"],
            {},
            2,
            "NOPE-USD",
        ),
        (
            [
                "--preview-order",
                "--order-symbol",
                "BTC-USD",
                "--order-side",
                "buy",
                "--order-quantity",
                "0.000000001",
            ],
            {},
            2,
            "BTC-USD",
        ),
        (
            [
                "--preview-order",
                "--order-symbol",
                "BTC-USD",
                "--order-side",
                "buy",
                "--order-type",
                "limit",
                "--order-quantity",
                "0.01",
                "--order-price",
                "100.001",
            ],
            {},
            2,
            "price",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, needle: str
) -> None:
    result = run_cli(tmp_path, *args, env=env)
    assert_one_line_error(result, code, needle)


def unreachable_exchange_env() -> dict[str, str]:
    """Well-formed credentials (a fresh key) for an exchange nobody answers at (port 9), a 1 s timeout."""
    return {
        "COINBASE_BASE_URL": "127.0.0.1:9",
        "COINBASE_API_KEY": "organizations/x/apiKeys/KEY-abcd1234",
        "COINBASE_API_SECRET": new_private_pem(),
        "COINBASE_TIMEOUT_SECONDS": "1",
    }


def test_unreachable_exchange_is_a_runtime_failure_with_masked_secrets(tmp_path: Path) -> None:
    env = unreachable_exchange_env()
    result = run_cli(tmp_path, "--dev-fast", env=env)
    assert_one_line_error(result, 1, "")
    body = env["COINBASE_API_SECRET"].splitlines()[1]
    assert body not in result.stderr + result.stdout
    assert body not in (tmp_path / "logs" / "perps_bot.log").read_text()


def test_malformed_env_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("THIS IS NOT VALID\n")
    result = run_cli(tmp_path, "--dev-fast")
    assert_one_line_error(result, 2, ".env:1")


def test_a_typo_in_the_env_file_stops_the_bot_before_it_trades(tmp_path: Path) -> None:
    """The issue's case: ``RISK_KILL_SWITCH_ENABLD=1`` in .env was ignored and the bot traded."""
    (tmp_path / ".env").write_text("RISK_KILL_SWITCH_ENABLD=1\n")
    result = run_cli(tmp_path, "--dev-fast")
    assert_one_line_error(
        result, 2, "RISK_KILL_SWITCH_ENABLD: unknown variable (did you mean RISK_KILL_SWITCH_ENABLED?)"
    )
    assert not (tmp_path / "data" / "events.jsonl").exists()  # never started


def test_running_bot_serves_metrics_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import socket
    import urllib.request

    from tests.helpers import eventually

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERPS_", "COINBASE_", "RISK_"))}
    env.update(
        {
            "PERPS_DATA_DIR": str(tmp_path / "data"),
            "PERPS_LOG_DIR": str(tmp_path / "logs"),
            "METRICS_PORT": str(port),
            "SIM_TICK_SECONDS": "0.05",
        }
    )
    proc = subprocess.Popen(
        [*BOT, "--interval", "0.2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def scraped() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    body = response.read().decode()
            except OSError as exc:
                raise AssertionError(str(exc)) from exc
            assert 'perps_bot_cycles_total{bot_id="' in body and 'outcome="ok"}' in body
            return body

        body = eventually(scraped, timeout=30)
        assert re.search(r'perps_bot_mark_price\{bot_id="[^"]+",symbol="BTC-USD"\}', body)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Run summary" in out
    health = json.loads((tmp_path / "data" / "health.json").read_text())
    assert health["message"] == "stopped" and health["trading_state"] == "ACTIVE"  # stopped, not failed
    records = [json.loads(line) for line in (tmp_path / "data" / "events.jsonl").read_text().splitlines()]
    events = [r["type"] for r in records if r["type"] != "lease"]
    assert events[0] == "bot_started" and events[-1] == "bot_stopped"
    # the lease is taken before anything else and released after everything else
    assert records[0]["kind"] == "acquired" and records[-1]["kind"] == "released"
