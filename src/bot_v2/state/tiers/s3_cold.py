"""COLD tier on S3 or any S3-compatible endpoint; boto3 calls run in the tier's own worker threads.

One boto3 client (thread-safe) with a connection pool of ``POOL_CONNECTIONS`` and a thread pool of the same
size, so a spool sync can keep several puts in flight (``tiers/spool.py``) without queueing behind, or
starving, the event loop's default executor. A put answers with the checksum S3 verified on arrival, which
is returned so the sync needs no HeadObject. ``probe`` asks HeadBucket once through a second client without
retries: a degraded tier is probed at a short fixed interval, so a refused connection must fail at once (and,
once one was refused, a bare TCP connect asks first: see ``probe``).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
import botocore.handlers

from bot_v2.errors import StateIntegrityError, StateUnavailableError
from bot_v2.monitoring.masking import mask_url
from bot_v2.state.keys import KeySpace
from bot_v2.state.tiers.cold import ObjectInfo, ObjectKind, Upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

POOL_CONNECTIONS = 16
COMMAND_TIMEOUT_SECONDS = 1.0
"""An attempt of a call waits at most this long for S3's answer (and for a connection): a hung endpoint (it
accepts and answers nothing) then fails the call within two attempts, and a COLD write goes to the spool.
S3 answers a put of a checkpoint-sized object well within it; a false timeout costs a spooled object."""
"""HTTP connections (and worker threads) of one tier: the spool sync's puts in flight plus the bot's own calls."""


def _stored_sha256(response: Any, data: bytes, sha256: str) -> str | None:
    """``sha256`` (the hex SHA-256 of ``data``) if S3's answer to its put proves it stored these bytes: the
    SHA-256 it checked on arrival, or else the ETag, which is the MD5 of a single-part upload without SSE-KMS.
    None if the answer proves nothing (then the caller reads the object's metadata back)."""
    reported = response.get("ChecksumSHA256")
    if reported and "-" not in reported:
        return sha256 if base64.b64decode(reported).hex() == sha256 else None
    etag = str(response.get("ETag", "")).strip('"')
    if len(etag) == 32 and etag == hashlib.md5(data, usedforsecurity=False).hexdigest():
        return sha256
    return None


def _refused_address(exc: botocore.exceptions.EndpointConnectionError) -> tuple[str, int] | None:
    """(host, port) of the endpoint if ``exc`` says it refused botocore's direct connection, else None."""
    cause: BaseException | None = exc
    for _ in range(8):  # EndpointConnectionError <- urllib3's NewConnectionError <- ConnectionRefusedError
        if cause is None or isinstance(cause, ConnectionRefusedError):
            break
        cause = cause.__cause__ or cause.__context__
    url = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
    if not isinstance(cause, ConnectionRefusedError) or not url.hostname:
        return None
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


class S3ColdTier:
    """Segments under ``s3://<bucket>/state/<bot_id>/segments/``, checkpoints under ``.../checkpoints/``."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        keyspace: KeySpace,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connect_timeout_seconds: float = 5.0,
        command_timeout_seconds: float = COMMAND_TIMEOUT_SECONDS,
    ) -> None:
        self._bucket = bucket
        self._prefix = f"state/{keyspace.bot_id}/segments/"
        self._checkpoints = f"state/{keyspace.bot_id}/checkpoints/"
        self._endpoint = endpoint_url
        self._timeout = connect_timeout_seconds
        self._connect_timeout = min(connect_timeout_seconds, command_timeout_seconds)
        config = botocore.config.Config(
            connect_timeout=self._connect_timeout,
            read_timeout=command_timeout_seconds,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=POOL_CONNECTIONS,
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self._client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
        # no "Expect: 100-continue" on puts: botocore would wait up to 1 s for the 100 (a hung endpoint sends
        # none) before the body, and it costs a round trip on every put; our objects are small enough to send
        self._client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
        self._prober: S3Client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            config=config.merge(
                botocore.config.Config(
                    retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=1
                )
            ),
        )
        self._threads = ThreadPoolExecutor(POOL_CONNECTIONS, thread_name_prefix="s3-cold")
        self._refused: tuple[str, int] | None = None  # the address the last probe found refusing connections

    def __repr__(self) -> str:
        return f"S3ColdTier(endpoint={mask_url(self._endpoint)!r}, bucket={self._bucket!r})"

    def _where(self) -> str:
        return f"s3 bucket {self._bucket!r} at {mask_url(self._endpoint) or 'aws'}"

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """The one place botocore errors become bot errors."""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            if code in {"NoSuchKey", "404"}:
                raise StateIntegrityError(f"{self._where()}: {action}: object is missing") from None
            raise StateUnavailableError(f"{self._where()}: {action} failed: {code}") from None
        except (TimeoutError, botocore.exceptions.BotoCoreError, OSError) as exc:
            raise StateUnavailableError(f"{self._where()}: {action} failed: {type(exc).__name__}") from None

    async def _call(self, action: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        with self._translate(action):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, functools.partial(fn, **kwargs))

    async def connect(self) -> None:
        async with asyncio.timeout(self._timeout * 3):
            await self._call("head bucket", self._client.head_bucket, Bucket=self._bucket)

    async def probe(self) -> None:
        """HeadBucket, one attempt. After one that found the endpoint refusing a direct connection, a TCP
        connect to the same address goes first (~0.05 ms of CPU against ~1 ms for botocore's request): while
        that is refused too, the probe fails without asking HeadBucket, so a stopped endpoint can be probed
        as often as HOT is; once it connects (or fails otherwise), HeadBucket decides. An endpoint reached
        through a proxy never gets the short cut: botocore reports a proxy error there, not a refused connect."""
        refused, self._refused = self._refused, None
        if refused is not None:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, writer = await asyncio.open_connection(*refused)
            except ConnectionRefusedError:
                self._refused = refused
                raise StateUnavailableError(f"{self._where()}: probe failed: connection refused") from None
            except (OSError, TimeoutError):
                pass  # not refused: HeadBucket decides
            else:
                writer.close()

        def head_bucket() -> None:
            try:
                self._prober.head_bucket(Bucket=self._bucket)
            except botocore.exceptions.EndpointConnectionError as exc:
                self._refused = _refused_address(exc)
                raise

        await self._call("probe (head bucket)", head_bucket)

    def _put_object(self, key: str, name: str, data: bytes, sha256: str) -> str | None:
        """PutObject in the calling (worker) thread; S3's answer checked against ``sha256``."""
        with self._translate(f"put {name}"):
            response = self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ChecksumAlgorithm="SHA256",  # S3 checks the body on arrival and keeps the digest (head_*)
            )
        return _stored_sha256(response, data, sha256)

    async def _put(self, key: str, name: str, data: bytes) -> str | None:
        def put() -> str | None:
            return self._put_object(key, name, data, hashlib.sha256(data).hexdigest())

        return await self._call(f"put {name}", put)

    async def upload_file(
        self, kind: ObjectKind, name: str, path: Path, then: Callable[[str], None]
    ) -> Upload:
        key = (self._prefix if kind == "segment" else self._checkpoints) + name

        def upload() -> Upload:
            data = path.read_bytes()  # a local failure stays an OSError: it is no S3 outage
            sha256 = hashlib.sha256(data).hexdigest()
            stored = self._put_object(key, name, data, sha256)
            if stored == sha256:
                then(sha256)
            return Upload(len(data), sha256, stored, stored == sha256)

        return await asyncio.get_running_loop().run_in_executor(self._threads, upload)

    async def put_segment(self, name: str, data: bytes) -> str | None:
        return await self._put(self._prefix + name, name, data)

    async def _head(self, key: str, name: str) -> ObjectInfo | None:
        def head() -> ObjectInfo | None:
            try:
                found = self._client.head_object(Bucket=self._bucket, Key=key, ChecksumMode="ENABLED")
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                    return None
                raise
            digest = found.get("ChecksumSHA256")
            sha256 = None
            if digest and "-" not in digest:  # "<b64>-<parts>" is a checksum of checksums (multipart)
                sha256 = base64.b64decode(digest).hex()
            return ObjectInfo(int(found["ContentLength"]), sha256)

        return await self._call(f"head {name}", head)

    async def head_segment(self, name: str) -> ObjectInfo | None:
        return await self._head(self._prefix + name, name)

    async def head_checkpoint(self, name: str) -> ObjectInfo | None:
        return await self._head(self._checkpoints + name, name)

    async def get_segment(self, name: str) -> bytes:
        def read() -> bytes:
            return self._client.get_object(Bucket=self._bucket, Key=self._prefix + name)["Body"].read()

        return await self._call(f"get {name}", read)

    async def delete_segment(self, name: str) -> None:
        await self._call(
            f"delete {name}", self._client.delete_object, Bucket=self._bucket, Key=self._prefix + name
        )

    async def put_checkpoint(self, name: str, data: bytes) -> str | None:
        return await self._put(self._checkpoints + name, name, data)

    async def get_checkpoint(self, name: str) -> bytes:
        def read() -> bytes:
            return self._client.get_object(Bucket=self._bucket, Key=self._checkpoints + name)["Body"].read()

        return await self._call(f"get {name}", read)

    async def delete_checkpoint(self, name: str) -> None:
        await self._call(
            f"delete {name}", self._client.delete_object, Bucket=self._bucket, Key=self._checkpoints + name
        )

    async def list_checkpoints(self) -> list[str]:
        def names() -> list[str]:
            out: list[str] = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._checkpoints):
                out.extend(item["Key"][len(self._checkpoints) :] for item in page.get("Contents", []))
            return sorted(out)

        return await self._call("list checkpoints", names)

    async def stats(self) -> tuple[int, int]:
        def count() -> tuple[int, int]:
            objects = size = 0
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
                for item in page.get("Contents", []):
                    objects += 1
                    size += item.get("Size", 0)
            return objects, size

        return await self._call("list", count)

    async def close(self) -> None:
        def close() -> None:
            self._client.close()
            self._prober.close()

        await asyncio.to_thread(close)
        self._threads.shutdown(wait=False, cancel_futures=True)
