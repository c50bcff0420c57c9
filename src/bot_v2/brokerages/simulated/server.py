"""The aiohttp application: auth, rate limits, fault switches and error shapes around the routes."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from aiohttp import web

from bot_v2.brokerages.simulated.auth import AuthError, KeyRegistry
from bot_v2.brokerages.simulated.engine import Engine
from bot_v2.brokerages.simulated.malform import malform

__all__ = [
    "API_PREFIX",
    "Faults",
    "Handler",
    "ServerState",
    "TokenBucket",
    "build_app",
    "error_response",
]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v3/brokerage"
PUBLIC_PATHS = (f"{API_PREFIX}/time", f"{API_PREFIX}/market/")
CREATE_ORDER_PATH = f"{API_PREFIX}/orders"
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 429: 8, 500: 13, 502: 14, 503: 14, 504: 4}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE_KEY: web.AppKey[ServerState] = web.AppKey("sim_state")


def error_response(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A grpc-gateway style error body, as Coinbase sends for non-200 answers."""
    body = {
        "error": error,
        "code": GRPC_CODES.get(status, 2),
        "message": message,
        "details": [],
        "error_details": message,
    }
    return web.json_response(body, status=status, headers=headers)


class TokenBucket:
    """Per-caller token buckets holding at most ``rate`` tokens, refilled at ``rate`` per second."""

    def __init__(self, rate_per_second: float | None) -> None:
        self.rate = rate_per_second
        self._buckets: dict[str, tuple[float, float]] = {}

    def set_rate(self, rate_per_second: float | None) -> None:
        self.rate = rate_per_second
        self._buckets.clear()

    def take(self, caller: str, now: float) -> tuple[bool, dict[str, str]]:
        """Spend one token for ``caller``; return (allowed, x-ratelimit-* headers)."""
        if not self.rate or self.rate <= 0:
            return True, {}
        capacity = max(self.rate, 1.0)
        tokens, last = self._buckets.get(caller, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[caller] = (tokens, now)
        reset = (capacity - tokens) / self.rate
        headers = {
            "x-ratelimit-limit": str(int(capacity)),
            "x-ratelimit-remaining": str(int(tokens)),
            "x-ratelimit-reset": f"{reset:.3f}",
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, int((1.0 - tokens) / self.rate + 0.999)))
        return allowed, headers


@dataclass(slots=True)
class Faults:
    """Switches for tests and drills: added latency, forced 5xx answers, dropped connections, lost order acks.

    ``drop_remaining`` drops requests BEFORE they are handled (nothing happens at the exchange);
    ``lost_acks_remaining`` lets the next create-order requests create their order -- ``ack_land_after_seconds``
    after the connection is closed, so a lookup in between does not find it -- and never answers them.
    """

    latency_seconds: float = 0.0
    fail_remaining: int = 0
    fail_status: int = 503
    drop_remaining: int = 0
    lost_acks_remaining: int = 0
    ack_land_after_seconds: float = 0.0
    #: the next ``malformed_remaining`` JSON answers are damaged (``malform.py``: json, missing, nulls, types,
    #: empty or random) after the request was handled
    malformed_remaining: int = 0
    malformed_kind: str = "random"
    malformed_rng: random.Random = field(default_factory=random.Random)

    def reset(self) -> None:
        self.latency_seconds, self.fail_remaining, self.fail_status, self.drop_remaining = 0.0, 0, 503, 0
        self.lost_acks_remaining, self.ack_land_after_seconds = 0, 0.0
        self.malformed_remaining = 0


@dataclass(slots=True)
class ServerState:
    engine: Engine
    keys: KeyRegistry
    auth_required: bool
    limiter: TokenBucket
    persist: Callable[[], Awaitable[None]]
    hosts: tuple[str, ...] = ()
    publish: Callable[[], Awaitable[None]] | None = None
    faults: Faults = field(default_factory=Faults)
    previews: dict[str, float] = field(default_factory=dict)


def state_of(request: web.Request) -> ServerState:
    return request.app[STATE_KEY]


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON body as an object ({} when absent); a 400 for anything unparsable."""
    if not request.body_exists:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps(
                {
                    "error": "INVALID_ARGUMENT",
                    "code": 3,
                    "message": "invalid JSON body",
                    "details": [],
                    "error_details": "invalid JSON body",
                }
            ),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        return {}
    return body


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    faults = state_of(request).faults
    if faults.latency_seconds > 0:
        await asyncio.sleep(faults.latency_seconds)
    if faults.drop_remaining > 0:
        faults.drop_remaining -= 1
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    if faults.lost_acks_remaining > 0 and request.method == "POST" and request.path == CREATE_ORDER_PATH:
        faults.lost_acks_remaining -= 1
        await _create_without_answer(request, handler, faults.ack_land_after_seconds)
    if faults.fail_remaining > 0:
        faults.fail_remaining -= 1
        status = faults.fail_status
        return error_response(status, "INTERNAL" if status == 500 else "UNAVAILABLE", "simulated fault")
    response = await handler(request)
    if (
        faults.malformed_remaining > 0
        and isinstance(response, web.Response)
        and isinstance(response.body, bytes)
    ):
        faults.malformed_remaining -= 1
        response.body = malform(response.body, faults.malformed_kind, faults.malformed_rng)
    return response


async def _create_without_answer(
    request: web.Request, handler: Handler, land_after_seconds: float
) -> NoReturn:
    """Close the connection, then (after ``land_after_seconds``) handle the request: the order exists at the
    exchange but its creator never hears of it. aiohttp does not cancel a handler whose client went away."""
    await request.read()  # the body is cached before the connection goes
    if request.transport is not None:
        request.transport.abort()
    if land_after_seconds > 0:
        await asyncio.sleep(land_after_seconds)
    await handler(request)
    raise asyncio.CancelledError


@web.middleware
async def auth_and_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = state_of(request)
    path = request.path
    public = path == PUBLIC_PATHS[0] or path.startswith(PUBLIC_PATHS[1]) or not path.startswith(API_PREFIX)
    caller = f"ip:{request.remote}"
    if not public:
        try:
            caller = state.keys.verify(
                request.headers.get("Authorization"), request.method, state.hosts, path
            )
        except AuthError as exc:
            if state.auth_required:
                log.info("simulator rejected credentials: %s", exc)
                return web.Response(status=401, text="Unauthorized")
    allowed, headers = state.limiter.take(caller, time.monotonic())
    if not allowed:
        return error_response(429, "RATE_LIMIT_EXCEEDED", "Too many requests", headers)
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        response = error_response(404, "NOT_FOUND", f"no route for {request.method} {path}")
    except web.HTTPMethodNotAllowed:
        response = error_response(405, "NOT_FOUND", f"method {request.method} not allowed on {path}")
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        response = error_response(exc.status, "INVALID_ARGUMENT", exc.text or exc.reason)
    if request.method != "GET" and state.engine.dirty:
        await state.persist()
        if state.publish is not None:
            await state.publish()
    response.headers.update(headers)
    return response


def build_app(
    state: ServerState,
    add_routes: Callable[[web.Application], None],
    outer_middlewares: Sequence[Any] = (),
) -> web.Application:
    """The REST app; ``outer_middlewares`` run before the fault switches and the auth (the control routes)."""
    app = web.Application(middlewares=[*outer_middlewares, fault_middleware, auth_and_limit_middleware])
    app[STATE_KEY] = state
    add_routes(app)
    return app
