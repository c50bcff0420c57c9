"""Strict configuration: a variable with one of the bot's prefixes that the bot does not read is an error.

A typo such as ``RISK_KILL_SWITCH_ENABLD=1`` in ``.env`` would otherwise be ignored and the bot would trade with
the kill switch off. ``load_settings`` refuses it (``ConfigError``, exit 2) naming the closest known variable.

The known variables are not a second list kept by hand: they are the settings definitions themselves --
``ENV_VARS`` (the names in ``config/schema.py``, where each new setting is declared with its type, default,
bounds and help), the risk limits' ``RISK_ENV_VARS`` (from their specs) and the test-only crash hook. A variable
added there is known at once;
``tests/unit/config/test_strict.py`` checks that every variable the README, docs/ and .env.example mention is.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from bot_v2.errors import ConfigError

__all__ = ["PREFIXES", "TEST_ONLY_VARIABLE", "check_unknown_variables", "closest_variable", "known_variables"]

#: ``orchestration.crashpoints.CRASH_ENV``, read there (not by ``load_settings``); a test keeps them equal.
TEST_ONLY_VARIABLE = "PERPS_TEST_CRASH_AT"

#: Names with these prefixes are the bot's: an unknown one is refused, not ignored.
PREFIXES: tuple[str, ...] = ("PERPS_", "RISK_", "CHECKPOINT_", "STATE_", "COINBASE_", "S3_")


def known_variables() -> frozenset[str]:
    """Every environment variable the bot reads (from the settings definitions)."""
    from bot_v2.config.settings import ENV_VARS
    from bot_v2.risk import RISK_ENV_VARS

    return frozenset((*ENV_VARS, *RISK_ENV_VARS, TEST_ONLY_VARIABLE))


def closest_variable(name: str, known: Iterable[str]) -> str | None:
    """The known variable ``name`` most likely meant, or None: the part after the prefix is compared among
    variables of the same prefix, then the whole name among all (``RISK_KILL_SWITCH_ENABLD``)."""
    prefix, _, rest = name.partition("_")
    candidates = sorted(known)
    by_rest = {k.partition("_")[2]: k for k in candidates if k.partition("_")[0] == prefix}
    match = difflib.get_close_matches(rest, list(by_rest), n=1, cutoff=0.75)
    if match:
        return by_rest[match[0]]
    whole = difflib.get_close_matches(name, candidates, n=1, cutoff=0.85)
    return whole[0] if whole else None


def check_unknown_variables(env: Mapping[str, str], known: Iterable[str] | None = None) -> None:
    """Raise ``ConfigError`` for the first (sorted) variable with a bot prefix that is not known."""
    known_set = frozenset(known) if known is not None else known_variables()
    unknown = sorted(k for k in env if k.startswith(PREFIXES) and k not in known_set)
    if not unknown:
        return
    name = unknown[0]
    guess = closest_variable(name, known_set)
    hint = f"did you mean {guess}?" if guess else "see .env.example for the variables the bot reads"
    more = f"; {len(unknown) - 1} more unknown: {', '.join(unknown[1:4])}" if len(unknown) > 1 else ""
    raise ConfigError(f"{name}: unknown variable ({hint}){more}")
