"""Helpers of the attachment tests: multipart bodies, files libmagic recognises, uploads through the API."""

from __future__ import annotations

import struct
import uuid
import zlib
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import Caller

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
HTML = b"<!DOCTYPE html>\n<html><head><title>x</title></head><body><script>alert(1)</script></body></html>\n"
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>\n'
TEXT = b"Plain text notes.\n" * 20


def png() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0\0\0")) + chunk(b"IEND", b"")
    )


def multipart(
    file: bytes | None,
    filename: str | None = "file.bin",
    *,
    name_field: str | None = None,
    extra: tuple[tuple[str, bytes], ...] = (),
) -> tuple[bytes, str]:
    """``(body, content type)`` of a multipart/form-data upload: the ``file`` part (unless ``None``), an optional
    ``filename`` field (UTF-8) and ``extra`` fields."""
    boundary = f"b{uuid.uuid4().hex}"
    parts = []
    for name, value in ((("filename", name_field.encode("utf-8")),) if name_field is not None else ()) + extra:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        )
    if file is not None:
        disposition = f'form-data; name="file"; filename="{filename or ""}"'
        headers = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: application/octet-stream"
        parts.append(f"{headers}\r\n\r\n".encode("latin-1") + file + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def upload(
    client: FlaskClient, caller: Caller, message_id: Any, file: bytes, filename: str = "file.bin", **options: Any
) -> Any:
    """POST the file to ``/api/v1/messages/{id}/attachments``; returns the response."""
    prefix = options.pop("prefix", "/api/v1")
    body, content_type = multipart(file, filename, **options)
    return client.post(
        f"{prefix}/messages/{message_id}/attachments",
        headers={**caller.headers, "Content-Type": content_type},
        data=body,
    )


def uploaded(client: FlaskClient, caller: Caller, message_id: Any, file: bytes, filename: str = "file.bin") -> Any:
    """Upload and assert 201; return the body."""
    response = upload(client, caller, message_id, file, filename)
    assert response.status_code == 201, response.get_json()
    return response.get_json()
