"""Acting on messages (issue 8): change flags, keywords and folder; delete; the same for a batch.

Each answer shows the message as it now stands locally, with ``pendingChanges: true`` until the server has
confirmed the change (the write-back runs right after the answer; see ``GET /accounts/{id}/actions``).
"""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint

from email_service.services import message_changes as service
from email_service.services.message_changes import MessageChange
from email_service.sync import drafts

from . import examples
from .auth import current_principal
from .change_schemas import BatchIn, BatchOut, DeleteQuery, MessageDeletedOut, MessageUpdateIn
from .common import AUTH_ERRORS
from .compose_schemas import DRAFT_FIELDS, MessageReplaceIn, compose_fields
from .context import service_context
from .gate import guard
from .mailbox import message_view
from .mailbox_schemas import MessageOut

bp = guard(
    APIBlueprint(
        "message_changes",
        __name__,
        tag={"name": "Mailbox", "description": "Folders and messages of the mirrored mailbox"},
    )
)
WRITE_ERRORS = [*AUTH_ERRORS, 409, 413, 415]
CHANGE_DESCRIPTION = (
    "Any of `isRead` (\\Seen), `isFlagged` (\\Flagged), `isAnswered` (\\Answered), `keywords` {`add`, `remove`} "
    "(IMAP keywords, RFC 3501 atoms such as `$Important`; removed first, then added) and `folderId` (move to "
    "another folder of the same account). The change is made locally at once and written back to the mail server "
    "in the background (UID STORE / UID MOVE); the answer is the message as it now stands, with `pendingChanges` "
    "true until the server has confirmed it. If the server refuses, the message gets `lastError` and "
    "`GET /accounts/{account_id}/actions?state=failed` lists the action. 409 for a POP3 account."
)


def _change(data: dict[str, Any]) -> MessageChange:
    keywords = data.get("keywords") or {}
    return MessageChange(
        is_read=data.get("isRead"),
        is_flagged=data.get("isFlagged"),
        is_answered=data.get("isAnswered"),
        add_keywords=tuple(keywords.get("add", ())),
        remove_keywords=tuple(keywords.get("remove", ())),
        folder_id=data.get("folderId"),
    )


def _update(message_id: uuid.UUID, data: dict[str, Any]) -> dict[str, Any]:
    service.update_message(
        service_context(), principal=current_principal(), message_id=message_id, change=_change(data)
    )
    return message_view(message_id)


@bp.patch("/messages/<uuid:message_id>")
@bp.input(MessageUpdateIn, location="json", example=examples.MESSAGE_UPDATE)
@bp.output(MessageOut, example=examples.MESSAGE_UPDATED)
@bp.doc(
    summary="Mark read/unread, flag, answer, set keywords or move a message",
    description=CHANGE_DESCRIPTION,
    operation_id="updateMessage",
    responses=WRITE_ERRORS,
)
def update_message(message_id: uuid.UUID, json_data: dict[str, Any]) -> dict[str, Any]:
    return _update(message_id, json_data)


@bp.put("/messages/<uuid:message_id>")
@bp.input(MessageReplaceIn, location="json", example=examples.MESSAGE_UPDATE)
@bp.output(MessageOut, example=examples.MESSAGE_UPDATED)
@bp.doc(
    summary="Edit a draft, or the same as PATCH",
    description="On a draft, the draft fields of `POST /accounts/{account_id}/messages` (to, cc, bcc, subject, "
    "textBody, htmlBody replace the draft's; attachments given are added) edit it: the server copy is replaced "
    "(APPEND of the new version, UID EXPUNGE of the old one, in the background). Otherwise: "
    + CHANGE_DESCRIPTION
    + " (the same body as PATCH). Draft fields on a message that is not a draft are a 400.",
    operation_id="replaceMessage",
    responses=WRITE_ERRORS,
)
def replace_message(message_id: uuid.UUID, json_data: dict[str, Any]) -> dict[str, Any]:
    if set(json_data) & set(DRAFT_FIELDS):
        drafts.edit_draft(
            service_context(), principal=current_principal(), message_id=message_id, fields=compose_fields(json_data)
        )
        return message_view(message_id)
    return _update(message_id, json_data)


@bp.delete("/messages/<uuid:message_id>")
@bp.input(DeleteQuery, location="query")
@bp.output(MessageDeletedOut, example=examples.MESSAGE_DELETED)
@bp.doc(
    summary="Move a message to Trash, or expunge it",
    description="Moves the message to the account's Trash. In Trash, or with `permanent=true`, it is expunged on "
    "the server (\\Deleted + UID EXPUNGE of that message only, RFC 4315). 409 when the account has no Trash "
    "folder, or is a POP3 account.",
    operation_id="deleteMessage",
    responses=[*AUTH_ERRORS, 409],
)
def delete_message(message_id: uuid.UUID, query_data: dict[str, Any]) -> dict[str, Any]:
    result = service.delete_message(
        service_context(), principal=current_principal(), message_id=message_id, permanent=query_data["permanent"]
    )
    return {
        "message": "Message deleted" if result.permanent else "Message moved to Trash",
        "id": result.id,
        "permanent": result.permanent,
        "folderId": result.folder_id,
        "pendingChanges": True,
    }


@bp.post("/accounts/<uuid:account_id>/messages/batch")
@bp.input(BatchIn, location="json", example=examples.BATCH)
@bp.output(BatchOut, example=examples.BATCH_RESULT)
@bp.doc(
    summary="Change or delete up to 1,000 messages of the account at once",
    description="The changes of `PATCH /messages/{message_id}`, or `delete: true` (with `permanent`), for every "
    "listed message of this account; ids that are not messages of this account are reported in `failed`. The "
    "write-back sends one UID STORE / UID MOVE per folder and change for the whole set.",
    operation_id="changeMessages",
    responses=WRITE_ERRORS,
)
def batch(account_id: uuid.UUID, json_data: dict[str, Any]) -> dict[str, Any]:
    delete = bool(json_data.get("delete"))
    result = service.change_messages(
        service_context(),
        principal=current_principal(),
        account_id=account_id,
        message_ids=json_data["messageIds"],
        change=None if delete else _change(json_data),
        delete=delete,
        permanent=bool(json_data.get("permanent")),
    )
    return {
        "updatedCount": result.updated_count,
        "failedCount": len(result.failed),
        "failed": [{"id": f.id, "error": f.error, "message": f.message} for f in result.failed],
    }
