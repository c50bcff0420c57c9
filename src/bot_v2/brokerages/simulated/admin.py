"""Control routes: the in-process ``SimulatorControl`` switches over the REST server, for a standalone simulator.

``POST /__simulator/control/<switch>`` with header ``X-Simulator-Admin-Token: <token>`` and a JSON object of the
switch's arguments (``{}`` or no body when it has none) answers ``{"result": ...}``. The token is generated per run
by the standalone process and printed on its READY line only. The prefix is one the real API never uses; these
requests skip the REST fault switches, the rate limit and the JWT check (the token is their credential).

Errors: a missing or wrong token -> 401 (checked first, so without the token nothing is revealed); an unknown
switch or a bad argument -> 400; another method than POST -> 405. ``RemoteSimulatorControl`` is the client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot_v2.brokerages.simulated.malform import KINDS as MALFORMED_KINDS
from bot_v2.brokerages.simulated.server import Handler, error_response

if TYPE_CHECKING:
    from bot_v2.brokerages.simulated.runner import SimulatorControl

__all__ = ["ADMIN_PREFIX", "ADMIN_TOKEN_HEADER", "SWITCHES", "admin_middleware"]

log = logging.getLogger(__name__)
ADMIN_PREFIX = "/__simulator/control/"
ADMIN_TOKEN_HEADER = "X-Simulator-Admin-Token"
_REQUIRED = object()


class BadArgument(ValueError):
    pass


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadArgument(f"expected an integer, got {value!r}")


def _count(value: Any) -> int:
    n = _int(value)
    if n < 0:
        raise BadArgument(f"expected a count >= 0, got {n}")
    return n


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadArgument(f"expected a number, got {value!r}")
    if value < 0:
        raise BadArgument(f"expected a number >= 0, got {value}")
    return float(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else _float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadArgument(f"expected true or false, got {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadArgument(f"expected a non-empty string, got {value!r}")
    return value


def _price(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadArgument(f"expected a decimal string, got {value!r}")
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise BadArgument(f"expected a decimal string, got {value!r}") from None
    if not price.is_finite() or price <= 0:
        raise BadArgument(f"expected a positive price, got {value!r}")
    return price


def _status(value: Any) -> int:
    status = _int(value)
    if not 500 <= status <= 599:
        raise BadArgument(f"expected a 5xx status, got {status}")
    return status


def _close_code(value: Any) -> int:
    code = _int(value)
    if not 1000 <= code <= 4999:
        raise BadArgument(f"expected a WebSocket close code 1000..4999, got {code}")
    return code


def _malformed_kind(value: Any) -> str:
    kind = _str(value)
    if kind != "random" and kind not in MALFORMED_KINDS:
        raise BadArgument(f"expected one of {', '.join((*MALFORMED_KINDS, 'random'))}, got {kind!r}")
    return kind


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    parse: Callable[[Any], Any]
    default: Any = _REQUIRED


#: switch -> its arguments; each is the ``SimulatorControl`` method of that name, with the same defaults.
SWITCHES: dict[str, tuple[Param, ...]] = {
    "set_price": (Param("symbol", _str), Param("price", _price)),
    "advance": (Param("steps", _count, 1),),
    "price": (Param("symbol", _str),),
    "set_ticking": (Param("enabled", _bool),),
    "set_latency": (Param("seconds", _float),),
    "fail_next": (Param("n", _count), Param("status", _status, 503)),
    "drop_next": (Param("n", _count),),
    "lose_acks_next": (Param("n", _count), Param("land_after_seconds", _float, 0.0)),
    "malformed_next": (Param("n", _count), Param("kind", _malformed_kind, "random"), Param("seed", _int, 0)),
    "set_rate_limit": (Param("per_second", _optional_float),),
    "reset_faults": (),
    "close_websockets": (Param("code", _close_code, 1011),),
    "refuse_websockets": (Param("refusing", _bool, True),),
    "stall_websockets": (Param("stalled", _bool, True),),
    "skip_websocket_sequence": (Param("n", _count, 1),),
    "websocket_connections": (),
    "register_key": (Param("name", _str), Param("public_pem", _str)),
}


def parse_arguments(switch: str, body: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``switch`` from a JSON object; ``BadArgument`` for unknown, missing or bad ones."""
    params = SWITCHES[switch]
    unknown = sorted(set(body) - {p.name for p in params})
    if unknown:
        raise BadArgument(f"{switch} takes no argument {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for param in params:
        if param.name in body:
            try:
                kwargs[param.name] = param.parse(body[param.name])
            except BadArgument as exc:
                raise BadArgument(f"{switch}: {param.name}: {exc}") from None
        elif param.default is _REQUIRED:
            raise BadArgument(f"{switch} needs {param.name}")
    return kwargs


def _json_result(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def admin_middleware(token: str, control: Callable[[], SimulatorControl]) -> Any:
    """A middleware answering the control routes itself (``control()`` gives the service's control); every other
    request goes on to the REST stack unchanged."""
    expected = token.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        given = request.headers.get(ADMIN_TOKEN_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            log.info("simulator control: refused a request without the admin token")
            return error_response(401, "UNAUTHENTICATED", "missing or wrong admin token")
        switch = request.path.removeprefix(ADMIN_PREFIX)
        if switch not in SWITCHES:
            return error_response(400, "UNKNOWN_SWITCH", f"unknown control switch {switch!r}")
        if request.method != "POST":
            return error_response(405, "METHOD_NOT_ALLOWED", "control switches take POST")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return error_response(400, "INVALID_ARGUMENT", "the body is not JSON")
        if not isinstance(body, dict):
            return error_response(400, "INVALID_ARGUMENT", "the body must be a JSON object")
        try:
            kwargs = parse_arguments(switch, body)
        except BadArgument as exc:
            return error_response(400, "INVALID_ARGUMENT", str(exc))
        method = getattr(control(), switch)
        try:
            # From a worker thread, as an in-process caller would: the control waits for its work on this loop.
            result = await asyncio.to_thread(method, **kwargs)
        except KeyError as exc:  # an unknown product
            return error_response(400, "INVALID_ARGUMENT", f"{switch}: unknown {exc}")
        except ValueError as exc:
            return error_response(400, "INVALID_ARGUMENT", f"{switch}: {exc}")
        log.info("simulator control: %s", switch)
        return web.json_response({"result": _json_result(result)})

    return middleware
