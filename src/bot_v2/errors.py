"""One exception tree for the whole bot, grouped by what the caller must do.

* ``InputError``      -- the operator's input or config is wrong: fix it and run again (exit 2).
* ``RetryableError``  -- a transient fault (network, rate limit, 5xx, a state tier down): retry with backoff.
* ``OrderDeniedError``-- this one order cannot go (exchange rejection, risk guard): skip it, keep trading.
* ``HaltError``       -- continuing could lose money or state (auth, corrupted state, unknown payload): halt.

Vendor exceptions (requests, SDK, redis, asyncpg, botocore) never cross an adapter boundary: each adapter
translates them in exactly one place into one of these.
"""

from __future__ import annotations


class PerpsBotError(Exception):
    """Base of every error the bot raises on purpose."""

    exit_code: int = 1

    def one_line(self) -> str:
        """Return the message as a single line, for the CLI."""
        text = " ".join(str(self).split())
        return f"{type(self).__name__}: {text}" if text else type(self).__name__


def underlying(exc: BaseException) -> BaseException:
    """The error an ``ExceptionGroup`` (a task group's failure) stands for: a ``PerpsBotError`` leaf if there
    is one, else its first leaf. Any other exception is returned as it is."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        leaves = exc.exceptions
        exc = next((e for e in leaves if isinstance(e, PerpsBotError)), leaves[0])
    return exc


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for any exception (a group: its underlying error's)."""
    exc = underlying(exc)
    if isinstance(exc, PerpsBotError):
        return exc.one_line()
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- input: the operator fixes it -------------------------------------------------------------------------


class InputError(PerpsBotError):
    """Bad input from the operator: flags, config, environment."""

    exit_code = 2


class ConfigError(InputError):
    """Invalid configuration; the message names the field."""


class MissingCredentialsError(ConfigError):
    """A profile that talks to a real exchange has no API credentials."""


class InvalidOrderError(InputError):
    """The order request itself is malformed (checked before anything is sent)."""


class UnknownSymbolError(InvalidOrderError):
    """The product id is not listed by the exchange."""


class SizeError(InvalidOrderError):
    """Size below minimum, above maximum, or off the product's base increment."""


class PriceError(InvalidOrderError):
    """Price missing where required, or off the product's price increment."""


# --- retry: transient ---------------------------------------------------------------------------------------


class RetryableError(PerpsBotError):
    """A transient failure; the same call may succeed later."""


class ExchangeUnavailableError(RetryableError):
    """The exchange could not be reached, timed out, or answered 5xx."""


class RateLimitedError(RetryableError):
    """The exchange answered 429; ``retry_after_seconds`` says when to try again (if known)."""

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class StateUnavailableError(RetryableError):
    """A state tier (Redis, PostgreSQL, S3) cannot be reached."""


class ColdUnavailableError(StateUnavailableError):
    """The COLD store (S3) cannot serve a body, or neither it nor the local spool can take a write. Not a WARM
    outage: the state manager must not journal WARM writes because of it."""


# --- deny: this order does not go ---------------------------------------------------------------------------


class OrderDeniedError(PerpsBotError):
    """The order was refused; trading continues."""

    exit_code = 2


class OrderRejectedError(OrderDeniedError):
    """The exchange rejected the order (``success: false``); ``reason`` is the exchange's failure code."""

    def __init__(self, message: str, reason: str = "UNKNOWN_FAILURE_REASON") -> None:
        super().__init__(message)
        self.reason = reason


class InsufficientFundsError(OrderRejectedError):
    """The account cannot fund the order."""


class GuardDeniedError(OrderDeniedError):
    """A risk guard refused the order; ``guard`` names it and the message says why."""

    def __init__(self, guard: str, message: str) -> None:
        super().__init__(f"{guard}: {message}")
        self.guard = guard


class NotFoundError(PerpsBotError):
    """The exchange does not know the order / product / account asked for."""


# --- halt: stop trading -------------------------------------------------------------------------------------


class HaltError(PerpsBotError):
    """Continuing could lose money or state: stop placing orders."""


class TradingHaltedError(HaltError):
    """The trading loop stopped itself after a halting error (it shut down in order first)."""


class AuthenticationError(HaltError):
    """The exchange refused the credentials (401)."""


class PermissionDeniedError(HaltError):
    """The key lacks a required permission (403)."""


class ExchangeProtocolError(HaltError):
    """The exchange answered something the adapter cannot interpret."""


class StateError(PerpsBotError):
    """Base of state-layer errors that are not simply 'tier down'."""


class StateEncodingError(StateError, InputError):
    """A value cannot be encoded canonically, or is larger than the configured limit."""


class StateKeyError(StateError, InputError):
    """A key is malformed or outside this bot's namespace."""


class StateIntegrityError(StateError, HaltError):
    """A stored record failed verification (checksum, version, schema): never silently accepted."""


class StateSchemaError(StateIntegrityError):
    """The database schema is newer than this code (or otherwise not one this code can use)."""


class StateReadOnlyError(StateError):
    """A write through a state layer opened read-only (a reader, or a standby that holds no lease)."""


# --- ownership: one live writer per bot id ------------------------------------------------------------------


class LeaseHeldError(InputError):
    """Another live process holds this bot id's lease: this one must not trade or write (exit 2)."""


class FencedError(StateError, HaltError):
    """A newer lease epoch exists: this process was replaced and must stop at once, sending nothing."""


class LeaseLostError(RetryableError):
    """The lease has less time left than an exchange call needs (renewals failing): no order now."""
