"""Shared by the state benchmarks: throwaway Redis + PostgreSQL (or REDIS_URL / DATABASE_URL), and the JSON
file every benchmark writes."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.fixtures.services import PostgresServer, RedisServer  # noqa: E402


@contextmanager
def state_servers() -> Iterator[tuple[str, str, bool]]:
    """Yield (redis_url, database_url, throwaway) -- throwaway servers unless the environment names real ones."""
    servers: list[Any] = []
    redis_url, database_url = os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")
    try:
        if not redis_url:
            redis = RedisServer()
            redis.start()
            servers.append(redis)
            redis_url = redis.url
        if not database_url:
            postgres = PostgresServer()
            postgres.start()
            servers.append(postgres)
            database_url = postgres.url
        yield redis_url, database_url, bool(servers)
    finally:
        for server in reversed(servers):
            server.cleanup() if isinstance(server, PostgresServer) else server.stop()


def write_results(output: Path, results: list[dict[str, Any]], throwaway: bool) -> None:
    """Write ``{"meta": ..., "results": ...}`` to ``output`` and say where."""
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "postgres": "throwaway cluster, fsync=off" if throwaway else "DATABASE_URL",
        "when": datetime.now(UTC).isoformat(),
    }
    output.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {output}")
