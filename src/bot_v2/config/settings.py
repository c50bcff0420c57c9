"""The bot's settings: parsed and validated once, at the edge, into frozen objects.

``load_settings(profile, env, overrides)`` merges, lowest first: the profile, the ``.env`` file, the process
environment, and the CLI flags that were actually given (a flag left out never resets a profile value).
Every invalid value raises ``ConfigError`` naming the field or variable.

A dry run (``--dry-run``, ``PERPS_DRY_RUN=1`` or a profile's ``dry_run``) is another bot: it runs as
``<bot_id>-paper`` with its own client-id prefix, its own data dir ``<data_dir>/paper`` (events.jsonl,
health.json, embedded state) and log dir ``<log_dir>/paper``, so it never reads or writes the live bot's state.
Only the exchange is shared.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bot_v2.brokerages.coinbase import CoinbaseConnection
from bot_v2.config.profiles import PROFILES, BrokerKind, Profile
from bot_v2.config.schema import SETTINGS, read, secret_variables
from bot_v2.config.strict import check_unknown_variables
from bot_v2.domain import Symbol
from bot_v2.errors import ConfigError, MissingCredentialsError
from bot_v2.risk import RiskConfig, TradingState
from bot_v2.state.settings import ColdBackend, HotBackend, StateSettings, WarmBackend, WarmOutageMode

_SYMBOL = re.compile(r"^[A-Z0-9]{2,12}-[A-Z0-9]{2,12}(-[A-Z0-9]{2,12})?$")
_BOT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_BOT_ID_MAX_CHARS = 32
_CLIENT_ID_PREFIX = re.compile(r"[a-z0-9-]{1,8}")
_CLIENT_ID_PREFIX_MAX_CHARS = 8
#: A dry-run (paper) bot runs as ``<bot_id>-paper``; live bot ids may not end with it.
PAPER_BOT_ID_SUFFIX = "-paper"
#: A paper bot keeps events.jsonl, health.json and embedded state in ``<data_dir>/paper``, its log in
#: ``<log_dir>/paper``.
PAPER_DATA_SUBDIR = "paper"
#: The Advanced Trade WebSocket feed (market data and the user channel), for the coinbase broker.
DEFAULT_WS_URL = "wss://advanced-trade-ws.coinbase.com"
#: A dry-run bot serves metrics on its profile's port + this (the live bot keeps the profile's port).
PAPER_METRICS_PORT_OFFSET = 10

#: Every environment variable the bot itself reads, from the schema (RISK_* come from ``bot_v2.risk``).
ENV_VARS: tuple[str, ...] = tuple(setting.name for setting in SETTINGS)


class ShutdownOrderPolicy(enum.StrEnum):
    CANCEL = "cancel"
    KEEP = "keep"


class ReconcileMismatchAction(enum.StrEnum):
    """What a start-up position mismatch does: ``RECONCILE_MISMATCH`` at REDUCE_ONLY, or HALTED."""

    REDUCE_ONLY = "REDUCE_ONLY"
    HALT = "HALT"

    @property
    def trading_state(self) -> TradingState:
        """The trading state the ``RECONCILE_MISMATCH`` reason imposes."""
        return TradingState.HALTED if self is ReconcileMismatchAction.HALT else TradingState.REDUCE_ONLY


@dataclass(frozen=True, slots=True)
class CliOverrides:
    """Flags as given on the command line; ``None`` means 'not given, keep the profile/env value'."""

    symbols: tuple[str, ...] | None = None
    dry_run: bool | None = None
    reduce_only: bool | None = None
    interval_seconds: float | None = None
    strategy: str | None = None
    bot_id: str | None = None
    log_level: str | None = None


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """The in-process simulated exchange used when the broker is 'simulated' and no external one is set."""

    state_dir: Path
    seed: int = 42
    tick_seconds: float = 0.25
    external: bool = False
    websocket: bool = True  # the bot follows the in-process simulator's feed (COINBASE_WS_ENABLED)


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """One live writer per bot id (``orchestration/lease.py``): ``PERPS_LEASE_TTL_SECONDS`` bounds takeover
    time; the lease is renewed every TTL/3 while a cycle completed within ``PERPS_LEASE_WATCHDOG_SECONDS``;
    an order goes out only with more than ``PERPS_LEASE_SUBMIT_BUDGET_SECONDS`` left on it."""

    ttl_seconds: float = 0.6
    watchdog_seconds: float = 15.0
    submit_budget_seconds: float = 0.2

    @property
    def renew_every_seconds(self) -> float:
        return self.ttl_seconds / 3


@dataclass(frozen=True, slots=True)
class BotSettings:
    """Everything the bot needs to run, validated. Secrets are masked in ``repr``."""

    profile: Profile
    bot_id: str
    broker: BrokerKind
    symbols: tuple[Symbol, ...]
    dry_run: bool
    interval_seconds: float
    enable_derivatives: bool
    strategy: str
    strategy_params: Mapping[str, str]
    risk: RiskConfig
    state: StateSettings
    coinbase: CoinbaseConnection
    simulator: SimulatorSettings
    data_dir: Path
    log_dir: Path
    log_level: str = "INFO"
    client_id_prefix: str = "pb-"
    shutdown_order_policy: ShutdownOrderPolicy = ShutdownOrderPolicy.CANCEL
    reconcile_mismatch_action: ReconcileMismatchAction = ReconcileMismatchAction.REDUCE_ONLY
    #: How long an intent the exchange does not show is looked up again before it is FAILED.
    intent_grace_seconds: float = 30.0
    #: Order discovery by client-id prefix runs every this many cycles (and at start, and on request).
    reconcile_every_cycles: int = 20
    #: Terminal orders, final intents and booked fills older than this move to the COLD archive.
    history_retention_days: float = 7.0
    #: With the user channel healthy, open orders are polled over REST only this often (and after a reconnect).
    ws_rest_sync_seconds: float = 30.0
    #: Prometheus /metrics of a running bot on ``metrics_host:metrics_port``; None: not served (METRICS_PORT=0)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: True when METRICS_PORT set the port (busy: exit 2); False for the profile's default (busy: a warning,
    #: the bot trades without metrics -- two bots of one profile on a host must not stop each other)
    metrics_port_explicit: bool = False
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    #: The live bot id a dry-run (paper) bot shadows; None for a live bot.
    shadows_bot_id: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def is_paper(self) -> bool:
        """True for a dry-run bot: its own bot id, client-id prefix, data dir and state namespace."""
        return self.shadows_bot_id is not None

    @property
    def events_path(self) -> Path:
        return self.data_dir / "events.jsonl"

    @property
    def health_path(self) -> Path:
        return self.data_dir / "health.json"


# --- small parsers: each names the field it parses ---------------------------------------------------------


def _metrics_endpoint(env: Mapping[str, str], base: Mapping[str, Any], dry_run: bool) -> dict[str, Any]:
    """Metrics are on by default: the profile's port on 127.0.0.1 (a dry run: + PAPER_METRICS_PORT_OFFSET);
    ``METRICS_PORT`` sets the port (0: none), ``METRICS_HOST`` the address (0.0.0.0 for a remote Prometheus)."""
    host = read(env, "METRICS_HOST")
    if not re.fullmatch(r"[A-Za-z0-9.:_-]{1,253}", host):
        raise ConfigError(
            f"METRICS_HOST: expected an address or host name (127.0.0.1, 0.0.0.0), got {host!r}"
        )
    port = read(env, "METRICS_PORT")
    if port is None:
        default = int(base["metrics_port"]) + (PAPER_METRICS_PORT_OFFSET if dry_run else 0)
        return {"metrics_port": default, "metrics_host": host, "metrics_port_explicit": False}
    return {"metrics_port": port or None, "metrics_host": host, "metrics_port_explicit": port > 0}


def parse_symbols(name: str, raw: object) -> tuple[Symbol, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
    symbols = tuple(Symbol(str(item).strip().upper()) for item in items if str(item).strip())
    if not symbols:
        raise ConfigError(f"{name}: at least one symbol is required")
    for symbol in symbols:
        if not _SYMBOL.match(symbol):
            raise ConfigError(f"{name}: {symbol!r} is not a product id like BTC-USD")
    if len(set(symbols)) != len(symbols):
        raise ConfigError(f"{name}: duplicate symbols in {','.join(symbols)}")
    return symbols


def paper_bot_id(name: str, live_bot_id: str) -> str:
    """The bot id a dry-run of ``live_bot_id`` runs under: ``<live_bot_id>-paper`` (at most 32 chars)."""
    paper = live_bot_id + PAPER_BOT_ID_SUFFIX
    if len(paper) > _BOT_ID_MAX_CHARS:
        room = _BOT_ID_MAX_CHARS - len(PAPER_BOT_ID_SUFFIX)
        raise ConfigError(
            f"{name}: dry-run runs as {paper!r} ({len(paper)} chars, max {_BOT_ID_MAX_CHARS}); "
            f"use a bot id of at most {room} chars"
        )
    return paper


def paper_client_id_prefix(live_prefix: str) -> str:
    """The client-id prefix of a dry-run of a bot whose prefix is ``live_prefix``.

    ``p`` goes in before the last character (``pb-`` -> ``pbp-``; an 8-char prefix has its last character
    replaced instead, ``x`` when that character already is ``p``). The two prefixes then differ at a position
    both have, so neither starts with the other: the live bot, which adopts every order whose client id starts
    with its prefix, never adopts a paper order, and the other way round.
    """
    head, last = live_prefix[:-1], live_prefix[-1]
    mark = "x" if last == "p" else "p"
    paper = head + mark + (last if len(live_prefix) < _CLIENT_ID_PREFIX_MAX_CHARS else "")
    if (
        paper.startswith(live_prefix)
        or live_prefix.startswith(paper)
        or not _CLIENT_ID_PREFIX.fullmatch(paper)
    ):
        raise ConfigError(f"PERPS_CLIENT_ID_PREFIX: no dry-run prefix can be derived from {live_prefix!r}")
    return paper


def _existing_file(name: str, raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}: file not found: {path}")
    return path


# --- the loader ---------------------------------------------------------------------------------------------


def load_settings(
    profile: Profile | str,
    env: Mapping[str, str],
    overrides: CliOverrides | None = None,
    *,
    root: Path | None = None,
) -> BotSettings:
    """Build validated settings for ``profile`` from the environment mapping and CLI overrides."""
    overrides = overrides or CliOverrides()
    check_unknown_variables(env)
    try:
        prof = Profile(str(profile).lower())
    except ValueError:
        choices = ", ".join(p.value for p in Profile)
        raise ConfigError(f"profile: unknown profile {profile!r} (choose one of {choices})") from None
    base: Mapping[str, Any] = PROFILES[prof]
    root = root or Path.cwd()

    broker = BrokerKind(base["broker"])
    bot_id_field = "--bot-id" if overrides.bot_id else "PERPS_BOT_ID"
    bot_id = str(overrides.bot_id or read(env, "PERPS_BOT_ID", f"perps-{prof.value}")).strip().lower()
    if not _BOT_ID.match(bot_id):
        raise ConfigError(f"{bot_id_field}: {bot_id!r} must be 1-32 chars of a-z, 0-9, '_' or '-'")
    if bot_id.endswith(PAPER_BOT_ID_SUFFIX):
        raise ConfigError(
            f"{bot_id_field}: {bot_id!r} ends in {PAPER_BOT_ID_SUFFIX!r}, which names dry-run bots; give the "
            f"live bot's id and --dry-run"
        )

    symbols = parse_symbols(
        "--symbols" if overrides.symbols is not None else "PERPS_SYMBOLS",
        overrides.symbols if overrides.symbols is not None else (env.get("PERPS_SYMBOLS") or base["symbols"]),
    )
    dry_run = (
        overrides.dry_run if overrides.dry_run is not None else read(env, "PERPS_DRY_RUN", base["dry_run"])
    )
    interval = (
        overrides.interval_seconds
        if overrides.interval_seconds is not None
        else read(env, "PERPS_INTERVAL_SECONDS", base["interval_seconds"])
    )
    if interval < 0.05:
        raise ConfigError(f"--interval: must be at least 0.05 seconds, got {interval}")
    enable_derivatives = read(env, "COINBASE_ENABLE_DERIVATIVES", base["enable_derivatives"])
    strategy = str(overrides.strategy or read(env, "PERPS_STRATEGY", base["strategy"])).strip().lower()
    strategy_params = _strategy_params(strategy, base, env)
    log_level = str(overrides.log_level or read(env, "PERPS_LOG_LEVEL")).upper()
    prefix = read(env, "PERPS_CLIENT_ID_PREFIX")
    if not _CLIENT_ID_PREFIX.fullmatch(prefix):
        raise ConfigError(f"PERPS_CLIENT_ID_PREFIX: {prefix!r} must be 1-8 chars of a-z, 0-9, '-'")
    lease = _lease_settings(env, interval)

    data_dir = Path(read(env, "PERPS_DATA_DIR", root / "var" / "data" / "perps_bot" / prof.value))
    log_dir = Path(read(env, "PERPS_LOG_DIR", root / "var" / "logs"))

    risk = RiskConfig.from_env(env, RiskConfig.from_mapping(base["risk"]))
    if overrides.reduce_only is not None:
        risk = dataclasses.replace(risk, reduce_only_mode=overrides.reduce_only)

    # The simulated exchange is the live bot's: a dry-run sees the same market (and the same in-process
    # simulator state), everything else it owns apart. Derived after the exchange, before the state.
    coinbase, simulator, secrets = _exchange_settings(prof, broker, env, enable_derivatives, data_dir)
    shadows: str | None = None
    if dry_run:
        shadows = bot_id
        bot_id = paper_bot_id(bot_id_field, bot_id)
        prefix = paper_client_id_prefix(prefix)
        data_dir = data_dir / PAPER_DATA_SUBDIR
        log_dir = log_dir / PAPER_DATA_SUBDIR  # perps_bot.log keeps one writer: the paper bot has its own
    state = _state_settings(base, env, bot_id, data_dir)
    # every value the schema calls secret, and the passwords inside the service URLs: masked in every log line
    secrets += tuple(
        s
        for s in (
            *(env.get(name) for name in sorted(secret_variables())),
            _url_password(state.redis_url),
            _url_password(state.database_url),
        )
        if s
    )
    return BotSettings(
        profile=prof,
        bot_id=bot_id,
        broker=broker,
        symbols=symbols,
        dry_run=dry_run,
        interval_seconds=interval,
        enable_derivatives=enable_derivatives,
        strategy=strategy,
        strategy_params=strategy_params,
        risk=risk,
        state=state,
        coinbase=coinbase,
        simulator=simulator,
        data_dir=data_dir,
        log_dir=log_dir,
        log_level=log_level,
        client_id_prefix=prefix,
        shutdown_order_policy=ShutdownOrderPolicy(read(env, "PERPS_SHUTDOWN_ORDER_POLICY")),
        reconcile_mismatch_action=ReconcileMismatchAction(read(env, "PERPS_RECONCILE_MISMATCH_ACTION")),
        intent_grace_seconds=read(env, "PERPS_INTENT_GRACE_SECONDS"),
        reconcile_every_cycles=read(env, "PERPS_RECONCILE_EVERY_CYCLES"),
        history_retention_days=read(env, "PERPS_HISTORY_RETENTION_DAYS"),
        ws_rest_sync_seconds=read(env, "COINBASE_WS_REST_SYNC_SECONDS"),
        **_metrics_endpoint(env, base, dry_run),
        shadows_bot_id=shadows,
        lease=lease,
        secrets=secrets,
    )


def _lease_settings(env: Mapping[str, str], interval_seconds: float) -> LeaseSettings:
    """The lease's TTL (default 0.6 s: see docs/BENCHMARKS.md, standby takeover), its watchdog (default: three
    intervals, at least 15 s) and the submit budget (default TTL/3, below the 2/3 TTL a renewal leaves)."""
    ttl = read(env, "PERPS_LEASE_TTL_SECONDS")
    watchdog = read(env, "PERPS_LEASE_WATCHDOG_SECONDS", max(15.0, 3 * interval_seconds))
    if watchdog < ttl:
        raise ConfigError(f"PERPS_LEASE_WATCHDOG_SECONDS: must be >= {ttl}, got {watchdog:g}")
    budget = read(env, "PERPS_LEASE_SUBMIT_BUDGET_SECONDS", ttl / 3)
    if budget >= ttl * 2 / 3:
        raise ConfigError(
            f"PERPS_LEASE_SUBMIT_BUDGET_SECONDS: {budget} must be below 2/3 of PERPS_LEASE_TTL_SECONDS ({ttl}): "
            "a renewal every TTL/3 leaves at least that much"
        )
    return LeaseSettings(ttl_seconds=ttl, watchdog_seconds=watchdog, submit_budget_seconds=budget)


def parse_key_values(name: str, raw: str) -> dict[str, str]:
    """Parse ``key=value,key=value`` (whitespace allowed) into a dict; a malformed pair names the variable."""
    result: dict[str, str] = {}
    for pair in raw.split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{name}: expected key=value pairs separated by commas, got {pair.strip()!r}")
        result[key.strip()] = value.strip()
    return result


def _strategy_params(strategy: str, base: Mapping[str, Any], env: Mapping[str, str]) -> Mapping[str, str]:
    """Profile defaults apply to the profile's own strategy; PERPS_STRATEGY_PARAMS overrides key by key.

    The strategy is built once here so an unknown name or a bad parameter fails at start-up (exit 2).
    """
    from bot_v2.strategies import create_strategy

    params: dict[str, str] = {}
    if strategy == base["strategy"]:
        params.update({k: str(v) for k, v in base.get("strategy_params", {}).items()})
    raw = env.get("PERPS_STRATEGY_PARAMS")
    if raw:
        params.update(parse_key_values("PERPS_STRATEGY_PARAMS", raw))
    try:
        create_strategy(strategy, params)
    except ConfigError as exc:
        raise ConfigError(f"PERPS_STRATEGY/PERPS_STRATEGY_PARAMS: {exc}") from None
    return MappingProxyType(params)


def _sentinels(env: Mapping[str, str]) -> tuple[tuple[tuple[str, int], ...], str | None]:
    """REDIS_SENTINELS (host:port,...) and REDIS_SENTINEL_MASTER: both or neither."""
    raw, master = env.get("REDIS_SENTINELS", "").strip(), env.get("REDIS_SENTINEL_MASTER", "").strip()
    if bool(raw) != bool(master):
        missing = "REDIS_SENTINEL_MASTER" if raw else "REDIS_SENTINELS"
        raise ConfigError(f"{missing}: REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together; set both")
    if not raw:
        return (), None
    sentinels: list[tuple[str, int]] = []
    for entry in (part.strip() for part in raw.split(",")):
        host, sep, port = entry.rpartition(":")
        host = host.strip("[]")  # [::1]:26379
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"REDIS_SENTINELS: expected host:port[,host:port...], got {entry!r}")
        sentinels.append((host, int(port)))
    return tuple(sentinels), master


def _url_password(url: str | None) -> str | None:
    from urllib.parse import urlsplit

    return urlsplit(url).password if url else None


def _exchange_settings(
    prof: Profile,
    broker: BrokerKind,
    env: Mapping[str, str],
    enable_derivatives: bool,
    data_dir: Path,
) -> tuple[CoinbaseConnection, SimulatorSettings, tuple[str, ...]]:
    timeout = read(env, "COINBASE_TIMEOUT_SECONDS")
    base_url = read(env, "COINBASE_BASE_URL")
    if "://" in base_url or "/" in base_url:
        raise ConfigError(
            f"COINBASE_BASE_URL: give a bare host[:port] such as api.coinbase.com, got {base_url!r}"
        )
    api_key = env.get("COINBASE_API_KEY") or None
    api_secret = env.get("COINBASE_API_SECRET") or None
    key_file_raw = env.get("COINBASE_KEY_FILE") or None
    ca_file_raw = env.get("COINBASE_CA_FILE") or None
    key_file = _existing_file("COINBASE_KEY_FILE", key_file_raw) if key_file_raw else None
    ca_file = _existing_file("COINBASE_CA_FILE", ca_file_raw) if ca_file_raw else None
    if key_file and (api_key or api_secret):
        raise ConfigError("COINBASE_KEY_FILE: set either the key file or COINBASE_API_KEY/SECRET, not both")
    if bool(api_key) != bool(api_secret):
        missing = "COINBASE_API_SECRET" if api_key else "COINBASE_API_KEY"
        raise MissingCredentialsError(f"{missing}: both COINBASE_API_KEY and COINBASE_API_SECRET are needed")

    external_sim = (
        broker is BrokerKind.SIMULATED and "COINBASE_BASE_URL" in env and bool(env["COINBASE_BASE_URL"])
    )
    if broker is BrokerKind.COINBASE and not (key_file or api_key):
        raise MissingCredentialsError(
            f"COINBASE_API_KEY: profile {prof.value} trades on Coinbase and needs COINBASE_API_KEY + "
            "COINBASE_API_SECRET (or COINBASE_KEY_FILE)"
        )
    if external_sim and not (key_file or api_key):
        raise MissingCredentialsError(
            "COINBASE_KEY_FILE: an external simulator needs its key file (or key+secret)"
        )
    ws_enabled = read(env, "COINBASE_WS_ENABLED")
    ws_url = read(env, "COINBASE_WS_URL") or None
    if ws_url is None and broker is BrokerKind.COINBASE:
        ws_url = DEFAULT_WS_URL
    if ws_url is not None and not ws_url.startswith(("wss://", "ws://")):
        raise ConfigError(f"COINBASE_WS_URL: give a wss:// URL such as {DEFAULT_WS_URL}, got {ws_url!r}")
    ws_stale = read(env, "COINBASE_WS_STALE_SECONDS")
    simulator = SimulatorSettings(
        state_dir=data_dir / "simulator",
        seed=read(env, "SIM_SEED"),
        tick_seconds=read(env, "SIM_TICK_SECONDS"),
        external=external_sim,
        websocket=ws_enabled,
    )
    connection = CoinbaseConnection(
        base_url=base_url,
        api_key=api_key,
        api_secret=api_secret,
        key_file=key_file,
        ca_file=ca_file,
        timeout_seconds=timeout,
        enable_derivatives=enable_derivatives,
        ws_url=ws_url if ws_enabled else None,
        ws_stale_seconds=ws_stale,
    )
    secrets = tuple(s for s in (api_secret, api_key) if s)
    return connection, simulator, secrets


def _state_settings(
    base: Mapping[str, Any], env: Mapping[str, str], bot_id: str, data_dir: Path
) -> StateSettings:
    hot_default, warm_default, cold_default = base["state_backends"]
    redis_url = env.get("REDIS_URL") or None
    sentinels, sentinel_master = _sentinels(env)
    if redis_url and sentinels:
        raise ConfigError("REDIS_SENTINELS: set either REDIS_URL or REDIS_SENTINELS, not both")
    database_url = env.get("DATABASE_URL") or None
    s3_endpoint = env.get("S3_ENDPOINT_URL") or None
    s3_bucket = env.get("S3_BUCKET") or None
    # A URL in the environment switches a tier to the real service; otherwise the profile decides.
    hot = HotBackend.REDIS if (redis_url or sentinels) else HotBackend(hot_default)
    warm = WarmBackend.POSTGRES if database_url else WarmBackend(warm_default)
    cold = ColdBackend.S3 if (s3_endpoint or s3_bucket) else ColdBackend(cold_default)
    if hot is HotBackend.REDIS and not (redis_url or sentinels):
        raise ConfigError(
            "REDIS_URL: this profile keeps HOT state in Redis; set REDIS_URL (redis://host:6379/0) "
            "or REDIS_SENTINELS + REDIS_SENTINEL_MASTER"
        )
    if warm is WarmBackend.POSTGRES and not database_url:
        raise ConfigError("DATABASE_URL: this profile keeps WARM state in PostgreSQL; set DATABASE_URL")
    if cold is ColdBackend.S3 and not s3_bucket:
        raise ConfigError(
            "S3_BUCKET: this profile keeps COLD state in S3; set S3_BUCKET (and S3_ENDPOINT_URL)"
        )
    for var, url, schemes in (
        ("REDIS_URL", redis_url, ("redis", "rediss", "unix")),
        ("DATABASE_URL", database_url, ("postgres", "postgresql")),
        ("S3_ENDPOINT_URL", s3_endpoint, ("http", "https")),
    ):
        if url and url.split("://", 1)[0] not in schemes:
            raise ConfigError(f"{var}: expected a {'/'.join(schemes)}:// URL")
    state = StateSettings(
        bot_id=bot_id,
        data_dir=data_dir,
        hot_backend=hot,
        warm_backend=warm,
        cold_backend=cold,
        redis_url=redis_url,
        redis_sentinels=sentinels,
        redis_sentinel_master=sentinel_master,
        redis_password=env.get("REDIS_PASSWORD") or None,
        redis_sentinel_password=env.get("REDIS_SENTINEL_PASSWORD") or None,
        redis_db=read(env, "REDIS_DB"),
        database_url=database_url,
        s3_endpoint_url=s3_endpoint,
        s3_bucket=s3_bucket,
        s3_region=read(env, "AWS_DEFAULT_REGION"),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        # PostgreSQL down: what the loop may send, and for how long after the last lease renewal
        warm_outage_mode=WarmOutageMode(read(env, "PERPS_WARM_OUTAGE_MODE")),
        warm_outage_max_seconds=read(env, "PERPS_WARM_OUTAGE_MAX_SECONDS"),
        max_value_bytes=read(env, "STATE_MAX_VALUE_BYTES"),
        # hung servers (docs/STATE.md "Hung servers"): a command without an answer by then is an outage
        hot_command_timeout_seconds=read(env, "STATE_HOT_COMMAND_TIMEOUT_SECONDS"),
        warm_command_timeout_seconds=read(env, "STATE_WARM_COMMAND_TIMEOUT_SECONDS"),
        warm_bulk_timeout_seconds=read(env, "STATE_WARM_BULK_TIMEOUT_SECONDS"),
        checkpoint_interval_seconds=read(env, "CHECKPOINT_INTERVAL_SECONDS"),
        checkpoint_retention=_checkpoint_retention(env),
    )
    batch_size = _batch_size(env)
    if batch_size is None:
        return state
    return dataclasses.replace(state, hot_restore_page_size=batch_size, coherence_page_size=batch_size)


def _checkpoint_retention(env: Mapping[str, str]) -> int:
    """``CHECKPOINT_RETENTION`` or the runbook's name for it, ``CHECKPOINT_RETENTION_COUNT`` (default 10).

    ``CHECKPOINT_ENABLE_COMPRESSION``: checkpoints are always zlib-compressed (format 2); 1 is accepted, 0 is
    refused rather than silently ignored.
    """
    given = {n: read(env, n) for n in ("CHECKPOINT_RETENTION", "CHECKPOINT_RETENTION_COUNT") if env.get(n)}
    if len(set(given.values())) > 1:
        raise ConfigError(
            f"CHECKPOINT_RETENTION_COUNT: {given['CHECKPOINT_RETENTION_COUNT']} disagrees with CHECKPOINT_RETENTION="
            f"{given['CHECKPOINT_RETENTION']} (the same setting); set one of them"
        )
    if not read(env, "CHECKPOINT_ENABLE_COMPRESSION"):
        raise ConfigError(
            "CHECKPOINT_ENABLE_COMPRESSION: checkpoints are always zlib-compressed (level 1: cheaper than "
            "writing the raw bytes); remove the variable or set it to 1"
        )
    return int(next(iter(given.values()), read(env, "CHECKPOINT_RETENTION")))


def _batch_size(env: Mapping[str, str]) -> int | None:
    """``STATE_BATCH_SIZE`` (the runbook's "keys per batch operation"): the page of the state layer's batch
    passes -- a HOT restore after a Redis outage and the coherence passes (defaults 2000 / 500)."""
    size: int | None = read(env, "STATE_BATCH_SIZE")
    return size
