"""Folders and messages of the mirrored mailbox (issue 2 section 7)."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response, request, url_for

from email_service.models import EmailMessage
from email_service.services import changes as changes_service
from email_service.services import mailbox as service
from email_service.services import message_list

from . import examples
from .attachments import attachment_url
from .auth import current_principal
from .common import AUTH_ERRORS
from .context import service_context
from .gate import guard
from .mailbox_schemas import FolderListOut, MessageListOut, MessageListQuery, MessageOut, MessageQuery
from .openapi import MESSAGE_LINKS
from .schemas import PaginationQuery
from .summaries import json_response, summary_of_row

bp = guard(
    APIBlueprint(
        "mailbox",
        __name__,
        tag={"name": "Mailbox", "description": "Folders and messages of the mirrored mailbox"},
    )
)
RAW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "RFC 5322 bytes",
        "content": {
            "message/rfc822": {"schema": {"type": "string", "format": "binary"}, "example": examples.RAW_MESSAGE}
        },
    },
    **{
        code: {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        }
        for code in AUTH_ERRORS
    },
}


def _address(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"name": value.get("name", ""), "email": value.get("email", "")} if value else None


def message_summary(message: EmailMessage, *, pending: bool = False) -> dict[str, Any]:
    """Serialise the list fields of a message row; ``pending``: a change of it still waits for write-back."""
    return {
        "id": message.id,
        "accountId": message.account_id,
        "folderId": message.folder_id,
        "uid": message.uid,
        "messageId": message.message_id,
        "threadId": message.thread_id,
        "subject": message.subject,
        "from_": {"name": message.from_name or "", "email": message.from_address or ""}
        if message.from_address or message.from_name
        else None,
        "to": message.to_addresses,
        "cc": message.cc_addresses,
        "sentAt": message.sent_at,
        "receivedAt": message.received_at,
        "preview": message.preview,
        "flags": message.flags,
        "isRead": message.is_read,
        "isFlagged": message.is_flagged,
        "isAnswered": message.is_answered,
        "isDraft": message.is_draft,
        "hasAttachments": message.has_attachments,
        "size": message.size,
        "pendingChanges": pending,
        "lastError": message.last_error,
    }


@bp.get("/accounts/<uuid:account_id>/folders")
@bp.input(PaginationQuery, location="query")
@bp.output(FolderListOut, example=examples.FOLDER_LIST)
@bp.doc(
    summary="Folders of the account with role, total and unread counts",
    description="Every mailbox found by the last sync, with its special-use role (RFC 6154) or `custom`.",
    operation_id="listFolders",
    responses=AUTH_ERRORS,
)
def list_folders(account_id: uuid.UUID, query_data: dict[str, Any]) -> dict[str, Any]:
    ctx, principal = service_context(), current_principal()
    state = changes_service.account_state(ctx, principal=principal, account_id=account_id)  # read before the rows
    folders = service.list_folders(ctx, principal=principal, account_id=account_id)
    limit, offset = query_data["limit"], query_data["offset"]
    return {
        "folders": folders[offset : offset + limit],
        "pagination": {"total": len(folders), "limit": limit, "offset": offset},
        "state": state,
    }


@bp.get("/accounts/<uuid:account_id>/messages")
@bp.input(MessageListQuery, location="query")
@bp.output(MessageListOut, example=examples.MESSAGE_LIST, links=MESSAGE_LINKS)
@bp.doc(
    summary="Messages of the account or of one folder, filtered and sorted, by offset or cursor",
    description="Headers, flags and a text preview, newest `receivedAt` first unless `sortBy`/`sortOrder` say "
    "otherwise; `folderId` narrows to one folder; `isRead`, `isFlagged`, `hasAttachments`, `from`, `to`, `dateFrom`, "
    "`dateTo` filter. `pagination.nextCursor` fetches the next page as fast at any depth (keyset); `offset` still "
    "works. `pagination.total` comes from the folders' kept counts (null with filters other than `isRead`).",
    operation_id="listMessages",
    responses=AUTH_ERRORS,
)
def list_messages(account_id: uuid.UUID, query_data: dict[str, Any]) -> Response:
    filters = message_list.ListFilters(
        is_read=query_data["isRead"],
        is_flagged=query_data["isFlagged"],
        has_attachments=query_data["hasAttachments"],
        from_=query_data["from_"],
        to=query_data["to"],
        date_from=query_data["dateFrom"],
        date_to=query_data["dateTo"],
    )
    page = message_list.list_messages(
        service_context(),
        principal=current_principal(),
        account_id=account_id,
        folder_id=query_data["folderId"],
        filters=filters,
        sort_by=query_data["sortBy"],
        order=query_data["sortOrder"],
        limit=query_data["limit"],
        offset=query_data["offset"],
        cursor=query_data["cursor"],
    )
    # The MessageListOut value, built directly (api/summaries.py: equal to the schema's dump, a fraction of its cost)
    return json_response(
        {
            "messages": [
                summary_of_row(row, pending=bool(page.pending) and message_list.row_uuid(row[0]) in page.pending)
                for row in page.items
            ],
            "pagination": {
                "total": page.total,
                "limit": page.limit,
                "offset": page.offset,
                "nextCursor": page.next_cursor,
            },
            "state": page.state,
        }
    )


@bp.get("/messages/<uuid:message_id>")
@bp.input(MessageQuery, location="query")
@bp.output(MessageOut, example=examples.MESSAGE)
@bp.doc(
    summary="One message with addresses, bodies, flags and attachments",
    description="All addresses, threading headers, the text body, the HTML body sanitised for display (remote "
    "images blocked unless `remoteImages=true`, `hasRemoteImages` says whether there are any; `cid:` images point "
    "at their attachment's download URL), attachment metadata and the parser's defects; `rawUrl` serves the "
    "stored RFC 5322 bytes, the only place the unsanitised HTML is available.",
    operation_id="getMessage",
    responses=AUTH_ERRORS,
)
def get_message(message_id: uuid.UUID, query_data: dict[str, Any]) -> dict[str, Any]:
    return message_view(message_id, remote_images=query_data["remoteImages"])


def message_view(message_id: uuid.UUID, *, remote_images: bool = False) -> dict[str, Any]:
    """The caller's view of one message as :class:`MessageOut` (HTML sanitised, ``cid:`` images linked)."""
    detail = service.get_message(
        service_context(),
        principal=current_principal(),
        message_id=message_id,
        inline_url=lambda attachment_id: attachment_url(attachment_id, inline=True),
        remote_images=remote_images,
    )
    return message_body(detail)


def _raw_url(message_id: uuid.UUID) -> str:
    """Where the raw message is, under the prefix of the current request (``/api/v1`` or ``/api``)."""
    endpoint = "mailbox_alias.raw_message" if (request.blueprint or "").endswith("_alias") else "mailbox.raw_message"
    return url_for(endpoint, message_id=message_id)


def message_body(detail: service.MessageDetail) -> dict[str, Any]:
    """Serialise a whole message (:class:`MessageOut`)."""
    message = detail.message
    body = message_summary(message, pending=detail.pending)
    body.update(
        folderName=detail.folder_name,
        bcc=message.bcc_addresses,
        replyTo=message.reply_to,
        sender=_address(message.sender),
        inReplyTo=message.in_reply_to,
        references=message.references,
        textBody=message.text_body,
        htmlBody=detail.html.html if detail.html else None,
        hasRemoteImages=bool(detail.html and detail.html.has_remote_images),
        defects=message.defects,
        rawUrl=_raw_url(message.id),
        attachments=[
            {
                "id": a.id,
                "filename": a.filename,
                "mimeType": a.mime_type,
                "size": a.size_bytes,
                "contentId": a.content_id,
                "disposition": a.disposition,
                "contentHash": a.content_hash,
                "partId": a.part_id,
                "url": attachment_url(a.id),
                "virusScanStatus": a.virus_scan_status,
            }
            for a in detail.attachments
        ],
    )
    return body


@bp.get("/messages/<uuid:message_id>/raw")
@bp.doc(
    summary="The message as stored on the server (message/rfc822)",
    description="The raw bytes as a download (`Content-Disposition: attachment`), never rendered inline.",
    operation_id="getRawMessage",
    responses=RAW_RESPONSES,
)
def raw_message(message_id: uuid.UUID) -> Response:
    size, chunks = service.raw_message(service_context(), principal=current_principal(), message_id=message_id)
    response = Response(chunks, mimetype="message/rfc822", direct_passthrough=True)
    response.headers["Content-Length"] = str(size)
    response.headers["Content-Disposition"] = f'attachment; filename="{message_id}.eml"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
