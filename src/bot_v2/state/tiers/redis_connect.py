"""Where the HOT tier's Redis is: one URL, or a master named by Redis Sentinel (``REDIS_SENTINELS``).

With Sentinel the client asks the sentinels for the master's address whenever it opens a connection, so the
bot follows a promotion on its own. Replication is asynchronous: the replica that was promoted may have
missed the last writes the old master acknowledged, so its copies can be OLDER than WARM. The bot must never
serve them. ``FollowingPool`` therefore treats a change of master as an outage of HOT: every connection to a
master other than the one the tier accepted fails with ``MasterChangedError`` (which redis-py does not retry)
until the tier's probe accepts the new master (``accept_master``), and that probe is followed by the hot-set
restore from WARM (``hot_sync``), which rewrites and verifies every cached key before HOT serves a read again.

Every client made here sends commands through ``CancelSafeSend``: redis-py bounds a send with
``asyncio.wait_for``, which on Python 3.11 returns normally when the calling task is cancelled just as the send
completes (CPython bpo-42130); the cancel is then lost for good and a writer loop keeps writing after
``task.cancel()``. The send is bounded with ``asyncio.timeout`` instead (Python 3.12's ``wait_for``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from bot_v2.errors import ConfigError


class MasterChangedError(redis.exceptions.RedisError):
    """Sentinel names a master other than the one the tier accepted (a promotion): HOT is out until the
    probe accepts it and the hot set is restored from WARM. Not a ConnectionError, so no retry hides it."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """One Redis URL, or ``sentinels`` + ``master`` (with the data nodes' ``password`` / ``db`` and the
    sentinels' own ``sentinel_password``). Passwords never appear in ``repr`` or ``describe``."""

    url: str | None = field(default=None, repr=False)
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    db: int = 0

    def __post_init__(self) -> None:
        if bool(self.sentinels) != bool(self.master):
            raise ConfigError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both or neither")
        if bool(self.url) == bool(self.sentinels):
            raise ConfigError("redis: set either REDIS_URL or REDIS_SENTINELS + REDIS_SENTINEL_MASTER")

    @property
    def sentinel(self) -> bool:
        return bool(self.sentinels)

    def describe(self) -> str:
        """For logs and errors: the URL (its password masked by the callers' ``mask_url``) or
        ``sentinel://h1:p1,h2:p2/<master>/<db>`` (no password in it at all)."""
        if not self.sentinel:
            return self.url or ""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel://{hosts}/{self.master}/{self.db}"

    def client(self, **kwargs: Any) -> aioredis.Redis:
        """A client (no connection opened yet); ``kwargs`` are redis-py connection options."""
        if not self.sentinel:
            return _cancel_safe(aioredis.Redis.from_url(self.url or "", **kwargs))
        sentinel_kwargs: dict[str, Any] = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
        # a sentinel that is down is skipped at once for the next one (redis-py's default client retries 3
        # times with a backoff: ~3.5 s per discovery while the first sentinel listed is down)
        sentinel_kwargs["retry"] = Retry(NoBackoff(), 0)
        if self.sentinel_password:
            sentinel_kwargs["password"] = self.sentinel_password
        manager = Sentinel(  # type: ignore[no-untyped-call]
            list(self.sentinels), sentinel_kwargs=sentinel_kwargs, password=self.password, db=self.db
        )
        for sentinel in manager.sentinels:  # the master's address is asked for on the write path too
            _cancel_safe(sentinel)
        return _cancel_safe(
            manager.master_for(
                self.master or "", redis_class=aioredis.Redis, connection_pool_class=FollowingPool, **kwargs
            )
        )


class CancelSafeSend(AbstractConnection):
    """``send_packed_command`` as redis-py's, bounded by ``asyncio.timeout`` instead of ``asyncio.wait_for``
    (see the module docstring): a cancel that arrives while the send completes is raised, never swallowed."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            async with asyncio.timeout(self.socket_timeout or None):
                await self._send_packed_command(command)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise redis.exceptions.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise redis.exceptions.ConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:  # cancelled mid-send: part of the command may be on the wire
            await self.disconnect(nowait=True)
            raise


def _cancel_safe(client: aioredis.Redis) -> aioredis.Redis:
    """``client`` with its pool's connection class (plain, TLS, unix socket, Sentinel-managed) sending
    through ``CancelSafeSend``; before any connection is opened."""
    pool = client.connection_pool
    base = pool.connection_class
    if not issubclass(base, CancelSafeSend):
        pool.connection_class = type(f"CancelSafe{base.__name__}", (CancelSafeSend, base), {})
    return client


class FollowingPool(SentinelConnectionPool):
    """A Sentinel pool that refuses a new master until it is accepted (see the module docstring)."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        self.accepted: tuple[str, int] | None = None
        self.accept_next = True  # the first master seen is accepted (connect)
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]

    async def get_master_address(self) -> tuple[str, int]:
        address: tuple[str, int] = await super().get_master_address()  # type: ignore[no-untyped-call]
        if self.accept_next:
            self.accepted, self.accept_next = address, False
        elif address != self.accepted:
            raise MasterChangedError(
                f"sentinel master {self.service_name!r} moved from {_addr(self.accepted)} to {_addr(address)}"
                " (promotion): HOT is restored from WARM before it serves again"
            )
        return address

    async def aclose(self) -> None:
        """Close the pool and the sentinels' own connections."""
        try:
            await super().aclose()
        finally:
            await self.sentinel_manager.aclose()


def _addr(address: tuple[str, int] | None) -> str:
    return "?" if address is None else f"{address[0]}:{address[1]}"


def accept_master(client: aioredis.Redis) -> None:
    """Accept whichever master Sentinel names at the next connection (only the HOT probe calls this: the
    hot-set restore from WARM follows it). A no-op for a plain URL."""
    pool = client.connection_pool
    if isinstance(pool, FollowingPool):
        pool.accept_next = True
