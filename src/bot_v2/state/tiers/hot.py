"""The HOT tier port: a cache of versioned records (Redis or in-process memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

from bot_v2.errors import StateIntegrityError
from bot_v2.state.codec import checksum
from bot_v2.state.models import HotRecord

_FORMAT = b"1"


class PackedRecord(NamedTuple):
    """A record as HOT stores it (:func:`pack_record` bytes), for restores that move records without building
    them in Python (``WarmTier.hot_page``: the database packs them). ``packed`` is None for a row without a
    body (never cached); ``ttl_ms`` as in ``HotRecord``."""

    key: str
    version: int
    packed: bytes | None
    ttl_ms: int | None = None


class HotTier(Protocol):
    """Keys are relative; the backend applies the bot's namespace. Every multi-key call is one round trip."""

    name: str

    async def connect(self) -> None:
        """Open connections and prove the service answers."""

    async def ping(self) -> None:
        """Prove the service answers (reconnecting if needed); ``StateUnavailableError`` if it does not."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, HotRecord]:
        """Return the cached records of ``keys`` (missing keys absent). One MGET."""

    async def versions(self, keys: Sequence[str]) -> dict[str, tuple[int, str] | None]:
        """Return (version, checksum) of the records HOT holds for ``keys``, from their headers, without
        moving the values (missing keys absent; None for a record whose header is malformed). One round trip.
        For coherence passes that only compare with WARM: the value bytes are not checked here."""

    async def differing(self, records: Sequence[PackedRecord]) -> list[str]:
        """Return the keys of ``records`` whose packed bytes HOT does not hold exactly: another version or
        checksum, other value bytes, malformed, or missing. One round trip (Redis: one MGET, compared in
        Python). For reading back what a restore wrote."""

    async def put_packed(
        self, records: Sequence[PackedRecord], deletes: Sequence[str] = (), *, read_back: bool = False
    ) -> list[str]:
        """Store ``records`` (``packed`` set) with their TTL and delete ``deletes``, unguarded, in one atomic
        round trip: ``apply(replace=True)`` for records WARM packed (the hot-set restore). ``read_back``:
        ``differing(records)`` right after the write, in the same round trip (Redis: an MGET pipelined after
        the EXEC, on the same connection, so it reads what the write left); else []."""

    async def apply(
        self, puts: Sequence[HotRecord], deletes: Sequence[str] = (), *, replace: bool = False
    ) -> int:
        """Store ``puts``, then delete ``deletes``: atomic, one round trip. Return how many puts were refused.

        Every put is version-guarded against the record HOT holds for its key, so a writer that was paused
        (a zombie) and wakes up after a takeover cannot cache an old version over a newer one:

        - nothing held, a malformed record, or an older version: stored with its TTL (no TTL clears any TTL
          the key had; a TTL <= 0 means already expired: the key is deleted);
        - the same version, checksum and value bytes: left as it is, TTL included (the same record);
        - the same version with other bytes: stored. WARM never gives one version to two records unless it
          lost history (a deleted key restarts at version 1; a promoted async replica can lose commits); the
          put is then the record WARM hands out now;
        - a newer version: refused and counted; the held record stays.

        The guard only knows what HOT holds: a key it does not hold (expired, deleted) takes any version.
        Each key appears at most once in ``puts``. ``replace=True`` skips the guard (every put is stored):
        for callers that rewrite HOT from WARM, the truth, under the manager's lock (coherence repair), where
        HOT may hold a higher version that WARM no longer has. A refused put is not an error; the count is
        for metrics ("stale HOT writes rejected") and callers may ignore it. Deletes are unconditional: they
        carry no version, and a delete can only cause a miss, which falls through to WARM.
        """

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Delete ``keys``; return how many existed."""

    def scan(self, pattern: str = "*", page_size: int = 500) -> AsyncIterator[list[str]]:
        """Yield pages of relative keys matching ``pattern`` (SCAN, never KEYS)."""

    async def count(self) -> int:
        """Number of keys in this namespace."""

    async def close(self) -> None:
        """Release connections."""


def pack_record(record: HotRecord) -> bytes:
    """Serialize a record as one string value: ``1 <version> <checksum> <updated_us>\\n<value bytes>``."""
    return pack_header(record) + record.value


def pack_header(record: HotRecord) -> bytes:
    """The header line of :func:`pack_record`, newline included."""
    updated_us = round(record.updated_at.timestamp() * 1_000_000)  # exact (not truncated) microseconds
    return b"%s %d %s %d\n" % (_FORMAT, record.version, record.checksum.encode("ascii"), updated_us)


def pack_headers(records: Sequence[HotRecord]) -> list[bytes]:
    """The header line of :func:`pack_record` for each record, in one pass (a batch's records share their
    ``updated_at``: its microseconds are computed once). For writers that send header and value bytes
    without joining them first (``redis_writes``)."""
    micros: dict[datetime, int] = {}
    out: list[bytes] = []
    for r in records:
        us = micros.get(r.updated_at)
        if us is None:
            us = micros[r.updated_at] = round(r.updated_at.timestamp() * 1_000_000)
        out.append(b"%s %d %s %d\n" % (_FORMAT, r.version, r.checksum.encode("ascii"), us))
    return out


def packed(record: HotRecord) -> PackedRecord:
    """``record`` as a :class:`PackedRecord`."""
    return PackedRecord(record.key, record.version, pack_record(record), record.ttl_ms)


def parse_header(header: bytes) -> tuple[int, str] | None:
    """(version, checksum) of a packed record's header line (without the newline); None if malformed."""
    parts = header.split(b" ")
    if len(parts) != 4 or parts[0] != _FORMAT:
        return None
    try:
        return int(parts[1]), parts[2].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None


def split_record(data: bytes) -> tuple[tuple[int, str] | None, bytes]:
    """((version, checksum) of the header line, the bytes after it) of a :func:`pack_record` value or of its
    first bytes; the header None when it is malformed or has no newline."""
    line, newline, body = data.partition(b"\n")
    return (parse_header(line) if newline else None), body


def body_matches(packed: bytes) -> bool:
    """Whether the body of a :func:`pack_record` value has the checksum its header names."""
    header, body = split_record(packed)
    return header is not None and checksum(body) == header[1]


def unpack_record(key: str, data: bytes) -> HotRecord:
    """Parse :func:`pack_record` output; a malformed header is an integrity error naming the key."""
    header, sep, value = data.partition(b"\n")
    parts = header.split(b" ")
    if not sep or len(parts) != 4 or parts[0] != _FORMAT:
        raise StateIntegrityError(f"state key {key!r}: malformed HOT record")
    try:
        version = int(parts[1])
        updated_at = datetime.fromtimestamp(int(parts[3]) / 1_000_000, tz=UTC)
        digest = parts[2].decode("ascii")
    except (ValueError, OverflowError, OSError):  # not numbers, out of datetime's range, not ASCII
        raise StateIntegrityError(f"state key {key!r}: malformed HOT record header") from None
    return HotRecord(key, version, digest, value, updated_at)
