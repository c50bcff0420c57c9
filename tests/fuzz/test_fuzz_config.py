"""Fuzz the configuration edge: ``.env`` files, environment values, strategy parameters and CLI arguments.

Bad input ends in ONE line and exit 2 (``ConfigError`` / ``InputError``); a valid command may exit 0 or 1. The
CLI runs in-process (``cli.main(args=...)``, the console script's own entry) rather than as thousands of
subprocesses: every generated command line carries one cheap operator command (no trading loop), state and
logs go to a temporary directory, and stderr must hold no traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from bot_v2.cli import cli
from bot_v2.config import load_settings
from bot_v2.config.envfile import read_env_file
from bot_v2.config.settings import ENV_VARS
from bot_v2.errors import ConfigError, PerpsBotError
from bot_v2.strategies import available_strategies, create_strategy
from tests.fuzz.profiles import fuzz
from tests.unit.strategies.factories import long, short, view

WORK = Path(tempfile.mkdtemp(prefix="perps-fuzz-config-"))
TRACEBACK = "Traceback (most recent call last)"

junk = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24)
numbers = st.sampled_from(
    [
        "0",
        "-1",
        "1",
        "0.5",
        "1e9",
        "1e-9",
        "NaN",
        "inf",
        "-inf",
        "1e999",
        "",
        " ",
        "0x10",
        "1_000",
        "\uff12",
        "10000000000000000000000000000",
    ]
)
values = (
    numbers
    | junk
    | st.sampled_from(
        [
            "true",
            "false",
            "on",
            "off",
            "yes",
            "none",
            "BTC-USD",
            "a=1,b=2",
            "redis://:pw@127.0.0.1:1/0",
            "postgresql://u:pw@127.0.0.1:1/db",
        ]
    )
)


def _one_line_config_error(exc: PerpsBotError) -> None:
    text = exc.one_line()
    assert "\n" not in text and text, text
    assert exc.exit_code == 2, (type(exc), text)


# --- .env files -------------------------------------------------------------------------------------------


env_lines = st.one_of(
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(ENV_VARS[:20]) | st.from_regex(r"[A-Za-z_]\w{0,8}", fullmatch=True),
        values,
    ),
    st.builds(
        lambda k, v, q: f"{k}={q}{v}{q}",
        st.sampled_from(ENV_VARS[:20]),
        values,
        st.sampled_from(["'", '"', ""]),
    ),
    st.builds(lambda k, v: f"export {k} = {v} # note", st.sampled_from(ENV_VARS[:20]), values),
    junk,
    st.sampled_from(["#", "", "=", "=x", 'A="x', "A='x' y", 'A="a\\"b"', 'A="\\', "\ufeffA=1", "A\x00=1"]),
)


@fuzz(300)
@given(st.lists(env_lines, max_size=8), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
@example(['A="\\'], "\n", False)
def test_env_file(lines: list[str], newline: str, raw_bytes: bool) -> None:
    path = WORK / "fuzz.env"
    text = newline.join(lines)
    if raw_bytes:
        path.write_bytes(text.encode("utf-8", "surrogatepass")[:-1] + b"\xff")
    else:
        path.write_text(text, encoding="utf-8", newline="")
    try:
        parsed = read_env_file(path)
    except ConfigError as exc:
        _one_line_config_error(exc)
        assert str(path) in exc.one_line()
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items())


# --- environment values through load_settings ----------------------------------------------------------------


names = st.sampled_from([n for n in ENV_VARS if n not in ("PERPS_DATA_DIR", "PERPS_LOG_DIR")])
unknown = st.builds(
    lambda p, s: p + s,
    st.sampled_from(["PERPS_", "RISK_", "STATE_", "S3_", "COINBASE_"]),
    st.from_regex(r"[A-Z]{1,10}", fullmatch=True),
)


@fuzz(300)
@given(
    st.dictionaries(
        names | unknown | st.sampled_from(["RISK_MAX_LEVERAGE", "RISK_DAILY_LOSS_LIMIT_USD"]),
        values,
        max_size=5,
    ),
    st.sampled_from(["dev", "canary", "spot", "prod", "DEV", "", "x"]),
)
def test_environment_values(env: dict[str, str], profile: str) -> None:
    env = {**env, "PERPS_DATA_DIR": str(WORK / "data"), "PERPS_LOG_DIR": str(WORK / "logs")}
    try:
        load_settings(profile, env, root=WORK)
    except PerpsBotError as exc:
        _one_line_config_error(exc)


# --- strategy parameters ---------------------------------------------------------------------------------


param_names = st.sampled_from(
    [
        "fast_window",
        "slow_window",
        "lookback",
        "entry_threshold_pct",
        "exit_threshold_pct",
        "position_fraction",
        "target_volatility_pct",
        "max_volatility_scale",
        "allow_short",
        "size",
        "x",
    ]
)
param_values = values | st.integers(-(10**6), 10**6) | st.booleans() | st.none() | st.decimals(allow_nan=True)


@fuzz(300)
@given(
    st.sampled_from([*available_strategies(), "HOLD ", "nope"]),
    st.dictionaries(param_names, param_values, max_size=4),
    st.lists(
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**6), places=2), min_size=1, max_size=40
    ),
    st.sampled_from([None, "long", "short"]),
)
def test_strategy_parameters(
    name: str, params: dict[str, object], mids: list[Decimal], side: str | None
) -> None:
    """Bad params are a ConfigError naming the key; params accepted never make ``decide`` raise."""
    try:
        strategy = create_strategy(name, params)
    except ConfigError as exc:
        _one_line_config_error(exc)
        return
    position = None if side is None else long() if side == "long" else short()
    strategy.decide(view(mids), position)


# --- CLI arguments, in-process -----------------------------------------------------------------------------

OPTIONS = [
    "--profile",
    "--symbols",
    "--interval",
    "--strategy",
    "--bot-id",
    "--log-level",
    "--order-symbol",
    "--order-side",
    "--order-type",
    "--order-quantity",
    "--order-price",
    "--order-stop-price",
    "--order-tif",
    "--order-leverage",
    "--order-margin-type",
    "--order-expires-at",
    "--reason",
    "--env-file",
    "--clear-reason",
    "--kill-switch",
    "--reduce-only-mode",
]
FLAGS = [
    "--dry-run",
    "--reduce-only",
    "--json",
    "--verify-only",
    "--order-reduce-only",
    "--yes",
    "--standby",
    "--dev-fast",
    "--no-such-flag",
    "-x",
    "--",
]
#: each command line holds one of these: none starts the trading loop or the exchange
MODES = [
    ["--list-checkpoints"],
    ["--restore-checkpoint"],
    ["--clear-reason"],
    ["--kill-switch"],
    ["--reduce-only-mode"],
    ["--apply-order-edit"],
    ["--edit-order-preview"],
    ["--step-down"],
]


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    out: list[str] = []
    for mode in draw(st.lists(st.sampled_from(MODES), min_size=1, max_size=2)):
        out += mode
        if mode[0] in (
            "--restore-checkpoint",
            "--clear-reason",
            "--kill-switch",
            "--reduce-only-mode",
            "--apply-order-edit",
            "--edit-order-preview",
        ):
            # no ':' in an order edit and no order id that exists: the exchange is never reached
            out.append(draw(values.filter(lambda v: ":" not in v)))
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            out += [draw(st.sampled_from(OPTIONS)), draw(values)]
        else:
            out.append(draw(st.sampled_from(FLAGS) | junk))
    # shuffled, an option may swallow the command flag as its value: --dev-fast first (never a value) bounds
    # such a command line to one trading cycle instead of a loop
    return ["--dev-fast", *(draw(st.permutations(out)) if draw(st.booleans()) else out)]


@contextlib.contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update({"PERPS_DATA_DIR": str(WORK / "data"), "PERPS_LOG_DIR": str(WORK / "logs"), **extra})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """``perps-bot ARGS`` in-process: (exit code, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    with _environment(env or {}), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            cli.main(args=args, prog_name="perps-bot", standalone_mode=True)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, err.getvalue()


@fuzz(120)
@given(
    argv(),
    st.dictionaries(
        st.sampled_from(
            ["PERPS_INTERVAL_SECONDS", "RISK_MAX_LEVERAGE", "PERPS_SYMBOLS", "PERPS_BOT_ID", "PERPS_TYPO"]
        ),
        values.filter(lambda v: "\x00" not in v),  # no process environment can hold a NUL byte
        max_size=2,
    ),
)
@example(["--list-checkpoints", "--interval", "nan"], {})
@example(["--kill-switch", "maybe"], {})
@example(["--restore-checkpoint", ""], {})  # found: an empty command value started the trading loop
def test_cli_arguments(args: list[str], env: dict[str, str]) -> None:
    code, err = run_cli(args, env)
    assert code in (0, 1, 2), (code, err)
    assert TRACEBACK not in err, err
    if code:
        assert err.strip(), "a failure says why"


def test_regression_empty_command_value_is_an_error() -> None:
    """Found by the fuzzer: ``--restore-checkpoint ''`` (or an empty --apply-order-edit / --edit-order-preview
    ) was taken as no command at all, and the bot started trading."""
    for flag in ("--restore-checkpoint", "--apply-order-edit", "--edit-order-preview"):
        code, err = run_cli([flag, " "])
        assert code == 2 and err.strip() == f"error: {flag}: expected a value, got an empty one", err
