"""Schemas of the attachment endpoints (seed 004) and the multipart body of an upload."""

from __future__ import annotations

from typing import Any

from apiflask import Schema
from apiflask.fields import UUID, Integer, List, Nested, String
from apiflask.validators import Range

from . import examples
from .fields import TEXT_PATTERN, Boolean, QuerySchema
from .schemas import PaginationOut, offset_field
from .uploads import MAX_FILENAME_FIELD


class AttachmentOut(Schema):
    """An attachment as listed (seed 004 fields plus ``virusScanStatus`` and ``contentId``)."""

    id = UUID()
    messageId = UUID()
    filename = String(allow_none=True)
    mimeType = String()
    size = Integer(metadata={"description": "Decoded size in bytes"})
    uploadedAt = Integer(metadata={"description": "When the attachment was stored (uploaded or synced), epoch ms"})
    contentHash = String(allow_none=True, metadata={"description": "sha256 of the decoded bytes (hex)"})
    url = String(metadata={"description": "Download URL"})
    virusScanStatus = String(metadata={"description": "pending | clean | infected | error | skipped"})
    contentId = String(allow_none=True, metadata={"description": "Content-ID without <> (cid: references)"})


class AttachmentMetadataOut(AttachmentOut):
    """``GET /attachments/{id}/metadata``: the listed fields plus transfer encoding, disposition, finding."""

    contentEncoding = String(
        allow_none=True, metadata={"description": "Content-Transfer-Encoding as received; none for uploads"}
    )
    disposition = String(metadata={"description": "attachment | inline"})
    virusName = String(allow_none=True, metadata={"description": "What the virus scanner found"})


class AttachmentListItemOut(AttachmentOut):
    """An attachment in a list (same fields as :class:`AttachmentOut`; its own component for client generators)."""


class AttachmentListOut(Schema):
    """``{"data": [...], "pagination": {...}}`` (seed 004)."""

    data = List(Nested(AttachmentListItemOut))
    pagination = Nested(PaginationOut)


class AttachmentListQuery(QuerySchema):
    """``limit`` 1-100 (default 50), ``offset``."""

    limit = Integer(load_default=50, validate=Range(1, 100, error="limit must be between 1 and 100"))
    offset = offset_field()


class DownloadQuery(QuerySchema):
    """``inline=true`` asks to display the file in the browser (honoured for safe types only)."""

    inline = Boolean(
        load_default=False,
        metadata={"description": "Display inline; only raster images, PDF and plain text are ever inline"},
    )


class AttachmentDeletedOut(Schema):
    """``{"success": true, "message": "Attachment deleted"}`` (seed 004)."""

    success = Boolean()
    message = String()


def upload_body() -> dict[str, Any]:
    """OpenAPI ``requestBody`` of ``POST /messages/{id}/attachments`` (RFC 7578 multipart form)."""
    return {
        "required": True,
        "description": "The file (at most `MAX_ATTACHMENT_SIZE` bytes, 25 MB by default) and an optional name",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The file's bytes"},
                        "filename": {
                            "type": "string",
                            "pattern": TEXT_PATTERN,
                            "maxLength": MAX_FILENAME_FIELD // 4,
                            "description": "Name to give the file instead of the part's own (sanitised)",
                        },
                    },
                },
                "example": {"file": "%PDF-1.7 ...", "filename": examples.ATTACHMENT["filename"]},
            }
        },
    }
