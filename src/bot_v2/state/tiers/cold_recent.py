"""Local copies of the COLD segments written since the checkpoint before the last one.

Why: a checkpoint holds every record, COLD bodies included, and it must be possible to take one while the
COLD store (S3) is down (DESIGN.md "Recovery", S3 down). Bodies of spooled segments are in the spool, and every
body written before the newest checkpoint is inside that checkpoint (in WARM, found by key and checksum). What
is left is a COLD record written to S3 after the newest checkpoint and before the outage: only S3 holds it.
``RecentSegments`` keeps a local copy of each segment the COLD store took (written beside the upload; a spooled
segment that was synced is *moved* here instead of deleted), and forgets them once a later checkpoint holds
their records, so the window a checkpoint cannot cover never opens.

Without checkpoints (a tool using the ``StateManager`` alone) nothing would ever forget a copy, so copies
older than ``MAX_AGE_SECONDS`` go anyway, checked every ``_AGE_CHECK_EVERY`` copies kept.

A copy is a cache, not a durable object: it is written without fsync (temp file + rename), named
``<sha256 of its bytes>.<segment name>``, and checked against that digest when read; a copy torn by a crash
is dropped and the reader falls back to the store. Reads of a recent segment are served from here even while
S3 is up (cheaper than a GET; the bytes are the same).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger(__name__)

_FILE = re.compile(r"^([0-9a-f]{64})\.([^/\\]+)$")
_TMP_SUFFIX = ".tmp"
MAX_AGE_SECONDS = 24 * 3600.0
_AGE_CHECK_EVERY = 256


class RecentCopy(NamedTuple):
    path: Path
    sha256: str
    written_at: float  # wall clock (the file's mtime): comparable with a checkpoint's snapshot time


class RecentSegments:
    """Segment name -> verified local copy, for segments written since the checkpoint before the last one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._copies: dict[str, RecentCopy] = {}
        self._kept = 0  # copies added or adopted since the last age check

    def __len__(self) -> int:
        return len(self._copies)

    def _scan(self) -> dict[str, RecentCopy]:
        self.directory.mkdir(parents=True, exist_ok=True)
        copies: dict[str, RecentCopy] = {}
        for path in self.directory.iterdir():
            if path.name.endswith(_TMP_SUFFIX):
                path.unlink(missing_ok=True)
                continue
            match = _FILE.match(path.name)
            if match is not None and path.is_file():
                copies[match[2]] = RecentCopy(path, match[1], path.stat().st_mtime)
        return copies

    async def load(self) -> None:
        """Index the copies a previous process left (they stay until a checkpoint of this one holds them)."""
        try:
            self._copies = await asyncio.to_thread(self._scan)
        except OSError as exc:  # a cache: the bot runs without it
            logger.warning("COLD recent-segment copies in %s unusable: %s", self.directory, exc)

    def _write(self, name: str, data: bytes, sha256: str) -> RecentCopy:
        path = self.directory / f"{sha256}.{name}"
        tmp = path.with_name(f".{path.name}{_TMP_SUFFIX}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return RecentCopy(path, sha256, time.time())

    async def add(self, name: str, data: bytes, sha256: str | None = None) -> None:
        """Keep a copy of a segment the store took. Never raises: without the copy the store still has it."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        try:
            self._copies[name] = await asyncio.to_thread(self._write, name, data, digest)
        except OSError as exc:
            logger.warning("COLD segment %s: local copy not kept in %s: %s", name, self.directory, exc)
            return
        await self._kept_one()

    async def _kept_one(self) -> None:
        self._kept += 1
        if self._kept >= _AGE_CHECK_EVERY:
            self._kept = 0
            await self.forget_before(time.time() - MAX_AGE_SECONDS)

    def move_in(self, source: Path, name: str, sha256: str) -> RecentCopy:
        """Blocking, in any thread, no index change: move the synced spool file ``source`` (verified bytes with
        digest ``sha256``) here as the copy of segment ``name``; ``keep()`` indexes it. Raises ``OSError``."""
        path = self.directory / f"{sha256}.{name}"
        os.replace(source, path)  # same file system (both under the state directory): no copy
        return RecentCopy(path, sha256, path.stat().st_mtime)

    async def keep(self, name: str, copy: RecentCopy) -> None:
        """Index a copy ``move_in()`` made."""
        self._copies[name] = copy
        await self._kept_one()

    async def adopt(self, source: Path, name: str, sha256: str) -> bool:
        """Move a synced spool file here (verified bytes with digest ``sha256``); False if it could not be."""
        try:
            copy = await asyncio.to_thread(self.move_in, source, name, sha256)
        except OSError:
            return False
        await self.keep(name, copy)
        return True

    def _read(self, copy: RecentCopy) -> bytes | None:
        try:
            data = copy.path.read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == copy.sha256 else None

    async def get(self, name: str) -> bytes | None:
        """The segment's bytes if a verified copy is here, else None (a torn copy is dropped)."""
        copy = self._copies.get(name)
        if copy is None:
            return None
        data = await asyncio.to_thread(self._read, copy)
        if data is None and self._copies.get(name) is copy:
            del self._copies[name]
            await asyncio.to_thread(copy.path.unlink, missing_ok=True)
        return data

    async def forget(self, name: str) -> None:
        copy = self._copies.pop(name, None)
        if copy is not None:
            await asyncio.to_thread(copy.path.unlink, missing_ok=True)

    async def forget_before(self, written_before: float) -> int:
        """Drop the copies written before ``written_before`` (wall clock seconds); return how many."""
        old = [(name, copy) for name, copy in self._copies.items() if copy.written_at < written_before]
        for name, _ in old:
            del self._copies[name]

        def unlink() -> None:
            for _, copy in old:
                copy.path.unlink(missing_ok=True)

        if old:
            await asyncio.to_thread(unlink)
        return len(old)
