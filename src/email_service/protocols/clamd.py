"""Virus scanning through the ClamAV daemon's ``INSTREAM`` command (clamd(8), "INSTREAM"), with the maintained
``clamav-client`` library (a typed fork of the ``clamd`` package).

``INSTREAM`` sends the bytes as chunks, each prefixed by its length as a 4-byte big-endian integer, ended by a
zero-length chunk; clamd answers ``stream: OK``, ``stream: <signature> FOUND`` or ``... ERROR`` (e.g. ``INSTREAM size
limit exceeded`` past its ``StreamMaxLength``).  Nothing is written to disk on either side.

clamd is infrastructure the operator configures (``CLAMD_SOCKET``, or ``CLAMD_HOST``/``CLAMD_PORT``), like the
database or Redis, never an address a user supplies: it is dialled directly, not through the guarded connector of
:mod:`email_service.protocols.net` (which refuses loopback and private addresses, where clamd normally listens).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from clamav_client.clamd import (
    BufferTooLongError,
    ClamdError,
    ClamdNetworkSocket,
    ClamdUnixSocket,
    CommunicationError,
)

from email_service.protocols.errors import ConnectionFailed, PermanentFailure


@dataclass(frozen=True)
class ClamdEndpoint:
    """Where clamd listens: a Unix socket path, or a TCP host and port; ``timeout`` in seconds per socket
    operation (``VIRUS_SCAN_TIMEOUT``)."""

    socket_path: str | None = None
    host: str | None = None
    port: int = 3310
    timeout: float = 30.0


@dataclass(frozen=True)
class ScanVerdict:
    """clamd's answer: ``infected`` and the signature name when it found something (e.g.
    ``Eicar-Test-Signature.UNOFFICIAL``), else clean."""

    infected: bool
    signature: str | None = None


class _ChunkReader(io.RawIOBase):
    """A file-like view of an iterator of byte chunks (what ``instream`` reads from)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def scan_stream(endpoint: ClamdEndpoint, chunks: Iterable[bytes]) -> ScanVerdict:
    """Scan the bytes of ``chunks`` with clamd ``INSTREAM``.

    Raises:
        ConnectionFailed: clamd cannot be reached or dropped the connection (retry later).
        PermanentFailure: clamd refused the stream (over its ``StreamMaxLength``) or answered with an error.
    """
    client: ClamdNetworkSocket
    if endpoint.socket_path:
        client = ClamdUnixSocket(endpoint.socket_path, timeout=int(endpoint.timeout))
    else:
        client = ClamdNetworkSocket(endpoint.host or "127.0.0.1", endpoint.port, timeout=endpoint.timeout)
    try:
        result = client.instream(io.BufferedReader(_ChunkReader(chunks), buffer_size=64 * 1024))
    except BufferTooLongError:
        raise PermanentFailure("clamd refused the attachment: larger than its StreamMaxLength") from None
    except (CommunicationError, OSError) as exc:
        raise ConnectionFailed(f"clamd unreachable: {exc}") from None
    except ClamdError as exc:
        raise PermanentFailure(f"clamd error: {exc}") from None
    status, signature = result.get("stream", ("ERROR", "no answer"))
    if status == "FOUND":
        return ScanVerdict(True, signature)
    if status == "OK":
        return ScanVerdict(False)
    raise PermanentFailure(f"clamd error: {signature or status}")
