"""Attachments (seed 004): list a message's attachments, download, upload to a draft, delete from a draft,
metadata.  Mirrored and uploaded attachments are served by the same endpoints."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response

from email_service.models import EmailAttachment
from email_service.services import attachment_content, attachments

from . import examples
from .attachment_schemas import (
    AttachmentDeletedOut,
    AttachmentListOut,
    AttachmentListQuery,
    AttachmentMetadataOut,
    AttachmentOut,
    DownloadQuery,
    upload_body,
)
from .auth import current_principal
from .common import AUTH_ERRORS
from .context import service_context
from .downloads import download_response
from .gate import guard
from .openapi import ATTACHMENT_LINKS, CANONICAL_PREFIX
from .uploads import MultipartUpload, streamed_upload

bp = guard(
    APIBlueprint(
        "attachments",
        __name__,
        tag={"name": "Attachments", "description": "Attachments of messages: list, download, upload, delete"},
    )
)


def _json(description: str, schema: str = "ErrorOut") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _binary(description: str, **extra: Any) -> dict[str, Any]:
    media = {"schema": {"type": "string", "format": "binary"}, **extra}
    return {"description": description, "content": {"*/*": media}}


_COMMON_ERRORS = {401: "No or bad credentials", 404: "No such resource", 429: "Rate limit exceeded"}
#: Responses of a download besides the 200 file.
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _binary("The file (`Content-Disposition` attachment, or inline for safe types when asked)", example="..."),
    206: _binary("One byte range of the file (`Range`), with `Content-Range`"),
    304: {"description": "`If-None-Match` matched the ETag"},
    **{code: _json(text) for code, text in _COMMON_ERRORS.items()},
    400: _json("Invalid query parameter"),
    403: _json("Another user's attachment, or the attachment is infected (the message names the finding)"),
    416: _json("The range is not satisfiable (`Content-Range: bytes */<size>`)"),
    503: _json("Virus scanning is on and the scanner could not be reached"),
}
#: Responses of an upload besides the 201 attachment.
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json("The same bytes were already attached to this draft: that attachment", "AttachmentOut"),
    **{code: _json(text) for code, text in _COMMON_ERRORS.items()},
    400: _json("Not a draft, no room for another attachment, empty file, type not allowed, malformed form"),
    403: _json("Another user's message"),
    413: _json("The file is over MAX_ATTACHMENT_SIZE (found while the body streams in)"),
    415: _json("The body is not multipart/form-data"),
}


def attachment_url(attachment_id: uuid.UUID, *, inline: bool = False) -> str:
    """Canonical download URL of an attachment (``?inline=true`` for inline display)."""
    return f"{CANONICAL_PREFIX}/attachments/{attachment_id}/download" + ("?inline=true" if inline else "")


def attachment_body(attachment: EmailAttachment) -> dict[str, Any]:
    """Serialise the listed fields of an attachment row."""
    return {
        "id": attachment.id,
        "messageId": attachment.message_id,
        "filename": attachment.filename,
        "mimeType": attachment.mime_type,
        "size": attachment.size_bytes,
        "uploadedAt": attachment.created_at,
        "contentHash": attachment.content_hash,
        "url": attachment_url(attachment.id),
        "virusScanStatus": attachment.virus_scan_status,
        "contentId": attachment.content_id,
    }


@bp.get("/messages/<uuid:message_id>/attachments")
@bp.input(AttachmentListQuery, location="query")
@bp.output(AttachmentListOut, example=examples.ATTACHMENT_LIST, links=ATTACHMENT_LINKS)
@bp.doc(
    summary="Attachments of a message",
    description="Every attachment of the message (mirrored parts in MIME order, uploads in upload order), paged "
    "with `limit` (default 50, at most 100) and `offset`.",
    operation_id="listAttachments",
    responses=AUTH_ERRORS,
)
def list_attachments(message_id: uuid.UUID, query_data: dict[str, Any]) -> dict[str, Any]:
    page = attachments.list_attachments(
        service_context(),
        principal=current_principal(),
        message_id=message_id,
        limit=query_data["limit"],
        offset=query_data["offset"],
    )
    return {
        "data": [attachment_body(a) for a in page.items],
        "pagination": {"total": page.total, "offset": page.offset, "limit": page.limit},
    }


@bp.post("/messages/<uuid:message_id>/attachments")
@streamed_upload("uploadAttachment", upload_body())
@bp.output(AttachmentOut, status_code=201, example=examples.ATTACHMENT_UPLOADED)
@bp.doc(
    summary="Upload a file to a draft",
    description="Multipart form with `file` and an optional `filename`. Drafts only. The size is checked while "
    "the body streams in (413 past `MAX_ATTACHMENT_SIZE`), the type is sniffed from the bytes and must be in "
    "`ALLOWED_MIME_TYPES`, the name is sanitised, at most `MAX_ATTACHMENTS_PER_MESSAGE` per message. The same "
    "bytes uploaded again to the same draft answer 200 with the existing attachment. `virusScanStatus` is "
    "`pending` until the scan job has run (`skipped` when scanning is off).",
    operation_id="uploadAttachment",
    responses=UPLOAD_RESPONSES,
)
def upload_attachment(message_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    uploaded = attachments.upload_attachment(
        service_context(), principal=current_principal(), message_id=message_id, source=MultipartUpload()
    )
    return attachment_body(uploaded.attachment), 201 if uploaded.created else 200


@bp.get("/attachments/<uuid:attachment_id>/download")
@bp.input(DownloadQuery, location="query")
@bp.doc(
    summary="Download an attachment (streamed; Range; ETag)",
    description="The decoded file, streamed. `Range` with one byte range answers 206 (several ranges: the whole "
    "file), `If-Range`/`If-None-Match` with the ETag (the sha256). `inline=true` is honoured for raster images, PDF "
    "and plain text only. A file not scanned yet is scanned first when scanning is on; an infected one is refused "
    "(403 naming the finding).",
    operation_id="downloadAttachment",
    responses=DOWNLOAD_RESPONSES,
)
def download_attachment(attachment_id: uuid.UUID, query_data: dict[str, Any]) -> Response:
    ctx = service_context()
    download = attachment_content.open_download(ctx, principal=current_principal(), attachment_id=attachment_id)
    return download_response(ctx.blobs, download, inline=query_data["inline"])


@bp.delete("/attachments/<uuid:attachment_id>")
@bp.output(AttachmentDeletedOut, example=examples.ATTACHMENT_DELETED)
@bp.doc(
    summary="Remove an attachment from a draft",
    description="Drafts only (400 for mirrored mail). The draft is marked for rebuilding on the server; the bytes "
    "are removed by `email-service gc-blobs` once nothing references them.",
    operation_id="deleteAttachment",
    responses=AUTH_ERRORS,
)
def delete_attachment(attachment_id: uuid.UUID) -> dict[str, Any]:
    attachments.delete_attachment(service_context(), principal=current_principal(), attachment_id=attachment_id)
    return {"success": True, "message": "Attachment deleted"}


@bp.get("/attachments/<uuid:attachment_id>/metadata")
@bp.output(AttachmentMetadataOut, example=examples.ATTACHMENT_METADATA)
@bp.doc(
    summary="Metadata of an attachment",
    description="The listed fields plus `contentEncoding` (the transfer encoding as received; `none` for "
    "uploads), `disposition` and `virusName`.",
    operation_id="getAttachmentMetadata",
    responses=AUTH_ERRORS,
)
def attachment_metadata(attachment_id: uuid.UUID) -> dict[str, Any]:
    attachment = attachments.get_attachment(
        service_context(), principal=current_principal(), attachment_id=attachment_id
    )
    return {
        **attachment_body(attachment),
        "contentEncoding": attachment.content_encoding,
        "disposition": attachment.disposition,
        "virusName": attachment.virus_name,
    }
