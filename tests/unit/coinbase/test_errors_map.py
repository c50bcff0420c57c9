"""Every vendor exception the SDK path can raise maps to one ``bot_v2.errors`` class, in one place."""

from __future__ import annotations

import asyncio
import inspect
import json
import multiprocessing
from decimal import InvalidOperation

import pytest
import requests
import requests.exceptions as rex
import urllib3.exceptions
from coinbase.rest import rest_base

from bot_v2.brokerages.coinbase.errors_map import order_rejection, retry_after_seconds, sdk_errors, translate
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
    SizeError,
)
from bot_v2.monitoring.masking import SecretMasker
from tests.unit.coinbase.conftest import API_KEY, PEM, make_response

# Every exception class requests defines, plus what the SDK and payload parsing raise.
VENDOR_EXCEPTIONS: list[tuple[Exception, type[PerpsBotError]]] = [
    (rex.RequestException("boom"), ExchangeUnavailableError),
    (rex.InvalidJSONError("cannot encode body"), ExchangeProtocolError),
    (rex.JSONDecodeError("Expecting value", "", 0), ExchangeProtocolError),
    (rex.HTTPError("no response attached"), ExchangeProtocolError),
    (rex.ConnectionError("Connection refused"), ExchangeUnavailableError),
    (rex.ProxyError("proxy down"), ExchangeUnavailableError),
    (rex.SSLError("CERTIFICATE_VERIFY_FAILED"), ExchangeUnavailableError),
    (rex.Timeout("timed out"), ExchangeUnavailableError),
    (rex.ConnectTimeout("connect timed out"), ExchangeUnavailableError),
    (rex.ReadTimeout("read timed out"), ExchangeUnavailableError),
    (rex.URLRequired("no url"), ConfigError),
    (rex.TooManyRedirects("loop"), ExchangeProtocolError),
    (rex.MissingSchema("no scheme"), ConfigError),
    (rex.InvalidSchema("bad scheme"), ConfigError),
    (rex.InvalidURL("https://http://host"), ConfigError),
    (rex.InvalidHeader("bad header"), ExchangeProtocolError),
    (rex.InvalidProxyURL("bad proxy"), ConfigError),
    (rex.ChunkedEncodingError("connection broken mid-body"), ExchangeUnavailableError),
    (rex.ContentDecodingError("bad gzip"), ExchangeUnavailableError),
    (rex.StreamConsumedError("consumed"), ExchangeProtocolError),
    (rex.RetryError("retries exhausted"), ExchangeUnavailableError),
    (rex.UnrewindableBodyError("cannot rewind"), ExchangeProtocolError),
    # urllib3 errors requests lets through (requests.exceptions re-exports the base class)
    (urllib3.exceptions.HTTPError("pool failure"), ExchangeUnavailableError),
    (urllib3.exceptions.ProtocolError("Connection aborted."), ExchangeUnavailableError),
    (urllib3.exceptions.LocationParseError("https://http://host"), ConfigError),
    # the SDK itself
    (
        multiprocessing.AuthenticationError("Unauthenticated request to private endpoint"),
        MissingCredentialsError,
    ),
    (Exception("Could not deserialize key data. Are you sure you generated your key"), AuthenticationError),
    # malformed payloads: json, and the SDK's response classes choking on nulls / missing keys
    (json.JSONDecodeError("Expecting value", "", 0), ExchangeProtocolError),
    (
        TypeError("OrderConfiguration() argument after ** must be a mapping, not NoneType"),
        ExchangeProtocolError,
    ),
    (KeyError("order_id"), ExchangeProtocolError),
    (AttributeError("'dict' object has no attribute 'order_id'"), ExchangeProtocolError),
    (ValueError("bad value"), ExchangeProtocolError),
    (IndexError("list index out of range"), ExchangeProtocolError),
    (InvalidOperation("decimal"), ExchangeProtocolError),
    # the OS: a socket timeout that escaped, a missing CA bundle / key file, anything else
    (TimeoutError("timed out"), ExchangeUnavailableError),
    (FileNotFoundError(2, "No such file or directory", "/missing/ca.pem"), ConfigError),
    (RuntimeError("something else entirely"), ExchangeProtocolError),
]


def _ids(case: tuple[Exception, type[PerpsBotError]]) -> str:
    return type(case[0]).__module__.split(".")[0] + "." + type(case[0]).__name__


@pytest.mark.parametrize("exc,expected", VENDOR_EXCEPTIONS, ids=[_ids(c) for c in VENDOR_EXCEPTIONS])
def test_every_vendor_exception_maps_to_its_class(exc: Exception, expected: type[PerpsBotError]) -> None:
    with pytest.raises(PerpsBotError) as caught, sdk_errors("list orders"):
        raise exc
    assert type(caught.value) is expected
    assert caught.value.__cause__ is exc
    message = str(caught.value)
    assert message.startswith("list orders: ")
    assert "\n" not in message and len(message) <= 400


def test_the_table_covers_every_requests_and_sdk_exception_class() -> None:
    covered = {type(exc) for exc, _ in VENDOR_EXCEPTIONS}
    requests_classes = {
        cls
        for cls in vars(rex).values()
        if inspect.isclass(cls) and issubclass(cls, Exception) and not issubclass(cls, Warning)
    }
    sdk_classes = {
        cls for cls in vars(rest_base).values() if inspect.isclass(cls) and issubclass(cls, BaseException)
    }
    assert requests_classes - covered == set()
    assert sdk_classes - covered == set()


def _http_error(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> requests.HTTPError:
    """The exact HTTPError the SDK raises for this answer (via its own ``handle_exception``)."""
    response = make_response(status, body if body is not None else {"error": "X", "message": "m"}, headers)
    with pytest.raises(requests.HTTPError) as caught:
        rest_base.handle_exception(response)
    return caught.value


@pytest.mark.parametrize(
    "status,order_path,expected",
    [
        (400, True, InvalidOrderError),
        (400, False, ExchangeProtocolError),
        (401, False, AuthenticationError),
        (403, False, PermissionDeniedError),
        (404, False, NotFoundError),
        (408, False, ExchangeUnavailableError),
        (409, False, ExchangeProtocolError),
        (422, True, InvalidOrderError),
        (429, False, RateLimitedError),
        (500, False, ExchangeUnavailableError),
        (502, False, ExchangeUnavailableError),
        (503, True, ExchangeUnavailableError),
        (504, False, ExchangeUnavailableError),
    ],
)
def test_http_status_maps(status: int, order_path: bool, expected: type[PerpsBotError]) -> None:
    error = translate(_http_error(status), "create order", order_path=order_path)
    assert type(error) is expected
    assert f"HTTP {status}" in str(error)


def test_403_missing_scopes_and_error_body_are_summarised() -> None:
    body = {"error": "PERMISSION_DENIED", "error_details": "Missing required scopes", "message": "no trade"}
    response = make_response(403, text=json.dumps(body, separators=(",", ":")))
    with pytest.raises(requests.HTTPError) as caught:
        rest_base.handle_exception(response)
    error = translate(caught.value, "create order")
    assert isinstance(error, PermissionDeniedError)
    assert "PERMISSION_DENIED" in str(error) and "Missing required scopes" in str(error)


def test_429_reads_retry_after_from_the_reset_header() -> None:
    error = translate(
        _http_error(429, headers={"x-ratelimit-reset": "2", "x-ratelimit-remaining": "0"}), "op"
    )
    assert isinstance(error, RateLimitedError)
    assert error.retry_after_seconds == 2.0
    assert translate(_http_error(429), "op").retry_after_seconds is None  # type: ignore[attr-defined]


def test_retry_after_accepts_a_delay_or_an_absolute_time() -> None:
    assert retry_after_seconds({"x-ratelimit-reset": "1.5"}) == 1.5
    assert retry_after_seconds({"x-ratelimit-reset": "1700000010"}, now=1_700_000_000.0) == 10.0
    assert retry_after_seconds({"x-ratelimit-reset": "1600000000"}, now=1_700_000_000.0) == 0.0
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"x-ratelimit-reset": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_non_json_error_body_still_gives_a_one_line_message() -> None:
    response = make_response(502, text="<html>\n<body>Bad gateway</body>\n</html>")
    with pytest.raises(requests.HTTPError) as caught:
        rest_base.handle_exception(response)
    error = translate(caught.value, "get order")
    assert isinstance(error, ExchangeUnavailableError)
    assert "\n" not in str(error) and "Bad gateway" in str(error)


def test_our_own_errors_pass_through_untouched() -> None:
    original = SizeError("BTC-USD: size 0.000001 is below the minimum 0.0001")
    with pytest.raises(SizeError) as caught, sdk_errors("create order"):
        raise original
    assert caught.value is original


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1)])
def test_cancellation_and_interrupts_are_never_caught(exc: BaseException) -> None:
    with pytest.raises(type(exc)), sdk_errors("list orders"):
        raise exc


def test_secrets_never_reach_the_message() -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrZXkifQ.c2lnbmF0dXJl"
    masker = SecretMasker([API_KEY, PEM])
    vendor = Exception(f"key {API_KEY} secret {PEM} header Authorization: Bearer {jwt}")
    error = translate(vendor, "create order", masker)
    text = str(error)
    assert API_KEY not in text and PEM not in text and jwt not in text
    assert "BEGIN EC PRIVATE KEY" not in text and "MHcCAQEE" not in text
    assert "****" in text and "\n" not in text
    # even without a masker a PEM block and a JWT are stripped
    bare = str(translate(ValueError(f"{PEM} {jwt}"), "op"))
    assert "PRIVATE KEY-----" not in bare and jwt not in bare


def test_secret_in_an_http_error_body_is_masked() -> None:
    masker = SecretMasker([API_KEY])
    error = translate(
        _http_error(401, {"error": "UNAUTHENTICATED", "message": f"bad key {API_KEY}"}), "op", masker
    )
    assert isinstance(error, AuthenticationError)
    assert API_KEY not in str(error) and API_KEY[-4:] in str(error)


def test_long_messages_are_bounded() -> None:
    error = translate(ValueError("x" * 5000), "op")
    assert len(str(error)) <= 400


@pytest.mark.parametrize(
    "reasons,expected,reason",
    [
        (["INSUFFICIENT_FUND", "PREVIEW_INSUFFICIENT_FUND"], InsufficientFundsError, "INSUFFICIENT_FUND"),
        (["UNKNOWN_FAILURE_REASON", "PREVIEW_INSUFFICIENT_FUNDS_FOR_FUTURES"], InsufficientFundsError, None),
        (["UNKNOWN_FAILURE_REASON", "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY"], OrderRejectedError, None),
        (["UNKNOWN_FAILURE_REASON", None, ""], OrderRejectedError, "UNKNOWN_FAILURE_REASON"),
        ([], OrderRejectedError, "UNKNOWN_FAILURE_REASON"),
        (["ONLY_OPEN_ORDERS_CAN_BE_EDITED"], OrderRejectedError, "ONLY_OPEN_ORDERS_CAN_BE_EDITED"),
    ],
)
def test_business_failures_map_to_order_rejected(
    reasons: list[str | None], expected: type[OrderRejectedError], reason: str | None
) -> None:
    error = order_rejection("create order BTC-USD", reasons, "Insufficient balance\nin source account")
    assert type(error) is expected
    specific = [r for r in reasons if r and not r.startswith("UNKNOWN")]
    assert error.reason == (reason or specific[0])
    assert "\n" not in str(error)
