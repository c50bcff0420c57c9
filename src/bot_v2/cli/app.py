"""``perps-bot``: parse flags, load settings, configure logging, call one command handler (``handlers``).

Exit codes: 0 ok; 1 runtime failure (exchange or state unreachable, halted); 2 bad input (flags, config,
env, order parameters, a guard or the exchange refusing the order). Errors print one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import click

from bot_v2.config import CliOverrides, Profile, load_settings, merged_environment
from bot_v2.domain import MarginType, OrderRequest, OrderType, Side, Symbol, TimeInForce
from bot_v2.domain.types import ClientOrderId, OrderId, ensure_utc
from bot_v2.errors import InputError, PerpsBotError, one_line, underlying
from bot_v2.monitoring.logsetup import configure_logging
from bot_v2.orchestration.controls import OPERATOR_CLEARABLE
from bot_v2.risk import ReasonCode

logger = logging.getLogger("bot_v2.cli")

EPILOG = """\b
Examples:
  perps-bot --profile dev --dev-fast            one trading cycle on the built-in simulated exchange
  perps-bot --profile dev --interval 5          trade continuously (Ctrl-C stops cleanly)
  perps-bot --profile dev --dry-run             paper trading: no order leaves the process
  perps-bot --account-snapshot [--json]         balances, positions, open orders, permissions, fee tier
  perps-bot --preview-order --order-symbol BTC-USD --order-side buy \\
            --order-type market --order-quantity 0.01
  perps-bot --preview-order --order-symbol BTC-USD --order-side sell --order-type limit \\
            --order-quantity 0.01 --order-price 70000 --order-tif GTC
  perps-bot --edit-order-preview ORDER_ID --order-quantity 0.02 --order-price 69000
  perps-bot --apply-order-edit ORDER_ID:PREVIEW_ID
  perps-bot --profile prod --kill-switch on --reason "SEV-1"
                                                halt a running prod bot (reaches it within one cycle);
                                                who (user@host:pid) and why go to its events
  perps-bot --profile prod --reduce-only-mode on
  perps-bot --profile prod --clear-reason RECONCILE_MISMATCH
                                                lift a latched reason (at the running bot's next cycle)
  perps-bot --profile prod --reconcile          the running bot reconciles with the exchange at its next cycle
  perps-bot --profile prod --checkpoint         take a state checkpoint now (safe while the bot runs)
  perps-bot --profile prod --list-checkpoints [--json]
  perps-bot --profile prod --restore-checkpoint latest --verify-only
                                                check a checkpoint, write nothing
  perps-bot --profile prod --restore-checkpoint latest
                                                restore state (refused while a bot runs on it)
  perps-bot --profile prod --cancel-all --reason "SEV-1 feed"
                                                cancel the bot's open orders (--order-symbol S: one
                                                product's), through the running bot or directly
  perps-bot --profile prod --flatten --yes --reason "SEV-1 loss"
                                                reduce-only market orders closing every position
  perps-bot --profile prod --place-order --order-symbol BTC-USD --order-side sell \\
            --order-type market --order-quantity 0.01 --reason "manual exit"
                                                send one order after its --preview-order verdict
  perps-bot --profile canary --standby          hot standby: takes over when the live bot's lease expires
  perps-bot --profile canary --step-down --reason "deploy"
                                                the live bot hands over to its standby now;
                                                who (user@host:pid) and why go to its step_down event

\b
Environment: see .env.example (COINBASE_*, REDIS_URL, DATABASE_URL, S3_*, RISK_*, PERPS_*).
Exit codes: 0 ok, 1 runtime failure, 2 bad input or order refused.
"""


#: the flags that pick what ``perps-bot`` does (the Examples above show each one)
COMMAND_FLAGS = (
    "--dev-fast",
    "--standby",
    "--step-down",
    "--account-snapshot",
    "--preview-order",
    "--edit-order-preview",
    "--apply-order-edit",
    "--kill-switch",
    "--reduce-only-mode",
    "--clear-reason",
    "--reconcile",
    "--checkpoint",
    "--list-checkpoints",
    "--restore-checkpoint",
    "--cancel-all",
    "--flatten",
    "--place-order",
)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _decimal(name: str, raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InputError(f"{name}: expected a decimal number, got {raw!r}") from None
    if not value.is_finite():
        raise InputError(f"{name}: expected a finite number, got {raw!r}")
    return value


def _on_off(name: str, raw: str | None) -> bool | None:
    if raw is None:
        return None
    return raw.lower() == "on"


def build_order_request(opts: dict[str, Any]) -> OrderRequest:
    """Turn the --order-* flags into a validated-shape ``OrderRequest`` (product checks come later)."""
    missing = [
        flag
        for flag, key in (
            ("--order-symbol", "order_symbol"),
            ("--order-side", "order_side"),
            ("--order-quantity", "order_quantity"),
        )
        if opts.get(key) is None
    ]
    if missing:
        raise InputError(f"{missing[0]}: required with --preview-order")
    order_type = OrderType(opts["order_type"].upper().replace("-", "_"))
    tif_raw = opts.get("order_tif")
    tif = (
        TimeInForce(tif_raw.upper())
        if tif_raw
        else (TimeInForce.IOC if order_type is OrderType.MARKET else TimeInForce.GTC)
    )
    end_time = ensure_utc(opts["order_end_time"]) if opts.get("order_end_time") else None
    quantity = _decimal("--order-quantity", opts["order_quantity"])
    assert quantity is not None
    request = OrderRequest(
        symbol=Symbol(opts["order_symbol"].upper()),
        side=Side(opts["order_side"].upper()),
        order_type=order_type,
        quantity=quantity,
        limit_price=_decimal("--order-price", opts.get("order_price")),
        stop_price=_decimal("--order-stop", opts.get("order_stop")),
        time_in_force=tif,
        end_time=end_time,
        client_order_id=ClientOrderId(opts["order_client_id"]) if opts.get("order_client_id") else None,
        reduce_only=bool(opts.get("order_reduce_only")),
        leverage=_decimal("--order-leverage", opts.get("order_leverage")),
        margin_type=MarginType(opts["order_margin_type"].upper()) if opts.get("order_margin_type") else None,
        post_only=bool(opts.get("order_post_only")),
    )
    request.validate_shape()
    return request


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120, "terminal_width": 120},
    epilog=EPILOG,
)
@click.option(
    "--profile",
    type=click.Choice([p.value for p in Profile]),
    default=None,
    help="Settings profile (default: $PERPS_PROFILE or dev). Example: --profile canary",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".env"),
    show_default=True,
    help="Read KEY=VALUE settings from this file (the environment wins). Example: --env-file prod.env",
)
@click.option(
    "--dev-fast",
    is_flag=True,
    help="Run exactly one trading cycle and exit. Example: perps-bot --profile dev --dev-fast",
)
@click.option(
    "--standby",
    is_flag=True,
    help="Run as the hot standby of this bot id: connect, follow the state read-only and take over when the "
    "live bot's lease expires (needs an exchange both share). Example: perps-bot --profile canary --standby",
)
@click.option(
    "--step-down",
    "step_down",
    is_flag=True,
    help="Ask the running bot of this profile to hand over to its standby now (keeps its orders); --reason "
    "and the actor go to its step_down event. Example: perps-bot --profile canary --step-down --reason 'deploy'",
)
@click.option(
    "--dry-run/--live",
    "dry_run",
    default=None,
    help="--dry-run: trade through the in-process paper broker. --live: send orders. Example: --dry-run",
)
@click.option(
    "--reduce-only",
    "reduce_only",
    is_flag=True,
    default=None,
    help="Start in reduce-only mode (only orders that shrink a position). Example: --reduce-only",
)
@click.option("--symbols", default=None, help="Comma-separated products. Example: --symbols BTC-USD,ETH-USD")
@click.option(
    "--interval",
    "interval",
    type=float,
    default=None,
    help="Seconds between cycle starts. Example: --interval 5",
)
@click.option("--strategy", default=None, help="Strategy name. Example: --strategy ma_crossover")
@click.option("--bot-id", default=None, help="State namespace for this bot. Example: --bot-id desk1")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Console log level (file log is INFO or DEBUG). Example: --log-level debug",
)
@click.option(
    "--account-snapshot",
    is_flag=True,
    help="Print balances, positions, orders, permissions, fees. Example: --account-snapshot",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON (with --account-snapshot, --list-checkpoints, --checkpoint, --restore-checkpoint). "
    "Example: --list-checkpoints --json",
)
@click.option(
    "--preview-order",
    is_flag=True,
    help="Preview an order at the exchange plus the bot's risk verdict. Example: see below",
)
@click.option("--order-symbol", default=None, help="Example: --order-symbol BTC-USD")
@click.option(
    "--order-side",
    type=click.Choice(["buy", "sell"], case_sensitive=False),
    default=None,
    help="Example: --order-side buy",
)
@click.option(
    "--order-type",
    type=click.Choice(["market", "limit", "stop_limit", "stop-limit"], case_sensitive=False),
    default="market",
    show_default=True,
    help="Example: --order-type limit",
)
@click.option("--order-quantity", default=None, help="Base size. Example: --order-quantity 0.01")
@click.option("--order-price", default=None, help="Limit price. Example: --order-price 65000")
@click.option("--order-stop", default=None, help="Stop price for stop-limit. Example: --order-stop 64000")
@click.option(
    "--order-tif",
    type=click.Choice(["GTC", "GTD", "IOC", "FOK"], case_sensitive=False),
    default=None,
    help="Time in force (market: IOC; limit default GTC). Example: --order-tif FOK",
)
@click.option(
    "--order-end-time",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z"]),
    default=None,
    help="GTD expiry with offset. Example: --order-end-time 2026-12-01T00:00:00+0000",
)
@click.option("--order-client-id", default=None, help="Client order id. Example: --order-client-id my-001")
@click.option(
    "--order-reduce-only",
    is_flag=True,
    help="Derivatives: the order may only reduce a position. Example: --order-reduce-only",
)
@click.option("--order-leverage", default=None, help="Derivatives leverage. Example: --order-leverage 2")
@click.option(
    "--order-margin-type",
    type=click.Choice(["cross", "isolated"], case_sensitive=False),
    default=None,
    help="Derivatives margin type. Example: --order-margin-type cross",
)
@click.option(
    "--order-post-only",
    is_flag=True,
    help="Limit orders: maker only. Example: --order-type limit --order-post-only",
)
@click.option(
    "--edit-order-preview",
    metavar="ORDER_ID",
    default=None,
    help="Preview editing an open order to --order-quantity/--order-price; prints a PREVIEW_ID. "
    "Example: --edit-order-preview 1f2e --order-price 64000",
)
@click.option(
    "--apply-order-edit",
    metavar="ORDER_ID:PREVIEW_ID",
    default=None,
    help="Apply an edit previewed with --edit-order-preview. Example: --apply-order-edit 1f2e:9ab0",
)
@click.option(
    "--kill-switch",
    type=click.Choice(["on", "off"], case_sensitive=False),
    default=None,
    help="Flip the kill switch of the bot(s) sharing this profile's state. Example: --kill-switch on",
)
@click.option(
    "--reduce-only-mode",
    type=click.Choice(["on", "off"], case_sensitive=False),
    default=None,
    help="Flip operator reduce-only mode at runtime. Example: --reduce-only-mode on",
)
@click.option(
    "--clear-reason",
    "clear_reason",
    metavar="CODE",
    type=click.Choice([c.value for c in OPERATOR_CLEARABLE], case_sensitive=False),
    default=None,
    help="Clear a latched reason (" + ", ".join(c.value for c in OPERATOR_CLEARABLE) + ") on the running bot "
    "at its next cycle, or on the next start before its first order. Example: --clear-reason DRAWDOWN",
)
@click.option(
    "--reconcile",
    "reconcile",
    is_flag=True,
    help="Ask the running bot of this profile to reconcile with the exchange at its next cycle: list its own "
    "orders by client-id prefix, adopt what state lacks, book their fills, re-check positions. "
    "Example: perps-bot --profile prod --reconcile",
)
@click.option(
    "--checkpoint",
    "take_checkpoint",
    is_flag=True,
    help="Take a state checkpoint now (one consistent read: safe whether or not a bot runs). "
    "Example: perps-bot --profile prod --checkpoint",
)
@click.option(
    "--list-checkpoints",
    is_flag=True,
    help="List stored checkpoints, newest first: id, time, reason, keys, sizes, SHA-256. "
    "Example: --list-checkpoints --json",
)
@click.option(
    "--restore-checkpoint",
    metavar="ID|latest",
    default=None,
    help="Verify a checkpoint, then make the bot's state exactly its contents; refused while a bot runs on "
    "this state. Example: --restore-checkpoint latest",
)
@click.option(
    "--cancel-all",
    is_flag=True,
    help="Cancel every open order of the bot (client ids with its prefix; only --order-symbol's with it): "
    "through the running bot within one cycle, or directly when none runs. Example: --cancel-all --reason 'feed'",
)
@click.option(
    "--flatten",
    is_flag=True,
    help="Close every position of the bot's book with reduce-only market orders (needs --yes, or type FLATTEN "
    "at the prompt); judged by the guards: a HALTED bot sends nothing. Example: --flatten --yes --reason 'loss'",
)
@click.option(
    "--place-order",
    is_flag=True,
    help="Send the --order-* order for real after the --preview-order verdict (refused unless the trading "
    "state and guards allow it). Example: --place-order --order-symbol BTC-USD --order-side sell "
    "--order-type market --order-quantity 0.01 --order-reduce-only",
)
@click.option("--yes", is_flag=True, help="Confirm --flatten without a prompt. Example: --flatten --yes")
@click.option(
    "--reason",
    default="",
    help="Why (recorded with the actor user@host:pid in the request and its events). Example: --reason 'SEV-1'",
)
@click.option(
    "--verify-only",
    is_flag=True,
    help="With --restore-checkpoint: verify the blob and every record's checksum, write nothing. "
    "Example: --restore-checkpoint latest --verify-only",
)
def cli(**opts: Any) -> None:
    """Run the perps-bot trading loop, or one operator command, against Coinbase Advanced Trade.

    With no command flag it trades: --profile dev (the default) uses the built-in simulated exchange
    over TLS on 127.0.0.1 and embedded state, so it runs offline with no setup.
    """
    for name in ("edit_order_preview", "apply_order_edit", "restore_checkpoint"):
        # an empty value is not "no command": without this check the bot would start trading instead
        if opts.get(name) is not None and not str(opts[name]).strip():
            _fail(f"--{name.replace('_', '-')}: expected a value, got an empty one", 2)
    modes = [
        m
        for m in (
            "account_snapshot",
            "preview_order",
            "edit_order_preview",
            "apply_order_edit",
            "take_checkpoint",
            "list_checkpoints",
            "restore_checkpoint",
            "cancel_all",
            "flatten",
            "place_order",
        )
        if opts.get(m)
    ]
    if opts.get("kill_switch") is not None or opts.get("reduce_only_mode") is not None:
        modes.append("controls")
    if opts.get("clear_reason") is not None:
        modes.append("clear_reason")
    if opts.get("step_down"):
        modes.append("step_down")
    if opts.get("reconcile"):
        modes.append("reconcile")
    if len(modes) > 1:
        _fail(
            "choose one of --account-snapshot, --preview-order, --edit-order-preview, --apply-order-edit, "
            "--kill-switch/--reduce-only-mode, --clear-reason, --checkpoint, --list-checkpoints, "
            "--restore-checkpoint, --step-down, --reconcile, --cancel-all, --flatten, --place-order",
            2,
        )
    if opts.get("standby") and (modes or opts.get("dev_fast")):
        _fail("--standby: only when running the bot (not with --dev-fast or a command flag)", 2)
    if opts.get("verify_only") and not opts.get("restore_checkpoint"):
        _fail("--verify-only: only with --restore-checkpoint ID|latest", 2)
    try:
        env = merged_environment(opts["env_file"])
        profile = opts["profile"] or env.get("PERPS_PROFILE") or "dev"
        overrides = CliOverrides(
            symbols=tuple(opts["symbols"].split(",")) if opts["symbols"] is not None else None,
            dry_run=opts["dry_run"],
            reduce_only=opts["reduce_only"],
            interval_seconds=opts["interval"],
            strategy=opts["strategy"],
            bot_id=opts["bot_id"],
            log_level=opts["log_level"].upper() if opts["log_level"] else None,
        )
        settings = load_settings(profile, env, overrides)
        configure_logging(settings.log_dir, settings.log_level, settings.secrets)
        mode = modes[0] if modes else "run"
        code = asyncio.run(_dispatch(mode, settings, opts))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as raised:  # a task group's ExceptionGroup is judged by the error inside it
        exc = underlying(raised)
        if isinstance(exc, PerpsBotError):
            logger.debug("command failed", exc_info=True)
            _fail(exc.one_line(), exc.exit_code)
        # the last line of defence: one line out, the traceback to the log file
        logger.exception("unexpected error")
        _fail(f"internal error: {one_line(exc)} (details in the log)", 1)
    sys.exit(code)


def _confirm_flatten() -> None:
    """--flatten without --yes: the operator types FLATTEN (a terminal is required)."""
    if not sys.stdin.isatty():
        raise InputError("--flatten: confirm with --yes (no terminal to type FLATTEN at)")
    typed = click.prompt("Close every position with market orders? Type FLATTEN to confirm", default="")
    if typed.strip() != "FLATTEN":
        raise InputError("--flatten: not confirmed (type FLATTEN, or pass --yes)")


async def _dispatch(mode: str, settings: Any, opts: dict[str, Any]) -> int:
    from bot_v2.cli import handlers

    if mode == "run":
        return await handlers.run(settings, once=bool(opts["dev_fast"]), standby=bool(opts["standby"]))
    if mode == "step_down":
        return await handlers.step_down(settings, reason=str(opts.get("reason") or ""))
    if mode == "reconcile":
        return await handlers.reconcile(settings, reason=str(opts.get("reason") or ""))
    if mode == "account_snapshot":
        return await handlers.account_snapshot(settings, as_json=bool(opts["as_json"]))
    if mode == "preview_order":
        return await handlers.preview_order(settings, build_order_request(opts))
    if mode == "edit_order_preview":
        size = _decimal("--order-quantity", opts.get("order_quantity"))
        price = _decimal("--order-price", opts.get("order_price"))
        return await handlers.edit_order_preview(settings, OrderId(opts["edit_order_preview"]), size, price)
    if mode == "apply_order_edit":
        raw = str(opts["apply_order_edit"])
        order_id, sep, preview_id = raw.partition(":")
        if not sep or not order_id or not preview_id:
            raise InputError(f"--apply-order-edit: expected ORDER_ID:PREVIEW_ID, got {raw!r}")
        return await handlers.apply_order_edit(settings, OrderId(order_id), preview_id)
    if mode == "clear_reason":
        return await handlers.clear_reason(
            settings, ReasonCode(str(opts["clear_reason"]).upper()), why=str(opts.get("reason") or "")
        )
    if mode in ("cancel_all", "flatten", "place_order"):
        if mode == "flatten" and not opts.get("yes"):
            _confirm_flatten()
        return await handlers.emergency(
            settings,
            mode,
            symbol=opts.get("order_symbol") if mode == "cancel_all" else None,
            order=build_order_request(opts) if mode == "place_order" else None,
            reason=str(opts.get("reason") or ""),
        )
    if mode == "take_checkpoint":
        return await handlers.take_checkpoint(settings, as_json=bool(opts["as_json"]))
    if mode == "list_checkpoints":
        return await handlers.list_checkpoints(settings, as_json=bool(opts["as_json"]))
    if mode == "restore_checkpoint":
        return await handlers.restore_checkpoint(
            settings,
            str(opts["restore_checkpoint"]),
            verify_only=bool(opts["verify_only"]),
            as_json=bool(opts["as_json"]),
        )
    return await handlers.set_controls(
        settings,
        kill_switch=_on_off("--kill-switch", opts.get("kill_switch")),
        reduce_only=_on_off("--reduce-only-mode", opts.get("reduce_only_mode")),
        reason=str(opts.get("reason") or ""),
    )


def main() -> None:
    """Console-script entry point."""
    cli(standalone_mode=True)


if __name__ == "__main__":
    main()
