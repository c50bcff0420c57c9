"""COLD tier in a local directory (the dev profile default); file I/O runs in a worker thread."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from bot_v2.errors import StateIntegrityError, StateUnavailableError
from bot_v2.state.keys import KeySpace
from bot_v2.state.tiers.cold import ObjectInfo, ObjectKind, Upload


class DirectoryColdTier:
    """Segments under ``<root>/<bot_id>/segments/`` and checkpoints under ``<root>/<bot_id>/checkpoints/``,
    written to a temp file, fsync'd, then renamed."""

    name = "directory"

    def __init__(self, root: Path, keyspace: KeySpace) -> None:
        self._dir = root / keyspace.bot_id / "segments"
        self._checkpoints = root / keyspace.bot_id / "checkpoints"

    def __repr__(self) -> str:
        return f"DirectoryColdTier(dir={str(self._dir)!r})"

    async def connect(self) -> None:
        try:
            await asyncio.to_thread(self._dir.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(self._checkpoints.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateUnavailableError(f"cold directory {self._dir}: {exc}") from None

    async def probe(self) -> None:
        await self.connect()

    @staticmethod
    def _write_file(target: Path, data: bytes) -> None:
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)

    async def put_segment(self, name: str, data: bytes) -> str | None:
        try:
            await asyncio.to_thread(self._write_file, self._dir / name, data)
        except OSError as exc:
            raise StateUnavailableError(f"cold directory {self._dir}: write {name} failed: {exc}") from None
        return None  # no store answer to check: a spool sync reads the file back (head_segment)

    async def upload_file(
        self, kind: ObjectKind, name: str, path: Path, then: Callable[[str], None]
    ) -> Upload:
        target = (self._dir if kind == "segment" else self._checkpoints) / name

        def upload() -> Upload:
            data = path.read_bytes()  # a local failure of the source stays an OSError
            try:
                self._write_file(target, data)
            except OSError as exc:
                raise StateUnavailableError(
                    f"cold directory {target.parent}: write {name} failed: {exc}"
                ) from None
            # no store answer to check (then is not called): the spool sync reads the file back (head_*)
            return Upload(len(data), hashlib.sha256(data).hexdigest(), None, False)

        return await asyncio.to_thread(upload)

    async def get_segment(self, name: str) -> bytes:
        try:
            return await asyncio.to_thread((self._dir / name).read_bytes)
        except FileNotFoundError:
            raise StateIntegrityError(f"cold segment {name!r} is missing from {self._dir}") from None
        except OSError as exc:
            raise StateUnavailableError(f"cold directory {self._dir}: read {name} failed: {exc}") from None

    async def delete_segment(self, name: str) -> None:
        try:
            await asyncio.to_thread((self._dir / name).unlink, missing_ok=True)
        except OSError as exc:
            raise StateUnavailableError(f"cold directory {self._dir}: delete {name} failed: {exc}") from None

    @staticmethod
    def _head(path: Path) -> ObjectInfo | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return ObjectInfo(len(data), hashlib.sha256(data).hexdigest())

    async def head_segment(self, name: str) -> ObjectInfo | None:
        try:
            return await asyncio.to_thread(self._head, self._dir / name)
        except OSError as exc:
            raise StateUnavailableError(f"cold directory {self._dir}: head {name} failed: {exc}") from None

    async def head_checkpoint(self, name: str) -> ObjectInfo | None:
        try:
            return await asyncio.to_thread(self._head, self._checkpoints / name)
        except OSError as exc:
            raise StateUnavailableError(
                f"cold directory {self._checkpoints}: head {name} failed: {exc}"
            ) from None

    def _stats(self) -> tuple[int, int]:
        files = [p for p in self._dir.glob("*.seg.gz") if p.is_file()]
        return len(files), sum(p.stat().st_size for p in files)

    async def stats(self) -> tuple[int, int]:
        try:
            return await asyncio.to_thread(self._stats)
        except OSError as exc:
            raise StateUnavailableError(f"cold directory {self._dir}: {exc}") from None

    async def put_checkpoint(self, name: str, data: bytes) -> str | None:
        try:
            await asyncio.to_thread(self._write_file, self._checkpoints / name, data)
        except OSError as exc:
            raise StateUnavailableError(
                f"cold directory {self._checkpoints}: write {name} failed: {exc}"
            ) from None
        return None

    async def get_checkpoint(self, name: str) -> bytes:
        try:
            return await asyncio.to_thread((self._checkpoints / name).read_bytes)
        except FileNotFoundError:
            raise StateIntegrityError(
                f"checkpoint object {name!r} is missing from {self._checkpoints}"
            ) from None
        except OSError as exc:
            raise StateUnavailableError(
                f"cold directory {self._checkpoints}: read {name} failed: {exc}"
            ) from None

    async def delete_checkpoint(self, name: str) -> None:
        try:
            await asyncio.to_thread((self._checkpoints / name).unlink, missing_ok=True)
        except OSError as exc:
            raise StateUnavailableError(
                f"cold directory {self._checkpoints}: delete {name} failed: {exc}"
            ) from None

    def _list_checkpoints(self) -> list[str]:
        return sorted(
            p.name for p in self._checkpoints.iterdir() if p.is_file() and not p.name.startswith(".")
        )

    async def list_checkpoints(self) -> list[str]:
        try:
            return await asyncio.to_thread(self._list_checkpoints)
        except OSError as exc:
            raise StateUnavailableError(f"cold directory {self._checkpoints}: {exc}") from None

    async def close(self) -> None:
        """Nothing to release."""
