"""``RiskConfig``: every risk limit in one frozen, validated dataclass (profile + ``RISK_*`` env).

Units are in the names: ``*_usd`` are US dollars, ``*_pct`` are percent (``2`` means 2 %), ``*_bps`` basis
points, ``*_seconds`` seconds. An optional limit set to ``None`` is disabled. Validation runs once, at
construction; a bad value raises ``ConfigError`` naming the field (or the environment variable it came from).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from bot_v2.domain import Symbol
from bot_v2.errors import ConfigError

__all__ = [
    "RISK_ENV_DOCS",
    "RISK_ENV_VARS",
    "DrawdownAction",
    "RiskConfig",
    "parse_bool",
    "risk_env_specs",
]


class DrawdownAction(enum.StrEnum):
    """What a drawdown beyond ``max_drawdown_pct`` does to the trading state."""

    HALT = "HALT"
    REDUCE_ONLY = "REDUCE_ONLY"


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_DISABLED = frozenset({"none", "null", "disabled"})


def parse_bool(name: str, raw: str) -> bool:
    """Parse ``1/0/true/false/yes/no/on/off`` (any case); raise ``ConfigError`` naming ``name``."""
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name}: expected a boolean (1/0/true/false/yes/no/on/off), got {raw!r}")


def _parse_decimal(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if not value.is_finite():
        raise ConfigError(f"{name}: expected a finite number, got {raw!r}")
    return value


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None


def _parse_position_sizes(name: str, raw: str) -> tuple[Decimal | None, dict[Symbol, Decimal]]:
    """Parse ``"0.5"`` (every symbol) or ``"BTC-USD=0.5,ETH-USD=10"`` (per symbol), or both mixed."""
    default: Decimal | None = None
    per_symbol: dict[Symbol, Decimal] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if "=" in item:
            sym, _, amount = item.partition("=")
            sym = sym.strip().upper()
            if not sym:
                raise ConfigError(f"{name}: empty symbol in {item!r}")
            per_symbol[Symbol(sym)] = _parse_decimal(name, amount)
        else:
            default = _parse_decimal(name, item)
    return default, per_symbol


# --- field specs -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    kind: str  # "bool" | "decimal" | "int" | "seconds" | "action" | "sizes"
    env: str | None
    doc: str
    optional: bool = False
    maximum: Decimal | None = None
    allow_zero: bool = False


_PCT = Decimal(100)

_SPECS: dict[str, _Spec] = {
    "kill_switch_enabled": _Spec(
        "bool", "RISK_KILL_SWITCH_ENABLED", "Emergency stop: deny every order and halt trading."
    ),
    "reduce_only_mode": _Spec(
        "bool", "RISK_REDUCE_ONLY_MODE", "Only orders that shrink an existing position are allowed."
    ),
    "max_leverage": _Spec(
        "decimal",
        "RISK_MAX_LEVERAGE",
        "Max account leverage (total exposure / equity) and max leverage on an order.",
    ),
    "max_position_size": _Spec(
        "decimal",
        "RISK_MAX_POSITION_SIZE",
        "Max |position| in base units: '0.5' for every symbol and/or 'BTC-USD=0.5,ETH-USD=10' per symbol.",
        optional=True,
    ),
    "max_position_size_by_symbol": _Spec("sizes", None, "Per-symbol max |position| in base units."),
    "max_notional_per_symbol_usd": _Spec(
        "decimal", "RISK_MAX_NOTIONAL_PER_SYMBOL_USD", "Max position notional per symbol, USD.", optional=True
    ),
    "max_total_exposure_usd": _Spec(
        "decimal",
        "RISK_MAX_TOTAL_EXPOSURE_USD",
        "Max sum of position notionals over all symbols, USD.",
        optional=True,
    ),
    "daily_loss_limit_pct": _Spec(
        "decimal",
        "RISK_DAILY_LOSS_LIMIT_PCT",
        "Daily loss (realized + unrealized since 00:00 UTC), % of day-start equity: trips REDUCE_ONLY.",
        optional=True,
        maximum=_PCT,
    ),
    "daily_loss_limit_usd": _Spec(
        "decimal",
        "RISK_DAILY_LOSS_LIMIT_USD",
        "Daily loss in USD that trips REDUCE_ONLY (either limit trips).",
        optional=True,
    ),
    "max_drawdown_pct": _Spec(
        "decimal",
        "RISK_MAX_DRAWDOWN_PCT",
        "Drawdown from the equity peak, %, that trips RISK_DRAWDOWN_ACTION.",
        optional=True,
        maximum=_PCT,
    ),
    "drawdown_action": _Spec(
        "action", "RISK_DRAWDOWN_ACTION", "HALT or REDUCE_ONLY: the state a drawdown breach imposes."
    ),
    "max_mark_staleness_seconds": _Spec(
        "seconds",
        "RISK_MAX_MARK_STALENESS_SECONDS",
        "A quote older than this (or never seen) is stale: orders on it are denied.",
    ),
    "volatility_warn_pct": _Spec(
        "decimal", "RISK_VOLATILITY_WARN_PCT", "Price move % over the window that warns.", optional=True
    ),
    "volatility_reduce_only_pct": _Spec(
        "decimal",
        "RISK_VOLATILITY_REDUCE_ONLY_PCT",
        "Price move % over the window that imposes REDUCE_ONLY.",
        optional=True,
    ),
    "volatility_halt_pct": _Spec(
        "decimal", "RISK_VOLATILITY_HALT_PCT", "Price move % over the window that HALTs.", optional=True
    ),
    "max_slippage_bps": _Spec(
        "decimal",
        "RISK_MAX_SLIPPAGE_BPS",
        "Max expected fill price distance from the mid (limit/touch), basis points.",
        optional=True,
    ),
    "max_orders_per_minute": _Spec(
        "int", "RISK_MAX_ORDERS_PER_MINUTE", "Max orders submitted in any 60 s window.", optional=True
    ),
    "max_open_positions": _Spec(
        "int", "RISK_MAX_OPEN_POSITIONS", "Max number of non-zero positions.", optional=True
    ),
    "min_liquidation_buffer_pct": _Spec(
        "decimal",
        "RISK_MIN_LIQUIDATION_BUFFER_PCT",
        "Derivatives: min liquidation buffer %; below it only reducing orders pass.",
        optional=True,
        maximum=_PCT,
        allow_zero=True,
    ),
    "max_funding_rate": _Spec(
        "decimal",
        "RISK_MAX_FUNDING_RATE",
        "Perpetual-style futures: max |funding rate| per interval (a fraction, 0.0005 = 0.05%) to open or grow "
        "a position on the paying side.",
        optional=True,
        maximum=Decimal(1),
    ),
    "error_rate_reduce_only_pct": _Spec(
        "decimal",
        "RISK_ERROR_RATE_REDUCE_ONLY_PCT",
        "Cycle error rate % that imposes REDUCE_ONLY.",
        optional=True,
        maximum=_PCT,
    ),
    "error_rate_halt_pct": _Spec(
        "decimal", "RISK_ERROR_RATE_HALT_PCT", "Cycle error rate % that HALTs.", optional=True, maximum=_PCT
    ),
    "error_rate_min_samples": _Spec(
        "int",
        "RISK_ERROR_RATE_MIN_SAMPLES",
        "Cycles needed before the error rate is judged.",
        allow_zero=True,
    ),
}

RISK_ENV_VARS: tuple[str, ...] = tuple(spec.env for spec in _SPECS.values() if spec.env is not None)
"""Every environment variable ``RiskConfig.from_env`` reads, in documentation order."""

RISK_ENV_DOCS: Mapping[str, str] = MappingProxyType(
    {spec.env: spec.doc for spec in _SPECS.values() if spec.env is not None}
)
"""One-line description per ``RISK_*`` variable (for ``.env.example`` and docs)."""

_FIELD_BY_ENV = {spec.env: name for name, spec in _SPECS.items() if spec.env is not None}

_KIND_DOC = {"bool": "bool", "decimal": "decimal", "int": "int", "seconds": "float", "action": "choice"}


def risk_env_specs() -> tuple[tuple[str, str, str, str], ...]:
    """(variable, type, bounds, help) of every ``RISK_*`` variable, in documentation order: the risk part of the
    configuration schema (``bot_v2.config.schema``: ``.env.example`` and docs/CONFIGURATION.md)."""
    rows = []
    for spec in _SPECS.values():
        if spec.env is None:
            continue
        if spec.kind == "action":
            bounds = "HALT | REDUCE_ONLY"
        elif spec.kind == "bool":
            bounds = ""
        else:
            bounds = ">= 0" if spec.allow_zero else "> 0"
            bounds += f", <= {spec.maximum}" if spec.maximum is not None else ""
        rows.append((spec.env, _KIND_DOC[spec.kind], bounds, spec.doc))
    return tuple(rows)


def _check_value(label: str, spec: _Spec, value: object) -> None:
    """Validate one field's value; raise ``ConfigError`` naming ``label``."""
    if value is None:
        if not spec.optional:
            raise ConfigError(f"{label}: a value is required")
        return
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{label}: expected a boolean, got {value!r}")
        return
    if spec.kind == "action":
        if not isinstance(value, DrawdownAction):
            raise ConfigError(f"{label}: expected HALT or REDUCE_ONLY, got {value!r}")
        return
    if spec.kind == "sizes":
        if not isinstance(value, Mapping):
            raise ConfigError(f"{label}: expected a mapping of symbol to size, got {value!r}")
        for sym, size in value.items():
            _check_number(f"{label}[{sym}]", size, Decimal, maximum=None, allow_zero=False)
        return
    kinds: dict[str, type | tuple[type, ...]] = {"decimal": Decimal, "int": int, "seconds": (int, float)}
    expected = kinds[spec.kind]
    _check_number(label, value, expected, maximum=spec.maximum, allow_zero=spec.allow_zero)


def _check_number(
    label: str, value: object, expected: type | tuple[type, ...], *, maximum: Decimal | None, allow_zero: bool
) -> None:
    if isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"{label}: expected a number, got {value!r}")
    number = Decimal(str(value))
    if not number.is_finite():
        raise ConfigError(f"{label}: must be finite, got {value!r}")
    if number < 0 or (number == 0 and not allow_zero):
        raise ConfigError(f"{label}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{label}: must be <= {maximum}, got {value}")


def _coerce(label: str, spec: _Spec, raw: object) -> object:
    """Turn a profile value (str, int, float, Decimal, bool, mapping) into the field's type."""
    if raw is None:
        return None
    if spec.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            return parse_bool(label, raw)
        raise ConfigError(f"{label}: expected a boolean, got {raw!r}")
    if spec.kind == "action":
        try:
            return DrawdownAction(str(raw).strip().upper())
        except ValueError:
            raise ConfigError(f"{label}: expected HALT or REDUCE_ONLY, got {raw!r}") from None
    if spec.kind == "sizes":
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{label}: expected a mapping of symbol to size, got {raw!r}")
        return {Symbol(str(k).upper()): _to_decimal(f"{label}[{k}]", v) for k, v in raw.items()}
    if isinstance(raw, str) and raw.strip().lower() in _DISABLED:
        if not spec.optional:
            raise ConfigError(f"{label}: cannot be disabled")
        return None
    if spec.kind == "int":
        if isinstance(raw, bool):
            raise ConfigError(f"{label}: expected an integer, got {raw!r}")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str):
            return _parse_int(label, raw)
        raise ConfigError(f"{label}: expected an integer, got {raw!r}")
    number = _to_decimal(label, raw)
    return float(number) if spec.kind == "seconds" else number


def _to_decimal(label: str, raw: object) -> Decimal:
    if isinstance(raw, bool):
        raise ConfigError(f"{label}: expected a number, got {raw!r}")
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, int | float | str):
        return _parse_decimal(label, str(raw))
    raise ConfigError(f"{label}: expected a number, got {raw!r}")


# --- the config ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskConfig:
    """All risk limits. Construct via ``from_mapping`` (profile) then ``from_env`` (``RISK_*`` overrides)."""

    kill_switch_enabled: bool = False
    reduce_only_mode: bool = False
    max_leverage: Decimal = Decimal(3)
    max_position_size: Decimal | None = None
    max_position_size_by_symbol: Mapping[Symbol, Decimal] = field(default_factory=dict)
    max_notional_per_symbol_usd: Decimal | None = None
    max_total_exposure_usd: Decimal | None = None
    daily_loss_limit_pct: Decimal | None = Decimal(3)
    daily_loss_limit_usd: Decimal | None = None
    max_drawdown_pct: Decimal | None = Decimal(10)
    drawdown_action: DrawdownAction = DrawdownAction.HALT
    max_mark_staleness_seconds: float = 30.0
    volatility_warn_pct: Decimal | None = Decimal(5)
    volatility_reduce_only_pct: Decimal | None = Decimal(8)
    volatility_halt_pct: Decimal | None = Decimal(12)
    max_slippage_bps: Decimal | None = Decimal(50)
    max_orders_per_minute: int | None = 30
    max_open_positions: int | None = 10
    min_liquidation_buffer_pct: Decimal | None = Decimal(20)
    max_funding_rate: Decimal | None = None
    error_rate_reduce_only_pct: Decimal | None = Decimal(25)
    error_rate_halt_pct: Decimal | None = Decimal(50)
    error_rate_min_samples: int = 10

    def __post_init__(self) -> None:
        for name, spec in _SPECS.items():
            _check_value(name, spec, getattr(self, name))
        object.__setattr__(self, "max_mark_staleness_seconds", float(self.max_mark_staleness_seconds))
        # Freeze the per-symbol mapping so the config stays immutable.
        object.__setattr__(
            self, "max_position_size_by_symbol", MappingProxyType(dict(self.max_position_size_by_symbol))
        )
        _check_ordered(
            ("volatility_warn_pct", self.volatility_warn_pct),
            ("volatility_reduce_only_pct", self.volatility_reduce_only_pct),
            ("volatility_halt_pct", self.volatility_halt_pct),
        )
        _check_ordered(
            ("error_rate_reduce_only_pct", self.error_rate_reduce_only_pct),
            ("error_rate_halt_pct", self.error_rate_halt_pct),
        )

    def position_size_limit(self, symbol: Symbol) -> Decimal | None:
        """Return the max |position| in base units for ``symbol`` (per-symbol entry, else the default)."""
        return self.max_position_size_by_symbol.get(symbol, self.max_position_size)

    def to_dict(self) -> dict[str, object]:
        """Return the config as plain values (for ``--account-snapshot`` / logs; no secrets here)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, enum.Enum):
                value = value.value
            out[f.name] = value
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], base: RiskConfig | None = None) -> RiskConfig:
        """Build from a profile dict of field names; unknown keys raise ``ConfigError`` naming the key.

        Numbers may be given as str, int, float or Decimal; ``"none"`` disables an optional limit;
        ``max_position_size`` may also be a mapping ``{symbol: size}`` (merged into the per-symbol limits).
        """
        start = base if base is not None else cls()
        changes: dict[str, Any] = {}
        for key, raw in data.items():
            if not isinstance(key, str) or key not in _SPECS:
                known = ", ".join(sorted(_SPECS))
                raise ConfigError(f"risk.{key}: unknown risk setting (known: {known})")
            label = f"risk.{key}"
            if key == "max_position_size" and isinstance(raw, Mapping):
                sizes = _coerce(label, _SPECS["max_position_size_by_symbol"], raw)
                assert isinstance(sizes, dict)
                merged = dict(changes.get("max_position_size_by_symbol", start.max_position_size_by_symbol))
                merged.update(sizes)
                changes["max_position_size_by_symbol"] = merged
                continue
            value = _coerce(label, _SPECS[key], raw)
            _check_value(label, _SPECS[key], value)
            changes[key] = value
        return _replace(start, changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str], base: RiskConfig) -> RiskConfig:
        """Apply ``RISK_*`` overrides from ``env`` on top of ``base``; bad values name the variable.

        Unset or empty variables keep the base value; ``none`` disables an optional limit.
        """
        changes: dict[str, Any] = {}
        for var in RISK_ENV_VARS:
            raw = env.get(var)
            if raw is None or not raw.strip():
                continue
            name = _FIELD_BY_ENV[var]
            spec = _SPECS[name]
            if name == "max_position_size":
                if raw.strip().lower() in _DISABLED:
                    changes["max_position_size"] = None
                    changes["max_position_size_by_symbol"] = {}
                    continue
                default, per_symbol = _parse_position_sizes(var, raw)
                _check_value(var, spec, default)
                _check_value(var, _SPECS["max_position_size_by_symbol"], per_symbol)
                changes["max_position_size"] = default
                changes["max_position_size_by_symbol"] = per_symbol
                continue
            value = _coerce(var, spec, raw)
            _check_value(var, spec, value)
            changes[name] = value
        label = {name: var for var, name in _FIELD_BY_ENV.items() if name in changes}
        return _replace(base, changes, label)


def _replace(
    base: RiskConfig, changes: dict[str, Any], labels: Mapping[str, str] | None = None
) -> RiskConfig:
    """``dataclasses.replace`` that re-labels cross-field errors with the variable names when known."""
    try:
        return replace(base, **changes)
    except ConfigError as exc:
        message = str(exc)
        for name, var in (labels or {}).items():
            message = message.replace(name, var)
        raise ConfigError(message) from None


def _check_ordered(*items: tuple[str, Decimal | None]) -> None:
    """Thresholds that are set must be non-decreasing in the given order (warn <= reduce <= halt)."""
    present = [(name, value) for name, value in items if value is not None]
    for (low_name, low), (high_name, high) in itertools.pairwise(present):
        if low > high:
            raise ConfigError(f"{low_name} ({low}) must be <= {high_name} ({high})")
