"""New PostgreSQL connections for a multi-host ``DATABASE_URL`` (a primary and its replicas).

asyncpg understands ``postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write`` but tries the hosts
one after the other within ONE connect timeout. A failed-over primary that is partitioned or frozen (it
accepts the TCP connection, or the SYN is dropped, and answers nothing) eats that whole timeout on every
attempt, so the promoted replica behind it is never reached. ``connect_any_host`` -- the ``connect`` of the
WARM tier's pool -- asks every host at once (each with the full timeout and the URL's
``target_session_attrs``) and keeps the first connection that qualifies; the others are closed. A one-host URL
is a plain ``asyncpg.connect``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def split_hosts(dsn: str) -> list[str]:
    """One URL per host of ``dsn`` (``[dsn]`` when it names one host or is not a URL)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return [dsn]
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    hosts = [h for h in hostlist.split(",") if h]
    if len(hosts) < 2:
        return [dsn]
    return [urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}")) for host in hosts]


async def connect_any_host(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """The first connection any host of ``dsn`` grants (see the module docstring); ``kwargs`` as for
    ``asyncpg.connect`` (the pool passes its own). All failed: the error of a host that answered (e.g. "not
    read-write"), else the first host's."""
    hosts = split_hosts(dsn)
    if len(hosts) == 1:
        return await asyncpg.connect(dsn, **kwargs)
    tasks = [asyncio.ensure_future(asyncpg.connect(host, **kwargs)) for host in hosts]
    winner: asyncpg.Connection | None = None
    errors: list[BaseException] = []
    try:
        for next_done in asyncio.as_completed(tasks):
            try:
                winner = await next_done
            except Exception as exc:
                errors.append(exc)
                continue
            break
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, asyncpg.Connection) and result is not winner:
                with contextlib.suppress(Exception):
                    result.terminate()
    if winner is not None:
        return winner
    answered = [e for e in errors if not isinstance(e, OSError | TimeoutError)]
    raise (answered or errors)[0]
