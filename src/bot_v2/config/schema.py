"""Every environment variable the bot reads, declared once: name, type, default, bounds, help, secret or not.

This table drives:

- strict configuration: ``ENV_VARS`` (and so ``strict.known_variables``) is the list of names here plus the
  risk limits' own specs (``bot_v2.risk.config``, declared the same way next to ``RiskConfig``);
- validation: ``read(env, name)`` parses a variable by its declared type and bounds (or returns its default)
  and names the variable in the ``ConfigError`` -- ``load_settings`` reads the scalar settings through it;
- ``.env.example`` and the table in docs/CONFIGURATION.md: both are generated from it
  (``scripts/gen_config_docs.py``) and ``tests/unit/config/test_schema.py`` fails when either
  disagrees with it, so adding a variable is one entry here and a regenerate.

A typed settings library was weighed for the parsing: msgspec (already a dependency) converts strings in lax
mode, but it accepts ``nan``/``inf`` and ``"3.0"`` as an integer, does not strip blanks and reads only
true/false/1/0 as booleans, so wrapping it to keep this bot's rules would add code rather than remove it;
pydantic-settings would add a dependency with the same gaps. The table plus ``read`` is the smaller code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot_v2.errors import ConfigError

__all__ = [
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "Setting",
    "docs_table",
    "env_example",
    "read",
    "secret_variables",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable.

    ``kind``: str | int | float | bool | choice | url | file | list | pairs. ``default``: the value used when the
    variable is unset or empty (None: unset; ``profile`` / ``derived`` defaults are given by ``load_settings``
    and described in ``default_doc``). ``minimum`` / ``maximum``: inclusive bounds of a number. ``example``: the
    value shown in ``.env.example`` (default: the default). ``also``: more commented example lines, each with
    its own comment.
    """

    name: str
    kind: str
    section: str
    help: str
    default: Any = None
    default_doc: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    example: str | None = None
    also: tuple[tuple[str, str], ...] = ()

    @property
    def documented_default(self) -> str:
        if self.default_doc is not None:
            return self.default_doc
        return "" if self.default is None else _text(self.default)

    @property
    def bounds(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f">= {_text(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"<= {_text(self.maximum)}")
        if self.choices:
            parts.append(" | ".join(self.choices))
        return ", ".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


BOT, COINBASE, SIM, STATE = (
    "bot",
    "Coinbase Advanced Trade",
    "simulated exchange (dev profile)",
    "state tiers",
)

# A table: one entry per variable, kept compact so it reads down the names.
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # --- BOT ------------------------------------------------------------------------------------------------
    Setting("PERPS_PROFILE", "choice", BOT,
        "Profile when --profile is not given.",
        default="dev", choices=("dev", "canary", "spot", "prod"),
    ),
    Setting("PERPS_BOT_ID", "str", BOT,
        "State namespace; several bots can share Redis/PostgreSQL/S3 under different ids (a-z 0-9 _ -, at "
        "most 32; at most 26 to dry-run, since a dry run is <id>-paper; a live id may not end in -paper).",
        default_doc="perps-<profile>", example="perps-dev",
    ),
    Setting("PERPS_SYMBOLS", "list", BOT,
        "Comma-separated product ids (overrides the profile).",
        default_doc="profile", example="BTC-USD,ETH-USD",
    ),
    Setting("PERPS_DRY_RUN", "bool", BOT,
        "1 = trade through the in-process paper broker; no order leaves the process. A dry run is its own "
        "bot: id <PERPS_BOT_ID>-paper, a client-id prefix with a p before its last character (pb- -> pbp-), "
        "and its own <PERPS_DATA_DIR>/paper and <PERPS_LOG_DIR>/paper; it never touches the live bot's "
        "state.",
        default_doc="profile (0)", example="0",
    ),
    Setting("PERPS_INTERVAL_SECONDS", "float", BOT,
        "Seconds between cycle starts.",
        default_doc="profile", minimum=0.05, example="5",
    ),
    Setting("PERPS_STRATEGY", "str", BOT,
        "Strategy name (ma_crossover, momentum, hold).",
        default_doc="profile", example="ma_crossover",
    ),
    Setting("PERPS_STRATEGY_PARAMS", "pairs", BOT,
        "Strategy parameters as key=value pairs (override the profile's), e.g. ma_crossover's windows and "
        "the fraction of equity per entry: fast_window, slow_window, position_fraction, "
        "target_volatility_pct, allow_short.",
        default_doc="profile", example="fast_window=5,slow_window=20,position_fraction=0.02",
    ),
    Setting("PERPS_DATA_DIR", "str", BOT,
        "Where events.jsonl, health.json and embedded state live.",
        default_doc="var/data/perps_bot/<profile>", example="",
    ),
    Setting("PERPS_LOG_DIR", "str", BOT,
        "Log directory (the file is perps_bot.log, rotated).",
        default_doc="var/logs", example="",
    ),
    Setting("PERPS_LOG_LEVEL", "choice", BOT,
        "Console log level.",
        default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Setting("PERPS_CLIENT_ID_PREFIX", "str", BOT,
        "Prefix of every client order id this bot sends (used to adopt its own orders after a crash; 1-8 "
        "chars of a-z, 0-9, -).",
        default="pb-",
    ),
    Setting("PERPS_SHUTDOWN_ORDER_POLICY", "choice", BOT,
        "On shutdown: cancel or keep open orders.",
        default="cancel", choices=("cancel", "keep"),
    ),
    Setting("PERPS_RECONCILE_MISMATCH_ACTION", "choice", BOT,
        "When start-up reconciliation finds the bot's positions and the exchange's disagree, trade in "
        "REDUCE_ONLY or HALT until an operator clears RECONCILE_MISMATCH (perps-bot --clear-reason "
        "RECONCILE_MISMATCH).",
        default="REDUCE_ONLY", choices=("REDUCE_ONLY", "HALT"),
    ),
    Setting("PERPS_INTENT_GRACE_SECONDS", "float", BOT,
        "Seconds an order intent the exchange does not show (its create call timed out) is looked up again, "
        "every cycle, before it is FAILED; meanwhile its status is UNKNOWN and the bot sends no new order "
        "on that symbol.",
        default=30.0, minimum=0,
    ),
    Setting("PERPS_RECONCILE_EVERY_CYCLES", "int", BOT,
        "Every this many cycles (and at start, and on `perps-bot --reconcile`) the bot lists its own orders "
        "by client-id prefix, adopts any state does not know, books their fills and checks spot balances.",
        default=20, minimum=1,
    ),
    Setting("PERPS_HISTORY_RETENTION_DAYS", "float", BOT,
        "Terminal orders, final intents and booked fills older than this many days (and older than the "
        "reconciliation watermark) move to the COLD archive (archive:* keys) about once an hour, so "
        "start-up reads only live records. 0 archives them as soon as they are out of the watermark window. "
        "Read them back: docs/RUNBOOK.md.",
        default=7.0, minimum=0, maximum=3650,  # ten years: a sanity bound that keeps the cutoff a valid date
    ),
    Setting("PERPS_LEASE_TTL_SECONDS", "float", BOT,
        "One live writer per bot id: the lease (in the WARM store) expires this long after its last "
        "renewal, so a standby or a restart takes over a crashed bot within it. Renewed every TTL/3 while "
        "the loop completes cycles.",
        default=0.6, minimum=0.15,
    ),
    Setting("PERPS_LEASE_WATCHDOG_SECONDS", "float", BOT,
        "A loop that completed no cycle for this long stops renewing (a stuck bot loses the lease); at "
        "least the TTL.",
        default_doc="3 x the interval, at least 15", example="15",
    ),
    Setting("PERPS_LEASE_SUBMIT_BUDGET_SECONDS", "float", BOT,
        "An order/cancel/edit is sent only while the lease has more than this left (below 2/3 of the TTL).",
        default_doc="TTL/3", minimum=0, example="0.2",
    ),
    Setting("PERPS_WARM_OUTAGE_MODE", "choice", BOT,
        "PostgreSQL (WARM) down: durable writes go to a local fsync'd journal "
        "(<data_dir>/state/journal/<bot_id>/) and the loop keeps running; reduce_only = only orders that "
        "shrink a position, full = whatever the risk guards allow (docs/RUNBOOK.md \"PostgreSQL failure\").",
        default="reduce_only", choices=("reduce_only", "full"),
    ),
    Setting("PERPS_WARM_OUTAGE_MAX_SECONDS", "float", BOT,
        "While PostgreSQL is down, orders stop this many seconds after the last lease renewal (nobody can "
        "take the lease meanwhile).",
        default=300.0, minimum=0,
    ),
    Setting("METRICS_PORT", "int", BOT,
        "A running bot serves Prometheus metrics on METRICS_HOST:METRICS_PORT/metrics, on by default at its "
        "profile's port: prod 9102, canary 9103, spot 9104, dev 9105, a dry run the profile's + 10. 0 = "
        "none. A port set here that is busy stops the bot (exit 2); a busy default port only logs a "
        "warning.",
        default_doc="profile (prod 9102)", minimum=0, maximum=65535, example="9102",
    ),
    Setting("METRICS_HOST", "str", BOT,
        "Address the metrics are served on: 0.0.0.0 (or this host's address) when Prometheus scrapes from "
        "another host.",
        default="127.0.0.1",
    ),
    # --- COINBASE -------------------------------------------------------------------------------------------
    Setting("COINBASE_API_KEY", "str", COINBASE,
        "CDP API key name. Required by canary/spot/prod (with COINBASE_API_SECRET, or COINBASE_KEY_FILE).",
        secret=True, example="organizations/<org-id>/apiKeys/<key-id>",
    ),
    Setting("COINBASE_API_SECRET", "str", COINBASE,
        "CDP EC private key (PEM; literal \\n allowed).",
        secret=True, example="\"-----BEGIN EC PRIVATE KEY-----\\n...\\n-----END EC PRIVATE KEY-----\\n\"",
    ),
    Setting("COINBASE_KEY_FILE", "file", COINBASE,
        "Or a CDP JSON key file instead of the key and secret (the path is not masked; keep the file 0600).",
        example="",
    ),
    Setting("COINBASE_BASE_URL", "str", COINBASE,
        "Bare host[:port]. With the dev profile, setting it (plus CA and key file) uses an external "
        "simulator.",
        default="api.coinbase.com",
    ),
    Setting("COINBASE_CA_FILE", "file", COINBASE,
        "CA bundle to trust for COINBASE_BASE_URL (the simulator prints its ca= path).",
        example="",
    ),
    Setting("COINBASE_TIMEOUT_SECONDS", "float", COINBASE,
        "HTTP timeout for every exchange call, seconds.",
        default=10.0, minimum=0.1,
    ),
    Setting("COINBASE_ENABLE_DERIVATIVES", "bool", COINBASE,
        "1 = enable perpetual-style CFM futures (positions, leverage, reduce-only).",
        default_doc="profile (0)", example="0",
    ),
    Setting("COINBASE_WS_ENABLED", "bool", COINBASE,
        "WebSocket feed: quotes (level2 + heartbeats) from memory and fills from the user channel; REST is "
        "the fallback while it is down. 0 = REST polling only.",
        default=True,
    ),
    Setting("COINBASE_WS_URL", "url", COINBASE,
        "Feed URL (wss://). The in-process simulator's own feed for the dev profile; an external simulator "
        "prints it as ws_url= (verified with COINBASE_CA_FILE). Unset with an external simulator: no feed.",
        default_doc="wss://advanced-trade-ws.coinbase.com (coinbase broker)", example="",
    ),
    Setting("COINBASE_WS_STALE_SECONDS", "float", COINBASE,
        "A feed silent (or without a snapshot) this long is dropped and resubscribed, seconds (heartbeats "
        "come every second).",
        default=5.0, minimum=1.5,
    ),
    Setting("COINBASE_WS_REST_SYNC_SECONDS", "float", COINBASE,
        "With the user channel healthy, open orders are still polled over REST this often (and after each "
        "reconnect).",
        default=30.0, minimum=0,
    ),
    # --- SIM ------------------------------------------------------------------------------------------------
    Setting("SIM_SEED", "int", SIM,
        "Price-walk seed of the in-process simulator.",
        default=42,
    ),
    Setting("SIM_TICK_SECONDS", "float", SIM,
        "Price-walk tick of the in-process simulator, seconds.",
        default=0.25, minimum=0.01,
    ),
    # --- STATE ----------------------------------------------------------------------------------------------
    Setting("REDIS_URL", "url", STATE,
        "HOT tier: Redis (dev default: in-process memory).",
        example="redis://127.0.0.1:6379/0",
    ),
    Setting("REDIS_SENTINELS", "str", STATE,
        "Or Redis Sentinel instead of REDIS_URL (docs/RUNBOOK.md \"High availability\"): the sentinels "
        "(host:port,...); the bot follows a promotion and restores the hot set from WARM. With "
        "REDIS_SENTINEL_MASTER.",
        example="10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379",
    ),
    Setting("REDIS_SENTINEL_MASTER", "str", STATE,
        "The Sentinel master's name (with REDIS_SENTINELS).",
        example="perps",
    ),
    Setting("REDIS_PASSWORD", "str", STATE,
        "Password of the Redis data nodes.",
        secret=True, example="",
    ),
    Setting("REDIS_SENTINEL_PASSWORD", "str", STATE,
        "Password of the sentinels.",
        secret=True, example="",
    ),
    Setting("REDIS_DB", "int", STATE,
        "Redis database number.",
        default=0, minimum=0,
    ),
    Setting("DATABASE_URL", "url", STATE,
        "WARM tier: PostgreSQL (dev default: SQLite under PERPS_DATA_DIR). Its password is masked in logs.",
        example="postgresql://perps:change-me@127.0.0.1:5432/perps",
        also=(
            (
                "Primary + replica: name every host and ask for the writable one; WARM follows a promoted "
                "replica.",
                "postgresql://perps:change-me@10.0.0.1:5432,10.0.0.2:5432/perps?target_session_attrs=read-write",
            ),
        ),
    ),
    Setting("S3_ENDPOINT_URL", "url", STATE,
        "COLD tier: S3-compatible endpoint (dev default: a directory under PERPS_DATA_DIR).",
        example="http://127.0.0.1:9000",
    ),
    Setting("S3_BUCKET", "str", STATE,
        "COLD tier: the bucket (required when COLD is S3).",
        example="perps-bot",
    ),
    Setting("AWS_ACCESS_KEY_ID", "str", STATE,
        "S3 access key.",
        secret=True, example="",
    ),
    Setting("AWS_SECRET_ACCESS_KEY", "str", STATE,
        "S3 secret key.",
        secret=True, example="",
    ),
    Setting("AWS_DEFAULT_REGION", "str", STATE,
        "S3 region.",
        default="us-east-1",
    ),
    Setting("STATE_MAX_VALUE_BYTES", "int", STATE,
        "Largest encoded value accepted, bytes.",
        default=1048576, minimum=1024,
    ),
    Setting("STATE_HOT_COMMAND_TIMEOUT_SECONDS", "float", STATE,
        "Hung servers (docs/STATE.md \"Hung servers\"): a Redis command of the loop without an answer by "
        "then is an outage (HOT degraded).",
        default=0.1, minimum=0.01,
    ),
    Setting("STATE_WARM_COMMAND_TIMEOUT_SECONDS", "float", STATE,
        "A PostgreSQL operation of the loop without an answer by then is an outage (a retryable cycle).",
        default=0.15, minimum=0.01,
    ),
    Setting("STATE_WARM_BULK_TIMEOUT_SECONDS", "float", STATE,
        "The same bound for checkpoints and migrations.",
        default=60.0, minimum=1,
    ),
    Setting("CHECKPOINT_INTERVAL_SECONDS", "float", STATE,
        "Checkpoint cadence, seconds.",
        default=300.0, minimum=1,
    ),
    Setting("CHECKPOINT_RETENTION", "int", STATE,
        "How many checkpoints to keep.",
        default=10, minimum=1,
    ),
    Setting("CHECKPOINT_RETENTION_COUNT", "int", STATE,
        "The same as CHECKPOINT_RETENTION, under the name the previous bot's runbook uses (both set: they "
        "must agree).",
        minimum=1, example="10",
    ),
    Setting("CHECKPOINT_ENABLE_COMPRESSION", "bool", STATE,
        "Checkpoints are always zlib-compressed: 1 is accepted, 0 is refused.",
        default=True,
    ),
    Setting("STATE_BATCH_SIZE", "int", STATE,
        "Keys per page of the HOT restore after a Redis outage and of the coherence passes.",
        default_doc="2000 / 500", minimum=1, maximum=100000, example="1000",
    ),
)
# fmt: on

SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


def secret_variables() -> frozenset[str]:
    """The variables whose values are secrets (masked in logs, left out of the config hash)."""
    return frozenset(s.name for s in SETTINGS if s.secret)


# --- reading -------------------------------------------------------------------------------------------------


def read(env: Mapping[str, str], name: str, default: Any = None) -> Any:
    """The typed value of ``name`` from ``env``: parsed by its declared kind and checked against its bounds
    (``ConfigError`` naming the variable), or ``default`` -- else the declared default -- when unset or empty.
    A default given here is parsed like a value (profiles hold strings and numbers alike)."""
    spec = SETTINGS_BY_NAME[name]
    raw = env.get(name)
    if raw is None or raw == "":
        raw = default if default is not None else spec.default
        if raw is None:
            return None
    return parse(spec, raw)


def parse(spec: Setting, raw: Any) -> Any:
    """Parse one raw value (a string from the environment, or a profile's value) by ``spec``."""
    name = spec.name
    if spec.kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(f"{name}: expected a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")
    if spec.kind in ("int", "float"):
        value: float
        try:
            value = int(str(raw).strip()) if spec.kind == "int" else float(str(raw).strip())
        except ValueError:
            expected = "an integer" if spec.kind == "int" else "a number"
            raise ConfigError(f"{name}: expected {expected}, got {raw!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name}: expected a finite number, got {raw!r}")
        if spec.minimum is not None and value < spec.minimum:
            raise ConfigError(f"{name}: must be >= {spec.minimum}, got {raw!r}")
        if spec.maximum is not None and value > spec.maximum:
            raise ConfigError(f"{name}: must be <= {_text(spec.maximum)}, got {raw!r}")
        return value
    text = str(raw).strip()
    if spec.choices:
        by_fold = {c.lower(): c for c in spec.choices}
        if text.lower() not in by_fold:
            raise ConfigError(f"{name}: expected {' or '.join(spec.choices)}, got {raw!r}")
        return by_fold[text.lower()]
    return text


# --- generated files -----------------------------------------------------------------------------------------

_HEADER = """\
# perps-bot environment. Copy to .env and uncomment what you need; the process environment wins over .env,
# CLI flags that are given win over both. No real secrets here, ever.
#
# GENERATED from src/bot_v2/config/schema.py (and the risk limits in src/bot_v2/risk/config.py):
# edit there, then run `scripts/gen_config_docs.py`. Every variable: docs/CONFIGURATION.md.
"""
_STRICT = """\
# Any other variable starting with PERPS_, RISK_, CHECKPOINT_, STATE_, COINBASE_ or S3_ is refused at start
# (exit 2, naming the closest known one): a typo never goes unnoticed.
"""


def _comment(text: str, width: int = 110) -> list[str]:
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width and line != "#":
            lines.append(line)
            line = "#"
        line += " " + word
    lines.append(line)
    return lines


def _risk_rows() -> list[tuple[str, str, str, str, str]]:
    """(name, kind, default, bounds, help) of every RISK_* variable, from the risk limits' specs."""
    from bot_v2.risk.config import risk_env_specs

    return [(env, kind, "profile", bounds, doc) for env, kind, bounds, doc in risk_env_specs()]


def env_example() -> str:
    """The text of ``.env.example``."""
    out = [_HEADER]  # ends with a newline: a blank line before the first section
    section = None
    for spec in SETTINGS:
        if spec.section != section:
            if section is not None:
                out.append("")
            section = spec.section
            out.append(f"# --- {section} " + "-" * max(3, 104 - len(section)))
        help_text = spec.help + (f" ({spec.bounds})" if spec.bounds else "")
        out += _comment(help_text)
        example = spec.example if spec.example is not None else spec.documented_default
        out.append(f"# {spec.name}={example}")
        for comment, value in spec.also:
            out += _comment(comment)
            out.append(f"# {spec.name}={value}")
    out.append("\n" + _STRICT)
    out.append("# --- risk (docs/RISK.md; defaults: the profile) " + "-" * 58)
    for name, _kind, _default, bounds, doc in _risk_rows():
        out += _comment(doc + (f" ({bounds})" if bounds else ""))
        out.append(f"# {name}=")
    return "\n".join(out) + "\n"


def docs_table() -> str:
    """The markdown table of every variable (docs/CONFIGURATION.md, between the generated-table markers)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| variable | type | default | bounds | secret | meaning |", "|---|---|---|---|---|---|"]
    for spec in SETTINGS:
        default = f"`{cell(spec.documented_default)}`" if spec.documented_default else "unset"
        rows.append(
            f"| `{spec.name}` | {spec.kind} | {default} | {cell(spec.bounds)} | {'yes' if spec.secret else ''} "
            f"| {cell(spec.help)} |"
        )
    for name, kind, default, bounds, doc in _risk_rows():
        rows.append(f"| `{name}` | {kind} | {default} | {cell(bounds)} |  | {cell(doc)} |")
    return "\n".join(rows) + "\n"


BEGIN_TABLE = "<!-- BEGIN GENERATED: scripts/gen_config_docs.py -->"
END_TABLE = "<!-- END GENERATED -->"


def with_docs_table(document: str) -> str:
    """``document`` with the text between the generated-table markers replaced by ``docs_table()``."""
    head, begin, rest = document.partition(BEGIN_TABLE)
    _, end, tail = rest.partition(END_TABLE)
    if not begin or not end:
        raise ValueError(f"the markers {BEGIN_TABLE!r} ... {END_TABLE!r} are missing")
    return f"{head}{BEGIN_TABLE}\n{docs_table()}{END_TABLE}{tail}"


def write_generated(root: Path) -> None:
    """Write ``.env.example`` and the table in docs/CONFIGURATION.md under the repository ``root`` from the
    schema (``scripts/gen_config_docs.py``)."""
    (root / ".env.example").write_text(env_example())
    docs = root / "docs" / "CONFIGURATION.md"
    docs.write_text(with_docs_table(docs.read_text()))
