"""Content-addressed blob stores (DESIGN.md sections 6 and 9): bytes are kept under their SHA-256 hex digest, in
one namespace per tenant.

**Namespaces.**  Every blob lives in the namespace of the tenant whose rows reference it (``str(tenant_id)``).
Identical bytes are stored once per tenant (seed 004, "the blob is stored once per tenant"), never shared across
tenants: a tenant's data can be listed, exported or erased as a whole (one folder, one key prefix), no upload can
learn whether another tenant holds some content, and garbage collection decides per tenant from that tenant's rows
alone, in a transaction bound to it (row-level security stays in force).

**Writes in flight and collection.**  A blob is written before the row that references it is committed.  Garbage
collection (:mod:`email_service.services.blob_gc`) only removes a blob that no row references *and* that nobody has
written for ``BLOB_GC_GRACE_SECONDS``; a ``put`` of bytes already stored refreshes their modification time so that
a blob about to be referenced again counts as freshly written.  :meth:`BlobStore.collect` re-checks that time at
the moment of removal (on the filesystem atomically: the blob is renamed aside first, then its time is read, and it
is put back if it was refreshed meanwhile).

The filesystem store (the embedded default, ``BLOB_STORAGE_PATH``) lays blobs out as
``<root>/<tenant>/<aa>/<sha256>``; writes go to ``<root>/<tenant>/.incoming/`` and are renamed into place, so a
reader never sees a partial blob.  Folders are 0700 and blobs 0600 (:mod:`email_service.fs`).  The S3 store is in
:mod:`email_service.storage.s3`.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from email_service.errors import NotFound
from email_service.fs import create_private_file, private_dir

if TYPE_CHECKING:
    from email_service.config import Settings

#: Size of the pieces blobs are read in when streamed (downloads, virus scans).
CHUNK_SIZE = 256 * 1024
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_NAMESPACE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
INCOMING = ".incoming"


@dataclass(frozen=True)
class StoredBlob:
    """One blob as listed by :meth:`BlobStore.list_blobs`: digest, size in bytes, last write (epoch seconds)."""

    sha256: str
    size: int
    modified: float


class BlobWriter(Protocol):
    """A blob being written piece by piece (an upload streaming in); hashed and counted as it goes.

    Use as a context manager: leaving it without :meth:`commit` discards what was written.
    """

    sha256_so_far: hashlib._Hash
    size: int

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""
        ...

    def commit(self) -> str:
        """Store what was written under its sha256 (refreshing an existing copy) and return the digest."""
        ...

    def abort(self) -> None:
        """Discard what was written (idempotent)."""
        ...

    def __enter__(self) -> BlobWriter: ...

    def __exit__(self, *exc: object) -> None: ...


class BlobStore(Protocol):
    """What the services need from a blob store; ``namespace`` is the owning tenant's id as a string.

    Every read raises :class:`NotFound` for an unknown digest or namespace.
    """

    def put(self, namespace: str, data: bytes, *, sha256: str | None = None) -> str:
        """Store ``data`` (or refresh the stored copy); return its sha256.  ``sha256`` skips hashing when known."""
        ...

    def writer(self, namespace: str) -> BlobWriter:
        """A :class:`BlobWriter` for bytes that arrive in pieces."""
        ...

    def get(self, namespace: str, sha256: str) -> bytes:
        """All bytes of a blob (only for small blobs: raw messages being parsed)."""
        ...

    def iter_chunks(
        self, namespace: str, sha256: str, *, start: int = 0, stop: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Stream bytes ``start`` (inclusive) to ``stop`` (exclusive; ``None``: the end) in pieces of at most
        ``chunk_size``; nothing is read before the first piece is asked for, except the existence check."""
        ...

    def open_file(self, namespace: str, sha256: str) -> BinaryIO | None:
        """An open file of the blob when it is on the local disk (a WSGI server can send it without copying it
        through Python), else ``None``."""
        ...

    def exists(self, namespace: str, sha256: str) -> bool:
        """True when the blob is stored."""
        ...

    def size(self, namespace: str, sha256: str) -> int:
        """Length of a blob in bytes."""
        ...

    def namespaces(self) -> Iterator[str]:
        """Every namespace holding blobs."""
        ...

    def list_blobs(self, namespace: str) -> Iterator[StoredBlob]:
        """Every blob of a namespace (in no particular order)."""
        ...

    def collect(self, namespace: str, sha256: str, *, written_before: float) -> bool:
        """Remove a blob if it was last written before ``written_before`` (epoch seconds), checked at the moment
        of removal; return True when it was removed."""
        ...

    def remove_stale_incoming(self, namespace: str, *, written_before: float) -> int:
        """Remove unfinished writes (a crashed upload) older than ``written_before``; return how many."""
        ...


def check_digest(sha256: str) -> str:
    """``sha256`` if it is 64 lowercase hex digits.  Raises :class:`NotFound` otherwise (it names no blob)."""
    if not _DIGEST.match(sha256):
        raise NotFound("Blob not found")
    return sha256


def check_namespace(namespace: str) -> str:
    """``namespace`` if it is a tenant id (a UUID string).  Raises :class:`NotFound` otherwise."""
    if not _NAMESPACE.match(namespace):
        raise NotFound("Blob not found")
    return namespace


def read_range(handle: BinaryIO, start: int, stop: int | None, chunk_size: int) -> Iterator[bytes]:
    """Pieces of an open binary file from ``start`` to ``stop`` (exclusive; ``None``: the end)."""
    handle.seek(start)
    remaining = None if stop is None else max(0, stop - start)
    while remaining is None or remaining > 0:
        chunk = handle.read(chunk_size if remaining is None else min(chunk_size, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


class FilesystemBlobStore:
    """Blob store in a local folder (the embedded default: ``BLOB_STORAGE_PATH``, ``<data dir>/blobs``).

    Args:
        root: folder of the store; created on first write.
        fsync: flush each new blob to disk before renaming it into place (durability at the cost of speed).
    """

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._made: set[str] = set()

    def _path(self, namespace: str, sha256: str) -> Path:
        digest = check_digest(sha256)
        return self.root / check_namespace(namespace) / digest[:2] / digest

    def _existing(self, namespace: str, sha256: str) -> Path:
        path = self._path(namespace, sha256)
        if path.exists():
            return path
        legacy = self.root / sha256[:2] / sha256  # layout before namespaces: read only, never collected
        if legacy.exists():
            return legacy
        raise NotFound("Blob not found")

    def _folder(self, path: Path) -> Path:
        key = str(path.relative_to(self.root))
        if key not in self._made:
            private_dir(path)
            self._made.add(key)
        return path

    def _incoming(self, namespace: str) -> Path:
        return self._folder(self.root / check_namespace(namespace) / INCOMING) / uuid.uuid4().hex

    def _install(self, namespace: str, temporary: Path, digest: str) -> None:
        """Move a finished temporary file into place, or refresh the copy already there."""
        path = self._path(namespace, digest)
        if refresh(path):
            temporary.unlink(missing_ok=True)
            return
        self._folder(path.parent)
        os.replace(temporary, path)

    def put(self, namespace: str, data: bytes, *, sha256: str | None = None) -> str:
        """Store ``data`` and return its sha256; bytes already stored are not written again, only refreshed.

        Args:
            sha256: the digest of ``data`` when the caller already computed it (not re-checked).
        """
        digest = sha256 or hashlib.sha256(data).hexdigest()
        if refresh(self._path(namespace, digest)):
            return digest
        temporary = self._incoming(namespace)
        try:
            with os.fdopen(create_private_file(temporary), "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            self._install(namespace, temporary, digest)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return digest

    def writer(self, namespace: str) -> BlobWriter:
        """A :class:`FileBlobWriter` into this namespace."""
        return FileBlobWriter(self, namespace, self._incoming(namespace))

    def get(self, namespace: str, sha256: str) -> bytes:
        """All bytes of a blob.  Raises :class:`NotFound`."""
        return self._existing(namespace, sha256).read_bytes()

    def iter_chunks(
        self, namespace: str, sha256: str, *, start: int = 0, stop: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Stream a byte range of a blob.  Raises :class:`NotFound` at once (not at the first piece)."""
        handle = self._existing(namespace, sha256).open("rb")

        def pieces() -> Iterator[bytes]:
            with handle:
                yield from read_range(handle, start, stop, chunk_size)

        return pieces()

    def open_file(self, namespace: str, sha256: str) -> BinaryIO | None:
        """The blob's file, open for reading.  Raises :class:`NotFound`."""
        return self._existing(namespace, sha256).open("rb")

    def exists(self, namespace: str, sha256: str) -> bool:
        """True when the blob is stored."""
        try:
            self._existing(namespace, sha256)
        except NotFound:
            return False
        return True

    def size(self, namespace: str, sha256: str) -> int:
        """Length of a blob in bytes.  Raises :class:`NotFound`."""
        return self._existing(namespace, sha256).stat().st_size

    def namespaces(self) -> Iterator[str]:
        """Tenant folders of the store."""
        if not self.root.is_dir():
            return
        for entry in os.scandir(self.root):
            if entry.is_dir() and _NAMESPACE.match(entry.name):
                yield entry.name

    def list_blobs(self, namespace: str) -> Iterator[StoredBlob]:
        """Every blob of a namespace (temporary and set-aside files excluded)."""
        folder = self.root / check_namespace(namespace)
        if not folder.is_dir():
            return
        for fan in os.scandir(folder):
            if not (fan.is_dir() and len(fan.name) == 2):
                continue
            for entry in os.scandir(fan.path):
                if _DIGEST.match(entry.name):
                    stat = entry.stat()
                    yield StoredBlob(entry.name, stat.st_size, stat.st_mtime)

    def collect(self, namespace: str, sha256: str, *, written_before: float) -> bool:
        """Remove a blob last written before ``written_before``.

        The blob is renamed aside first, then its modification time is read: a ``put`` that refreshed it before
        the rename is seen (the blob is put back); a ``put`` after the rename finds no blob and writes it anew.
        """
        path = self._path(namespace, sha256)
        aside = path.with_name(f".collect-{sha256}-{uuid.uuid4().hex}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        if os.stat(aside).st_mtime >= written_before:
            os.replace(aside, path)
            return False
        aside.unlink()
        return True

    def remove_stale_incoming(self, namespace: str, *, written_before: float) -> int:
        """Remove unfinished writes older than ``written_before``."""
        folder = self.root / check_namespace(namespace) / INCOMING
        removed = 0
        if folder.is_dir():
            for entry in os.scandir(folder):
                if entry.stat().st_mtime < written_before:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        return removed


def refresh(path: Path) -> bool:
    """Mark a stored blob as just written (its modification time); False when it is not there (any more)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


class HashingWriter:
    """Base of the stores' writers: appends to a temporary file ``_handle`` while hashing and counting."""

    def __init__(self, handle: BinaryIO) -> None:
        self.sha256_so_far = hashlib.sha256()
        self.size = 0
        self._handle: BinaryIO | None = handle

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""
        assert self._handle is not None, "writer already closed"
        self._handle.write(chunk)
        self.sha256_so_far.update(chunk)
        self.size += len(chunk)


class FileBlobWriter(HashingWriter):
    """:class:`BlobWriter` of :class:`FilesystemBlobStore`: a 0600 temporary file, renamed into place."""

    def __init__(self, store: FilesystemBlobStore, namespace: str, temporary: Path) -> None:
        self.store, self.namespace, self.temporary = store, namespace, temporary
        super().__init__(os.fdopen(create_private_file(temporary), "wb"))

    def commit(self) -> str:
        """Rename the temporary file into place under its digest (or refresh an existing copy)."""
        assert self._handle is not None, "writer already closed"
        if self.store.fsync:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        digest = self.sha256_so_far.hexdigest()
        self.store._install(self.namespace, self.temporary, digest)
        return digest

    def abort(self) -> None:
        """Discard the temporary file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.temporary.unlink(missing_ok=True)

    def __enter__(self) -> FileBlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def open_blob_store(settings: Settings) -> BlobStore:
    """The store ``BLOB_STORAGE_TYPE`` names: ``filesystem`` (``BLOB_STORAGE_PATH``) or ``s3`` (``S3_BUCKET``,
    ``S3_ENDPOINT_URL``, ``S3_PREFIX``; credentials from boto3's usual chain)."""
    if settings.blob_storage_type == "s3":
        from email_service.storage.s3 import S3BlobStore

        assert settings.s3_bucket is not None  # checked by Settings
        return S3BlobStore(settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, prefix=settings.s3_prefix)
    return FilesystemBlobStore(settings.blob_storage_path)
