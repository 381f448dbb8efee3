"""S3-compatible blob store (``BLOB_STORAGE_TYPE=s3``) through boto3, same contract as the filesystem store
(:mod:`email_service.storage.blobs`).

Keys are ``<S3_PREFIX><tenant>/<sha256>``.  Credentials, region and retries come from boto3's usual chain
(environment, shared config, instance role); ``S3_ENDPOINT_URL`` points at another S3-compatible server (MinIO,
Ceph, moto).  Reads stream the object body (``GetObject`` with a ``Range`` header for byte ranges); writes of bytes
that arrive in pieces are spooled to a private temporary file while they are hashed, then uploaded under their
digest (multipart for large ones).  A ``put`` of an existing blob refreshes its ``LastModified`` with a
self-copy, which is what garbage collection compares with the grace period.

Limits of S3 against the filesystem store: a removal is ``HeadObject`` then ``DeleteObject``, not atomic, so a
``put`` of the very same bytes landing between the two (milliseconds, for a blob unreferenced and unwritten for the
whole grace period) can be lost; and crashed multipart uploads are left to the bucket's lifecycle rule
(``AbortIncompleteMultipartUpload``).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

import boto3
from botocore.exceptions import ClientError

from email_service.errors import NotFound
from email_service.storage.blobs import (
    CHUNK_SIZE,
    BlobWriter,
    HashingWriter,
    StoredBlob,
    check_digest,
    check_namespace,
)

_MISSING = {"404", "NoSuchKey", "NotFound"}


def _missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING


class S3BlobStore:
    """Blobs as objects of one bucket.

    Args:
        bucket: ``S3_BUCKET``.
        endpoint_url: ``S3_ENDPOINT_URL`` (``None``: AWS).
        prefix: ``S3_PREFIX``, prepended to every key (e.g. ``email/``).
        client: an existing boto3 S3 client (tests); made from the default session otherwise.
    """

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = client or boto3.session.Session().client("s3", endpoint_url=endpoint_url)

    def key(self, namespace: str, sha256: str) -> str:
        """Object key of a blob."""
        return f"{self.prefix}{check_namespace(namespace)}/{check_digest(sha256)}"

    def _head(self, namespace: str, sha256: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self.key(namespace, sha256))
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return head

    def refresh(self, namespace: str, sha256: str) -> bool:
        """Give a stored blob a new ``LastModified`` (self-copy); False when it is not there."""
        key = self.key(namespace, sha256)
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
            )
        except ClientError as error:
            if _missing(error):
                return False
            raise
        return True

    def put(self, namespace: str, data: bytes, *, sha256: str | None = None) -> str:
        """Store ``data`` under its sha256 (``PutObject``), or refresh the stored copy."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        if self._head(namespace, digest) is not None and self.refresh(namespace, digest):
            return digest
        self.client.put_object(Bucket=self.bucket, Key=self.key(namespace, digest), Body=data)
        return digest

    def upload(self, namespace: str, handle: BinaryIO, sha256: str) -> None:
        """Upload an open file under ``sha256`` unless it is stored (then refresh it)."""
        if self._head(namespace, sha256) is not None and self.refresh(namespace, sha256):
            return
        handle.seek(0)
        self.client.upload_fileobj(handle, self.bucket, self.key(namespace, sha256))

    def writer(self, namespace: str) -> BlobWriter:
        """A :class:`S3BlobWriter` (spooled to a private temporary file)."""
        check_namespace(namespace)
        return S3BlobWriter(self, namespace)

    def get(self, namespace: str, sha256: str) -> bytes:
        """All bytes of a blob.  Raises :class:`NotFound`."""
        return b"".join(self.iter_chunks(namespace, sha256))

    def iter_chunks(
        self, namespace: str, sha256: str, *, start: int = 0, stop: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Stream a byte range (``GetObject`` with ``Range: bytes=start-(stop-1)``).  Raises :class:`NotFound` at
        once."""
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(namespace, sha256)}
        if stop is not None and stop <= start:
            if self._head(namespace, sha256) is None:
                raise NotFound("Blob not found")
            return iter(())
        if start or stop is not None:
            arguments["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
        try:
            body = self.client.get_object(**arguments)["Body"]
        except ClientError as error:
            if _missing(error):
                raise NotFound("Blob not found") from None
            raise

        def pieces() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_size)
            finally:
                body.close()

        return pieces()

    def open_file(self, namespace: str, sha256: str) -> BinaryIO | None:
        """``None``: objects are streamed with :meth:`iter_chunks`."""
        return None

    def exists(self, namespace: str, sha256: str) -> bool:
        """True when the blob is stored (``HeadObject``)."""
        return self._head(namespace, sha256) is not None

    def size(self, namespace: str, sha256: str) -> int:
        """Length of a blob.  Raises :class:`NotFound`."""
        head = self._head(namespace, sha256)
        if head is None:
            raise NotFound("Blob not found")
        return int(head["ContentLength"])

    def namespaces(self) -> Iterator[str]:
        """Tenant prefixes of the bucket."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix) :].rstrip("/")
                try:
                    yield check_namespace(name)
                except NotFound:
                    continue

    def list_blobs(self, namespace: str) -> Iterator[StoredBlob]:
        """Every blob under the tenant's prefix."""
        prefix = f"{self.prefix}{check_namespace(namespace)}/"
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                digest = item["Key"][len(prefix) :]
                yield StoredBlob(digest, int(item["Size"]), item["LastModified"].timestamp())

    def collect(self, namespace: str, sha256: str, *, written_before: float) -> bool:
        """Remove a blob whose ``LastModified`` (read just before) is older than ``written_before``."""
        head = self._head(namespace, sha256)
        if head is None or head["LastModified"].timestamp() >= written_before:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self.key(namespace, sha256))
        return True

    def remove_stale_incoming(self, namespace: str, *, written_before: float) -> int:
        """Nothing to do: unfinished writes are local temporary files, gone with their process."""
        check_namespace(namespace)
        return 0


class S3BlobWriter(HashingWriter):
    """:class:`BlobWriter` of :class:`S3BlobStore`: hashed into a private temporary file, uploaded on commit."""

    def __init__(self, store: S3BlobStore, namespace: str) -> None:
        self.store, self.namespace = store, namespace
        super().__init__(tempfile.TemporaryFile())  # noqa: SIM115 - closed by commit/abort

    def commit(self) -> str:
        """Upload the spooled bytes under their digest (or refresh the stored copy)."""
        assert self._handle is not None, "writer already closed"
        digest = self.sha256_so_far.hexdigest()
        try:
            self.store.upload(self.namespace, self._handle, digest)
        finally:
            self.abort()
        return digest

    def abort(self) -> None:
        """Drop the temporary file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> S3BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()
