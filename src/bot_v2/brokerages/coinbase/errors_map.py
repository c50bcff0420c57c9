"""The one place where SDK, requests and parsing errors become ``bot_v2.errors`` exceptions.

``sdk_errors(operation)`` wraps every SDK call (and the conversion of its payload); ``translate`` is the
mapping itself; ``order_rejection`` maps business failures (HTTP 200 with ``success: false``, preview or edit
errors). Messages are one line, bounded, and passed through the connection's ``SecretMasker``: a key, a PEM
or a JWT never reaches an exception.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
import urllib3.exceptions

from bot_v2.errors import (
    AuthenticationError,
    ConfigError,
    ExchangeProtocolError,
    ExchangeUnavailableError,
    InsufficientFundsError,
    InvalidOrderError,
    MissingCredentialsError,
    NotFoundError,
    OrderRejectedError,
    PermissionDeniedError,
    PerpsBotError,
    RateLimitedError,
)
from bot_v2.monitoring.masking import SecretMasker

__all__ = ["order_rejection", "retry_after_seconds", "sdk_errors", "translate"]

_MAX_DETAIL = 200
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")


@contextmanager
def sdk_errors(
    operation: str, masker: SecretMasker | None = None, *, order_path: bool = False
) -> Iterator[None]:
    """Translate anything the SDK, requests or payload parsing raises inside the block.

    ``order_path`` marks calls that send an order (create, preview, edit): a 400 there means the order itself
    was refused as malformed (``InvalidOrderError``); elsewhere it means the adapter and the exchange disagree
    (``ExchangeProtocolError``). Our own ``PerpsBotError`` passes through untouched; ``BaseException``s that
    are not ``Exception`` (cancellation, interrupts) are never caught.
    """
    try:
        yield
    except PerpsBotError:
        raise
    except Exception as exc:
        raise translate(exc, operation, masker, order_path=order_path) from exc


def translate(
    exc: Exception, operation: str, masker: SecretMasker | None = None, *, order_path: bool = False
) -> PerpsBotError:
    """Return the ``bot_v2.errors`` exception for a vendor exception (does not raise)."""
    if isinstance(exc, PerpsBotError):
        return exc

    def msg(text: str) -> str:
        return _one_line(f"{operation}: {text}", masker)

    detail = _one_line(str(exc) or type(exc).__name__, masker, limit=_MAX_DETAIL)
    if isinstance(exc, requests.HTTPError):
        return _from_http_error(exc, operation, masker, order_path=order_path)
    if isinstance(exc, requests.exceptions.JSONDecodeError | json.JSONDecodeError):
        return ExchangeProtocolError(msg(f"response is not valid JSON ({detail})"))
    if isinstance(exc, requests.Timeout):
        return ExchangeUnavailableError(msg(f"timed out ({type(exc).__name__})"))
    if isinstance(exc, requests.exceptions.SSLError):
        return ExchangeUnavailableError(msg(f"TLS failure ({detail})"))
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return ExchangeUnavailableError(msg(f"connection failed ({type(exc).__name__}: {detail})"))
    if isinstance(exc, requests.exceptions.ContentDecodingError | requests.exceptions.RetryError):
        return ExchangeUnavailableError(msg(f"transport failure ({type(exc).__name__}: {detail})"))
    if isinstance(
        exc,
        requests.exceptions.URLRequired
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidURL
        | requests.exceptions.InvalidProxyURL,
    ):
        return ConfigError(msg(f"invalid exchange URL ({type(exc).__name__}: {detail})"))
    if type(exc) is requests.RequestException:
        return ExchangeUnavailableError(msg(f"request failed ({detail})"))
    if isinstance(exc, requests.RequestException):
        # InvalidJSONError, InvalidHeader, TooManyRedirects, StreamConsumedError, UnrewindableBodyError: the
        # request or the answer is not what the protocol says.
        return ExchangeProtocolError(msg(f"request failed ({type(exc).__name__}: {detail})"))
    if isinstance(exc, urllib3.exceptions.LocationValueError):
        return ConfigError(msg(f"invalid exchange URL ({detail})"))
    if isinstance(exc, urllib3.exceptions.HTTPError):
        # urllib3 errors that escape requests' wrapping (a connection dropped while reading the body).
        return ExchangeUnavailableError(msg(f"transport failure ({type(exc).__name__}: {detail})"))
    if isinstance(exc, multiprocessing.AuthenticationError):
        return MissingCredentialsError(msg("the SDK client has no credentials for a private endpoint"))
    if isinstance(exc, TimeoutError):
        return ExchangeUnavailableError(msg("timed out"))
    if isinstance(exc, OSError):
        # Not a socket error (requests wraps those): a missing CA bundle or key file.
        return ConfigError(msg(f"{type(exc).__name__}: {detail}"))
    if isinstance(exc, KeyError | TypeError | AttributeError | ValueError | IndexError | InvalidOperation):
        return ExchangeProtocolError(msg(f"malformed payload ({type(exc).__name__}: {detail})"))
    if type(exc) is Exception:
        # The SDK raises bare Exception only for credentials it cannot use (key file, half a pair, bad key).
        return AuthenticationError(msg(f"the SDK refused the API key ({detail})"))
    return ExchangeProtocolError(msg(f"unexpected {type(exc).__name__}: {detail}"))


def _from_http_error(
    exc: requests.HTTPError, operation: str, masker: SecretMasker | None, *, order_path: bool
) -> PerpsBotError:
    response = exc.response
    if response is None:
        return ExchangeProtocolError(_one_line(f"{operation}: HTTP error without a response", masker))
    status = response.status_code
    summary = _one_line(f"{operation}: HTTP {status} {_body_summary(response)}".rstrip(), masker)
    if status == 401:
        return AuthenticationError(summary)
    if status == 403:
        return PermissionDeniedError(summary)
    if status == 404:
        return NotFoundError(summary)
    if status == 429:
        return RateLimitedError(summary, retry_after_seconds=retry_after_seconds(response.headers))
    if status in (408, 425) or status >= 500:
        return ExchangeUnavailableError(summary)
    if status in (400, 422) and order_path:
        return InvalidOrderError(summary)
    return ExchangeProtocolError(summary)


def _body_summary(response: requests.Response) -> str:
    """The exchange's error code and message from an error body, or the start of the raw text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "message", "error_details") if body.get(k)]
        if parts:
            return " ".join(dict.fromkeys(parts))
    text = response.text or response.reason or ""
    return text[:_MAX_DETAIL]


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds until the rate-limit window resets, from ``x-ratelimit-reset`` (or ``Retry-After``).

    The reset header is read as an absolute UNIX time when it is larger than a year in seconds, else as a
    delay.
    """
    for name in ("x-ratelimit-reset", "retry-after"):
        raw = headers.get(name) if headers is not None else None
        if raw in (None, ""):
            continue
        try:
            value = float(Decimal(str(raw).strip()))
        except (InvalidOperation, ValueError):
            continue
        if value > 31_536_000:
            value -= time.time() if now is None else now
        return max(value, 0.0)
    return None


def order_rejection(
    operation: str, reasons: Sequence[str | None], message: str | None = None
) -> OrderRejectedError:
    """Map a business failure (``success: false``, edit ``errors``) to ``OrderRejectedError``.

    ``reason`` is the most specific enum given (``UNKNOWN_*`` placeholders lose); any ``INSUFFICIENT_FUND*``
    reason gives ``InsufficientFundsError``.
    """
    known = [r for r in reasons if r]
    specific = [r for r in known if not r.startswith("UNKNOWN")]
    reason = (specific or known or ["UNKNOWN_FAILURE_REASON"])[0]
    funds = next((r for r in known if "INSUFFICIENT_FUND" in r), None)
    text = " ".join(
        f"{operation}: rejected {', '.join(dict.fromkeys(known)) or reason} {message or ''}".split()
    )
    if funds is not None:
        return InsufficientFundsError(text, reason=funds)
    return OrderRejectedError(text, reason=reason)


def _one_line(text: str, masker: SecretMasker | None, limit: int = 400) -> str:
    # With no masker, an empty one still strips PEM blocks and URL passwords.
    text = (masker or SecretMasker()).mask(text)
    text = _JWT.sub("****JWT****", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
