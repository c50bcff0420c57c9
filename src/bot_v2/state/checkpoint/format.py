"""The checkpoint blob: its format, encoded and decoded (no I/O here).

::

    PBCKPT2 <sha256 of the payload, hex>\n<payload>
    payload = zlib(header) + zlib(values) + checksums
    header  = sorted-key compact JSON {"bot_id", "checkpoint_id", "created_at", "format": 2, "records":
              {"category": [...], "expires_at": [...], "key": [...], "length": [...], "tier": [...],
               "version": [...]}}   (one column per field, one entry per record, in key order)
    values  = the records' value bytes, concatenated in the same order (``length`` splits them)
    checksums = the records' SHA-256 checksums, 32 bytes each, same order (random bytes: not compressed)

The values are the canonical bytes every tier stores, copied as they are. Format 1 (``PBCKPT1``, still read)
was one JSON document with the values as JSON strings: escaping every quote made it 1.6x larger, and encoding
and compressing it was most of a checkpoint's time.

Records travel by column (``Columns``), as the header stores them and as the WARM tier's snapshot pages
deliver them: a checkpoint of 10,000 records never builds 10,000 record objects, which on the event loop (a
background checkpoint) or in a worker thread holding the GIL would cost the trading loop milliseconds.
Decoding checks the blob's SHA-256, its format and owner, and every record's checksum (one SHA-256 per value,
compared with the stored binary checksums in one go).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from typing import Any, NamedTuple

from bot_v2.errors import StateIntegrityError
from bot_v2.state.models import Tier

MAGIC = b"PBCKPT2"
FORMAT = 2
MAGIC_V1 = b"PBCKPT1"  # format 1: one JSON document, values as JSON strings (read, never written)
COMPRESS_LEVEL = 1
#: Values joined and compressed at a time (in a worker thread).
SEAL_CHUNK_VALUES = 2048
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
#: The record columns of a format 2 header, in canonical (sorted) order.
_COLUMNS = ("category", "expires_at", "key", "length", "tier", "version")
DIGEST_BYTES = 32  # a record's checksum (SHA-256 of its value), stored binary
_TIERS = {tier.value: tier for tier in Tier}


class Record(NamedTuple):
    """One record of a checkpoint (tests and rare paths; the hot paths use ``Columns``)."""

    key: str
    category: str
    tier: Tier
    version: int
    checksum: str
    value: bytes
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Columns:
    """Records by column: record ``i`` is entry ``i`` of every column, in key order. ``tiers`` holds ``Tier``
    members or their values (a ``Tier`` is a ``StrEnum``: both encode alike)."""

    keys: Sequence[str]
    categories: Sequence[str]
    tiers: Sequence[str]
    versions: Sequence[int]
    checksums: Sequence[str]
    values: Sequence[bytes]
    expires_at: Sequence[datetime | None]

    def __len__(self) -> int:
        return len(self.keys)

    def slice(self, start: int, stop: int) -> Columns:
        return Columns(
            self.keys[start:stop],
            self.categories[start:stop],
            self.tiers[start:stop],
            self.versions[start:stop],
            self.checksums[start:stop],
            self.values[start:stop],
            self.expires_at[start:stop],
        )

    @classmethod
    def of(cls, records: Sequence[Record]) -> Columns:
        if not records:
            return cls([], [], [], [], [], [], [])
        keys, categories, tiers, versions, checksums, values, expires_at = map(
            list, zip(*records, strict=True)
        )
        return cls(keys, categories, tiers, versions, checksums, values, expires_at)

    def records(self) -> list[Record]:
        tiers = [_TIERS[str(tier)] for tier in self.tiers]
        return list(
            map(
                Record,
                self.keys,
                self.categories,
                tiers,
                self.versions,
                self.checksums,
                self.values,
                self.expires_at,
            )
        )


@dataclass(frozen=True, slots=True)
class Decoded:
    checkpoint_id: str
    created_at: datetime
    columns: Columns  # tiers are ``Tier`` members

    @property
    def records(self) -> list[Record]:
        return self.columns.records()


def compress(chunks: Iterable[bytes]) -> tuple[bytes, int]:
    """One zlib stream of ``chunks`` concatenated, and its raw size. Meant for a worker thread: zlib releases
    the GIL while it compresses a chunk."""
    compressor = zlib.compressobj(COMPRESS_LEVEL)
    out: list[bytes] = []
    raw = 0
    for chunk in chunks:
        raw += len(chunk)
        out.append(compressor.compress(chunk))
    out.append(compressor.flush())
    return b"".join(out), raw


def value_chunks(values: Sequence[bytes]) -> Iterator[bytes]:
    """``values`` joined a chunk at a time: a worker thread compressing them takes the GIL back only once a
    chunk (zlib releases it while it compresses)."""
    for start in range(0, len(values), SEAL_CHUNK_VALUES):
        yield b"".join(values[start : start + SEAL_CHUNK_VALUES])


class HeaderWriter:
    """Builds a format 2 header a slice of records at a time (the caller yields to the event loop between
    slices). Every slice is JSON-encoded column by column as it comes, so the header is the same canonical
    bytes whatever the slicing: ``json.dumps(header, sort_keys=True, separators=(",", ":"))``."""

    def __init__(self, bot_id: str, checkpoint_id: str, created_at: datetime) -> None:
        head = _JSON.encode(
            {
                "bot_id": bot_id,
                "checkpoint_id": checkpoint_id,
                "created_at": created_at.isoformat(),
                "format": FORMAT,
            }
        )
        self._head = head[:-1]  # "records" sorts after every other key: it is appended last
        self._columns: dict[str, list[str]] = {name: [] for name in _COLUMNS}
        self._digests: list[bytes] = []

    def add(self, records: Columns) -> None:
        """Append the metadata of records (whose values the caller checked against their checksums)."""
        if not records:
            return
        expires = records.expires_at
        columns: dict[str, Sequence[Any]] = {
            "category": records.categories,
            "expires_at": expires
            if not any(expires)
            else [None if e is None else e.isoformat() for e in expires],
            "key": records.keys,
            "length": list(map(len, records.values)),
            "tier": records.tiers,  # a StrEnum: encoded as its value
            "version": records.versions,
        }
        for name, column in columns.items():
            self._columns[name].append(_JSON.encode(list(column))[1:-1])
        self._digests.append(bytes.fromhex("".join(records.checksums)))

    def seal(self, values: tuple[bytes, int]) -> tuple[bytes, int, str]:
        """Return (blob, raw payload size, sha256 of the compressed payload), given the compressed values
        stream and its raw size. Meant for a worker thread (compressing and hashing release the GIL)."""
        records = ",".join(f'"{name}":[{",".join(parts)}]' for name, parts in self._columns.items())
        header, header_bytes = compress([f'{self._head},"records":{{{records}}}}}'.encode()])
        digests = b"".join(self._digests)  # SHA-256 output does not compress: stored as it is
        payload = header + values[0] + digests
        digest = hashlib.sha256(payload).hexdigest()
        blob = MAGIC + b" " + digest.encode("ascii") + b"\n" + payload
        return blob, header_bytes + values[1] + len(digests), digest


def encode_checkpoint(
    bot_id: str, checkpoint_id: str, created_at: datetime, records: Sequence[Record] | Columns
) -> tuple[bytes, int, str]:
    """Return (blob, raw payload size, sha256 of the compressed payload), in one go (no slicing)."""
    columns = records if isinstance(records, Columns) else Columns.of(records)
    writer = HeaderWriter(bot_id, checkpoint_id, created_at)
    writer.add(columns)
    return writer.seal(compress(value_chunks(columns.values)))


def decode_checkpoint(
    checkpoint_id: str, bot_id: str, blob: bytes, expected_sha256: str | None = None
) -> Decoded:
    """Verify and parse a checkpoint blob (format 2, or 1); any mismatch is a ``StateIntegrityError`` naming
    the checkpoint."""
    where = f"checkpoint {checkpoint_id!r}"
    header, sep, payload = blob.partition(b"\n")
    parts = header.split(b" ")
    if not sep or len(parts) != 2 or parts[0] not in (MAGIC, MAGIC_V1):
        raise StateIntegrityError(f"{where}: malformed header (not a checkpoint, or corrupt)")
    stored = parts[1].decode("ascii", "replace")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != stored or (expected_sha256 is not None and expected_sha256 != stored):
        raise StateIntegrityError(f"{where}: checksum mismatch (the stored checkpoint is corrupt)")
    digests = b""
    try:
        if parts[0] == MAGIC_V1:
            body: Any = json.loads(zlib.decompress(payload))
            expected_format, values = 1, b""
        else:
            head, rest = _inflate(payload)
            values, digests = _inflate(rest)
            body = json.loads(head)
            expected_format = FORMAT
        if body.get("format") != expected_format:
            raise ValueError(f"unknown format {body.get('format')!r}")
        if body["bot_id"] != bot_id or body["checkpoint_id"] != checkpoint_id:
            raise ValueError(f"belongs to {body['bot_id']!r} / {body['checkpoint_id']!r}")
        created_at = datetime.fromisoformat(body["created_at"])
        columns = _columns_v1(body) if expected_format == 1 else _columns_v2(body, values, digests)
    except (zlib.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateIntegrityError(f"{where}: malformed: {exc}") from None
    bad = _first_corrupt(columns, digests if expected_format == FORMAT else None)
    if bad is not None:
        raise StateIntegrityError(f"{where}: record {columns.keys[bad]!r} fails its checksum (corrupt)")
    return Decoded(checkpoint_id, created_at, columns)


def _first_corrupt(columns: Columns, digests: bytes | None) -> int | None:
    """The index of the first record whose value does not hash to its checksum, or None. Format 2 compares
    all the values' SHA-256 digests with the stored binary checksums at once."""
    sha256 = hashlib.sha256
    if digests is not None and b"".join([sha256(v).digest() for v in columns.values]) == digests:
        return None
    for index, (value, expected) in enumerate(zip(columns.values, columns.checksums, strict=True)):
        if sha256(value).hexdigest() != expected:
            return index
    return None


def _inflate(data: bytes) -> tuple[bytes, bytes]:
    """Decompress the zlib stream at the start of ``data``; return (its content, the bytes after it)."""
    inflater = zlib.decompressobj()
    content = inflater.decompress(data)
    if not inflater.eof:
        raise ValueError("truncated zlib stream")
    return content, inflater.unused_data


def _expires(texts: Sequence[str | None]) -> list[datetime | None]:
    return [None if text is None else datetime.fromisoformat(text) for text in texts]


def _columns_v1(body: Any) -> Columns:
    rows = body["records"]
    return Columns(
        [row[0] for row in rows],
        [row[1] for row in rows],
        [Tier(row[2]) for row in rows],
        [int(row[3]) for row in rows],
        [row[4] for row in rows],
        [row[5].encode("utf-8") for row in rows],
        _expires([row[6] for row in rows]),
    )


def _columns_v2(body: Any, values: bytes, digests: bytes) -> Columns:
    columns = body["records"]
    if sorted(columns) != sorted(_COLUMNS):
        raise ValueError(f"record columns {sorted(columns)}")
    keys = columns["key"]
    if any(len(columns[name]) != len(keys) for name in _COLUMNS):
        raise ValueError("record columns of unequal length")
    if len(digests) != DIGEST_BYTES * len(keys):
        raise ValueError(f"{len(digests)} bytes of checksums for {len(keys)} records")
    lengths = columns["length"]
    if any(type(n) is not int or n < 0 for n in lengths):
        raise ValueError("a value length is not a non-negative integer")
    versions = columns["version"]
    if any(type(v) is not int for v in versions):
        raise ValueError("a version is not an integer")
    ends = list(accumulate(lengths))
    if (ends[-1] if ends else 0) != len(values):
        raise ValueError(f"value lengths add up to {ends[-1] if ends else 0}, not {len(values)} bytes")
    hexed = digests.hex()
    width = 2 * DIGEST_BYTES
    tiers = _TIERS
    return Columns(
        keys,
        columns["category"],
        [tiers[tier] for tier in columns["tier"]],
        versions,
        [hexed[start : start + width] for start in range(0, len(hexed), width)],
        [values[end - length : end] for length, end in zip(lengths, ends, strict=True)],
        _expires(columns["expires_at"]),
    )
