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
* The body: a file-backed store's open file goes to the WSGI server's ``wsgi.file_wrapper`` (PEP 3333; waitress
  sends it from the file) when the response runs to the end of the file; otherwise the store's chunks.
* ``X-Content-Type-Options: nosniff``, ``Cache-Control: private``, and ``Content-Security-Policy: default-src
  'none'; sandbox`` in case a file is opened directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

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
    if stop == content.size:
        handle = blobs.open_file(content.namespace, content.sha256)
        if handle is not None:
            handle.seek(start)
            return wrap_file(request.environ, handle, buffer_size=CHUNK_SIZE)
    return blobs.iter_chunks(content.namespace, content.sha256, start=start, stop=stop)
