"""Content-addressed blob store (DESIGN.md section 9): bytes are kept under their SHA-256 hex digest.

The filesystem store lays blobs out as ``<root>/<aa>/<sha256>`` (256 fan-out folders, as git does); writes go to a
temporary file and are renamed into place, so a reader never sees a partial blob and a second ``put`` of the same
bytes writes nothing.  Folders are 0700 and blobs 0600 (:mod:`email_service.fs`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from email_service.errors import NotFound
from email_service.fs import create_private_file, private_dir


class BlobStore(Protocol):
    """What the services need from a blob store."""

    def put(self, data: bytes, *, sha256: str | None = None) -> str:
        """Store ``data``; return its sha256 hex digest (idempotent).  ``sha256`` skips hashing when known."""
        ...

    def get(self, sha256: str) -> bytes:
        """Return the bytes of ``sha256``.  Raises :class:`NotFound`."""
        ...

    def iter_chunks(self, sha256: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """Stream the bytes of ``sha256`` in chunks.  Raises :class:`NotFound`."""
        ...

    def exists(self, sha256: str) -> bool:
        """True when ``sha256`` is stored."""
        ...

    def size(self, sha256: str) -> int:
        """Length in bytes of ``sha256``.  Raises :class:`NotFound`."""
        ...


def _check_digest(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise NotFound("Blob not found")
    return sha256


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

    def _path(self, sha256: str) -> Path:
        digest = _check_digest(sha256)
        return self.root / digest[:2] / digest

    def put(self, data: bytes, *, sha256: str | None = None) -> str:
        """Store ``data`` and return its sha256; nothing is written when it is already there.

        Args:
            sha256: the digest of ``data`` when the caller already computed it (not re-checked).
        """
        digest = sha256 or hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest
        if digest[:2] not in self._made:
            private_dir(path.parent)
            self._made.add(digest[:2])
        tmp = path.parent / f".tmp-{digest}-{threading.get_ident()}"
        try:
            with os.fdopen(create_private_file(tmp, exclusive=False), "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256: str) -> bytes:
        """Bytes of ``sha256``.  Raises :class:`NotFound` when absent."""
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound("Blob not found") from None

    def iter_chunks(self, sha256: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """Stream ``sha256`` in ``chunk_size`` pieces.  Raises :class:`NotFound` when absent."""
        try:
            handle = self._path(sha256).open("rb")
        except FileNotFoundError:
            raise NotFound("Blob not found") from None
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def exists(self, sha256: str) -> bool:
        """True when ``sha256`` is stored."""
        return self._path(sha256).exists()

    def size(self, sha256: str) -> int:
        """Length in bytes of ``sha256``.  Raises :class:`NotFound` when absent."""
        try:
            return self._path(sha256).stat().st_size
        except FileNotFoundError:
            raise NotFound("Blob not found") from None
