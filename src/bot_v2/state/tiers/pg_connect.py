"""New PostgreSQL connections for a multi-host ``DATABASE_URL`` (a primary and its replicas).

asyncpg understands ``postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write`` but tries the hosts
one after the other within ONE connect timeout. A failed-over primary that is partitioned or frozen (it
accepts the TCP connection, or the SYN is dropped, and answers nothing) eats that whole timeout on every
attempt, so the promoted replica behind it is never reached. ``connect_any_host`` -- the ``connect`` of the
WARM tier's pool -- asks every host at once (each with the full timeout and the URL's
``target_session_attrs``) and keeps the first connection that qualifies; the others are closed. A one-host URL
is a plain ``asyncpg.connect``.

``ServerWatch`` wraps it and reads, on each new connection, which server it reached (system identifier +
WAL timeline: a promotion starts a new timeline). A change is logged as a WARNING: after a promotion under
asynchronous replication, commits the old primary acknowledged but had not shipped are gone from WARM (HOT
may still hold them), and nothing else would say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bot_v2.monitoring.masking import mask_url

logger = logging.getLogger(__name__)

_IDENTITY_SQL = """
SELECT (SELECT system_identifier FROM pg_control_system())::text,
       substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8),
       coalesce(inet_server_addr()::text, 'local') || ':' || coalesce(inet_server_port(), 0)::text
"""


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


class ServerWatch:
    """The WARM pool's ``connect``: ``connect_any_host`` plus a check of which server each new connection
    reached; ``changes`` counts the switches to another timeline or cluster seen (a promotion, a restore)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.server: tuple[str, str, str] | None = None  # (system identifier, timeline hex, address)
        self.changes = 0

    async def connect(self, dsn: str, **kwargs: Any) -> asyncpg.Connection:
        conn = await connect_any_host(dsn, **kwargs)
        try:
            row = await conn.fetchrow(_IDENTITY_SQL)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            logger.debug("postgresql: server identity not readable (%s): %s", type(exc).__name__, exc)
            return conn  # a standby, or no right to pg_control_system(): the check is skipped
        except BaseException:  # cancelled (or timed out) before the pool got it: nobody else would close it
            conn.terminate()
            raise
        seen = (str(row[0]), str(row[1]), str(row[2]))
        before, self.server = self.server, seen
        if before is not None and before[:2] != seen[:2]:
            self.changes += 1
            what = (
                "another cluster"
                if before[0] != seen[0]
                else f"timeline {int(before[1], 16)} -> {int(seen[1], 16)}"
            )
            logger.warning(
                "postgresql at %s: WARM is now on a promoted or restored server (%s, %s -> %s): commits the old "
                "server acknowledged but had not replicated are lost unless replication was synchronous; HOT may "
                "hold records newer than WARM (docs/RUNBOOK.md 'PostgreSQL primary + streaming replica')",
                mask_url(self._dsn),
                what,
                before[2],
                seen[2],
            )
        return conn
