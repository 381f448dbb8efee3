"""Serving a blob as a download: streamed in chunks from the blob store, with the validators and ranges of RFC 9110
and the headers that keep a browser from running what it receives.

* ``ETag`` is the strong validator ``"<sha256>"`` (the bytes never change under a digest); ``If-None-Match`` that
  matches answers 304 (RFC 9110 section 13.1.2).
* ``Range`` (section 14.2): one satisfiable byte range -> 206 with ``Content-Range``; a single unsatisfiable one
  -> 416 with ``Content-Range: bytes */<size>`` (section 15.5.17); several ranges -> the whole file with 200 (a
  server may ignore ``Range``, section 14.2; multipart/byteranges is not produced); a malformed header or another
  unit is ignored.  ``If-Range`` (section 13.1.5) with our ETag honours the range, anything else (another tag, a
  date: we send no ``Last-Modified``) gets the whole file.
* ``Content-Disposition`` (RFC 6266) ``attachment`` unless ``inline`` was asked for a type safe to render
  (:data:`INLINE_TYPES`: raster images, PDF, plain text); HTML, SVG, XML, scripts and everything else download.
* The body: with a file-backed store, the served bytes -- the whole file or the one range -- go to the WSGI server's
  ``wsgi.file_wrapper`` (PEP 3333) as a file of their own (:class:`FileSpan`): gunicorn sends them with
  ``sendfile(2)``, waitress reads them in pieces of ``server.WAITRESS_SEND_CHUNK``.  Other stores: their chunks.
* ``X-Content-Type-Options: nosniff``, ``Cache-Control: private``, and ``Content-Security-Policy: default-src
  'none'; sandbox`` in case a file is opened directly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import BinaryIO, cast

from flask import Response, request
from werkzeug.wsgi import wrap_file

from email_service.protocols.mime.filename import content_disposition
from email_service.services.attachment_content import Content, Download
from email_service.storage.blobs import CHUNK_SIZE, BlobStore

#: Types a browser may show inline: they cannot run script in the page's origin.
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/avif",
        "application/pdf",
        "text/plain",
    }
)
SANDBOX_POLICY = "default-src 'none'; sandbox"


def _requested_range(size: int, etag: str) -> tuple[int, int] | bool | None:
    """``(start, stop)`` of the one range to serve, ``None`` for the whole file, ``False`` when unsatisfiable."""
    ranges = request.range
    if ranges is None or ranges.units != "bytes" or len(ranges.ranges) != 1:
        return None
    if_range = request.if_range
    if request.headers.get("If-Range") is not None and (if_range.etag is None or if_range.etag != etag):
        return None
    span = ranges.range_for_length(size)
    return span if span is not None else False


def download_response(blobs: BlobStore, download: Download, *, inline: bool) -> Response:
    """The response serving ``download`` (see the module docstring for status codes and headers)."""
    content = download.content
    etag = content.sha256
    show_inline = inline and download.mime_type in INLINE_TYPES
    headers = {
        "ETag": f'"{etag}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "private",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": SANDBOX_POLICY,
        "Content-Disposition": content_disposition(download.filename, inline=show_inline),
    }
    if request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    span = _requested_range(content.size, etag)
    if span is False:
        headers["Content-Range"] = f"bytes */{content.size}"
        body = {"error": "Range not satisfiable", "message": f"The file has {content.size} bytes"}
        return Response(json.dumps(body), status=416, headers=headers, content_type="application/json")
    start, stop = span if isinstance(span, tuple) else (0, content.size)
    chunks = _body(blobs, content, start, stop)
    status = 206 if isinstance(span, tuple) else 200
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{content.size}"
    response = Response(
        chunks, status=status, content_type=download.mime_type, headers=headers, direct_passthrough=True
    )
    response.headers["Content-Length"] = str(stop - start)
    return response


def _body(blobs: BlobStore, content: Content, start: int, stop: int) -> Iterable[bytes]:
    handle = blobs.open_file(content.namespace, content.sha256)
    if handle is not None:
        span = cast(BinaryIO, FileSpan(handle, start, stop))  # a file object; typeshed types RawIOBase apart
        return wrap_file(request.environ, span, buffer_size=CHUNK_SIZE)
    return blobs.iter_chunks(content.namespace, content.sha256, start=start, stop=stop)


class FileSpan(io.RawIOBase):
    """Bytes ``start`` (inclusive) to ``stop`` (exclusive) of an open file, as a readable, seekable file of their own
    whose ``fileno()`` is the file's: a WSGI server that iterates the file wrapper reads no byte past ``stop``, one
    that seeks to the end to learn the length (waitress) finds ``stop - start``, and one that sends with
    ``sendfile(2)`` from the descriptor's position (gunicorn) starts at ``start`` and sends ``Content-Length``
    bytes.  Closing it closes the file."""

    def __init__(self, handle: BinaryIO, start: int, stop: int) -> None:
        super().__init__()
        self._handle, self._start, self._stop = handle, start, stop
        handle.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._handle.fileno()

    def tell(self) -> int:
        return self._handle.tell() - self._start

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: self._start, io.SEEK_CUR: self._handle.tell(), io.SEEK_END: self._stop}[whence]
        position = min(max(base + offset, self._start), self._stop)
        self._handle.seek(position)
        return position - self._start

    def read(self, size: int | None = -1) -> bytes:
        left = max(self._stop - self._handle.tell(), 0)
        return self._handle.read(left if size is None or size < 0 else min(size, left))

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()
