"""Streaming ``multipart/form-data`` uploads (RFC 7578) for the views :func:`streamed_upload` marks.

Werkzeug's form parser reads a whole body (spooling files to disk) before a view runs, and the gate reads JSON
bodies whole; an upload instead is read piece by piece from the WSGI input with Werkzeug's sans-IO
``MultipartDecoder``, so the service can count the file's bytes as they arrive and refuse a file over the limit
(413) without the rest of the body ever being read or buffered.  The body is bounded once more by
``request.max_content_length`` (the file limit plus :data:`MULTIPART_OVERHEAD`), which Werkzeug checks against
``Content-Length`` before anything is read.

Form fields: ``file`` (exactly one, a file part) and optional ``filename`` (UTF-8 text without NUL, at most
:data:`MAX_FILENAME_FIELD` bytes), in any order; anything else is a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from email_service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

from .fields import TEXT_ERROR, is_storable_text

F = TypeVar("F", bound=Callable[..., Any])
#: Bytes of a multipart body beyond its file: boundaries, part headers, the ``filename`` field.
MULTIPART_OVERHEAD = 64 * 1024
#: Longest ``filename`` form field, in bytes.
MAX_FILENAME_FIELD = 4096
READ_SIZE = 256 * 1024
#: Operation id -> OpenAPI ``requestBody`` of every streamed-upload operation (added to the document).
STREAMED_BODIES: dict[str, dict[str, Any]] = {}


def streamed_upload(operation_id: str, body: dict[str, Any]) -> Callable[[F], F]:
    """Mark a view as taking a streamed multipart upload: the gate then checks the body's media type instead of
    reading it as JSON (:func:`email_service.api.gate.check_json_body`), and ``body`` is the operation's
    ``requestBody`` in the OpenAPI document."""

    def decorator(view: F) -> F:
        view.streamed_upload = True  # type: ignore[attr-defined]
        STREAMED_BODIES[operation_id] = body
        return view

    return decorator


def require_multipart(max_file_size: int) -> None:
    """Gate check of a streamed-upload request: ``multipart/form-data`` with a boundary (415 / 400 otherwise),
    body bounded by ``max_file_size`` + :data:`MULTIPART_OVERHEAD`."""
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype != "multipart/form-data":
        raise UnsupportedMediaType("Content-Type must be multipart/form-data")
    if not options.get("boundary"):
        raise InvalidInput("multipart/form-data body without a boundary")
    request.max_content_length = max_file_size + MULTIPART_OVERHEAD


class MultipartUpload:
    """The ``file`` of the current request's multipart body, read as it streams in (an
    :class:`email_service.services.attachments.UploadSource`)."""

    def __init__(self) -> None:
        _mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
        self._decoder = MultipartDecoder(options["boundary"].encode("latin-1"))
        self._part_filename: str | None = None
        self._field_filename: str | None = None
        self._seen: set[str] = set()

    @property
    def filename(self) -> str | None:
        """The ``filename`` field if given, else the file part's own name."""
        return self._field_filename if self._field_filename is not None else self._part_filename

    def _read(self) -> bytes:
        try:
            return bytes(request.stream.read(READ_SIZE))
        except RequestEntityTooLarge:
            raise PayloadTooLarge("Request body is larger than the attachment limit") from None

    def _events(self) -> Iterator[Any]:
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError:
                raise InvalidInput("Malformed multipart/form-data body") from None
            if isinstance(event, NeedData):
                data = self._read()
                self._decoder.receive_data(data or None)
                continue
            if isinstance(event, Epilogue):
                return
            yield event

    def _start(self, event: Field | File) -> str:
        if event.name not in ("file", "filename"):
            raise InvalidInput(f"Unknown form field '{event.name}'", details={event.name: ["Unknown field."]})
        if event.name in self._seen:
            raise InvalidInput(f"Form field '{event.name}' given twice", details={event.name: ["Given twice."]})
        if event.name == "file" and not isinstance(event, File):
            raise InvalidInput("file must be a file part", details={"file": ["Not a file part."]})
        self._seen.add(event.name)
        if isinstance(event, File):
            self._part_filename = event.filename or None
        return event.name

    def chunks(self) -> Iterator[bytes]:
        """The bytes of the ``file`` part; the ``filename`` field is read wherever it stands in the body.

        Raises:
            InvalidInput: malformed body, unknown or repeated fields, a ``filename`` that is not storable text, no
                ``file``.
            PayloadTooLarge: the body exceeds its bound.
        """
        current: str | None = None
        text = bytearray()
        for event in self._events():
            if isinstance(event, Field | File):
                current = self._start(event)
                continue
            if not isinstance(event, Data) or current is None:
                continue
            if current == "file":
                if event.data:
                    yield bytes(event.data)
            else:
                text += event.data
                if len(text) > MAX_FILENAME_FIELD:
                    raise InvalidInput(
                        f"filename must be at most {MAX_FILENAME_FIELD} bytes", details={"filename": ["Too long."]}
                    )
                if not event.more_data:
                    self._field_filename = _filename_field(bytes(text))
        if "file" not in self._seen:
            raise InvalidInput("file is required", details={"file": ["Missing file part."]})


def _filename_field(data: bytes) -> str:
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("filename must be UTF-8 text", details={"filename": ["Not UTF-8."]}) from None
    if not is_storable_text(value):
        raise InvalidInput(f"filename {TEXT_ERROR}", details={"filename": [TEXT_ERROR]})
    return value
