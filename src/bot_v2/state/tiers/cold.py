"""The COLD tier port: immutable segment objects, one per batch (never one object per key)."""

from __future__ import annotations

import gzip
import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

from bot_v2.errors import StateIntegrityError
from bot_v2.state.models import ColdRecord

_SEGMENT_FORMAT = 1


class ObjectInfo(NamedTuple):
    """What the store says about one stored object: its size and, if the store keeps one, the SHA-256 (hex)
    of its bytes. Used to verify an upload without reading the object back."""

    size: int
    sha256: str | None


ObjectKind = Literal["segment", "checkpoint"]


class Upload(NamedTuple):
    """What ``ColdTier.upload_file`` did with one local file: its size and SHA-256 (hex), the store's answer
    (as ``put_*`` returns it) and whether that answer proved the bytes, so that ``then`` ran."""

    size: int
    sha256: str
    stored: str | None
    proven: bool


class ColdTier(Protocol):
    """Stores whole segments under this bot's prefix. Calls never block the event loop."""

    name: str

    async def connect(self) -> None:
        """Prove the store is reachable (and the bucket / directory exists)."""

    async def probe(self) -> None:
        """Ask once, cheaply, whether the store answers (no retries: the caller probes again soon)."""

    async def put_segment(self, name: str, data: bytes) -> str | None:
        """Write one segment object atomically (readers see all of it or nothing). Return the SHA-256 (hex)
        of the bytes the store confirms it stored, if its answer proves them (S3: the checksum it verified
        on arrival, or the ETag of a single-part upload), else None: the spool sync then asks ``head_*``."""

    async def get_segment(self, name: str) -> bytes:
        """Read a segment; raise ``StateIntegrityError`` if it does not exist."""

    async def delete_segment(self, name: str) -> None:
        """Delete a segment (missing is fine)."""

    async def stats(self) -> tuple[int, int]:
        """Return (segment count, total bytes) under this bot's prefix."""

    async def head_segment(self, name: str) -> ObjectInfo | None:
        """Size (and SHA-256 if known) of a stored segment, None if it does not exist."""

    async def head_checkpoint(self, name: str) -> ObjectInfo | None:
        """Size (and SHA-256 if known) of a stored checkpoint object, None if it does not exist."""

    async def put_checkpoint(self, name: str, data: bytes) -> str | None:
        """Write one checkpoint object atomically (beside the segments, under ``checkpoints/``); return as
        ``put_segment``."""

    async def upload_file(
        self, kind: ObjectKind, name: str, path: Path, then: Callable[[str], None]
    ) -> Upload:
        """Store the bytes of the local file ``path`` as the segment / checkpoint ``name`` (as ``put_*``) and,
        if the store's answer proves them (it names their SHA-256), call ``then(sha256)``: all in ONE job of
        the tier's worker thread (the spool sync's one thread hop per object; ``then`` moves the file away).
        Raises ``OSError`` (``FileNotFoundError``: the file is gone) for the local file, as ``put_*`` for the
        store; ``then``'s errors propagate."""

    async def get_checkpoint(self, name: str) -> bytes:
        """Read a checkpoint object; raise ``StateIntegrityError`` if it does not exist."""

    async def delete_checkpoint(self, name: str) -> None:
        """Delete a checkpoint object (missing is fine)."""

    async def list_checkpoints(self) -> list[str]:
        """Names of this bot's checkpoint objects, sorted."""

    async def close(self) -> None:
        """Release clients and worker threads."""


def new_segment_name(now: datetime) -> str:
    """A unique, time-ordered segment name."""
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(6)}.seg.gz"


def encode_segment(bot_id: str, records: Sequence[ColdRecord]) -> bytes:
    """Serialize records (value bytes are canonical UTF-8 JSON, embedded as text) and gzip them."""
    body = {
        "format": _SEGMENT_FORMAT,
        "bot_id": bot_id,
        "records": [
            {
                "key": r.key,
                "version": r.version,
                "checksum": r.checksum,
                "category": r.category,
                "value": r.value.decode("utf-8"),
            }
            for r in records
        ],
    }
    return gzip.compress(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), mtime=0)


def decode_segment(name: str, data: bytes) -> dict[str, ColdRecord]:
    """Parse a segment into key -> record; a malformed segment is an integrity error naming it."""
    try:
        body = json.loads(gzip.decompress(data))
        if body.get("format") != _SEGMENT_FORMAT:
            raise ValueError(f"unknown segment format {body.get('format')!r}")
        return {
            r["key"]: ColdRecord(
                r["key"], r["version"], r["checksum"], r["category"], r["value"].encode("utf-8")
            )
            for r in body["records"]
        }
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateIntegrityError(f"cold segment {name!r}: malformed: {exc}") from None
